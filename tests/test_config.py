"""workflows.toml: discovery, precedence, validation errors, imports and the client."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from wfcli import ConfigError, FakeClock, FileStore, RetryPolicy, Settings
from wfcli.core.admission import ConcurrencyLimit, Rate
from wfcli.project import (
    CONFIG_FILENAME,
    Project,
    WorkflowConfig,
    default_store_dir,
    find_config,
    load_project,
    open_client,
    resolve_config_path,
    resolve_store,
)

FLOWS = """\
from wfcli import WorkflowEntrypoint


class Greeting(WorkflowEntrypoint):
    def run(self, event, step):
        text = step.do("greet", lambda: f"{self.env.GREETING}, {event.payload['who']}")
        return {"text": text, "can_start_orders": "ORDERS" in self.env}


class Flaky(WorkflowEntrypoint):
    def run(self, event, step):
        def attempt(context):
            if context.attempt < 3:
                raise RuntimeError(f"attempt {context.attempt} failed")
            return context.attempt

        return step.do("flaky", attempt)


class Bulky(WorkflowEntrypoint):
    def run(self, event, step):
        return step.do("bulky", lambda: "x" * 200)


class Abstract(WorkflowEntrypoint):
    pass


class NotAWorkflow:
    def run(self, event, step):
        return None


NOT_A_CLASS = 42
"""

BASE = """\
name = "order-processor"
main = "cfgtest_flows"

[[workflows]]
name = "greeting"
binding = "GREETING_FLOW"
class_name = "Greeting"
"""


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Undo what loading user code does to ``sys.path`` and ``sys.modules``."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write_project(folder: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    """Write ``workflows.toml`` and ``files`` (relative path -> source) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for relative, source in (files or {"cfgtest_flows.py": FLOWS}).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source))
    config = folder / CONFIG_FILENAME
    config.write_text(textwrap.dedent(toml))
    return config


def line_of(text: str, fragment: str) -> int:
    """The 1-based number of the first line of ``text`` that contains ``fragment``."""
    return next(number for number, line in enumerate(text.split("\n"), 1) if fragment in line)


# --- discovery and precedence -------------------------------------------------------------


def test_find_config_walks_up_to_the_nearest_file(tmp_path: Path) -> None:
    outer = write_project(tmp_path / "repo", BASE)
    inner = write_project(tmp_path / "repo" / "nested", BASE)
    deep = tmp_path / "repo" / "nested" / "a" / "b"
    deep.mkdir(parents=True)

    assert find_config(deep) == inner
    assert find_config(tmp_path / "repo" / "elsewhere") == outer
    assert find_config(tmp_path) is None


def test_config_path_precedence_is_flag_then_environment_then_discovery(tmp_path: Path) -> None:
    found = write_project(tmp_path / "cwd", BASE)
    from_env = write_project(tmp_path / "env", BASE)
    flagged = write_project(tmp_path / "flag", BASE)
    cwd = tmp_path / "cwd"
    environ = {"WF_CONFIG": str(from_env)}

    assert resolve_config_path("../flag/workflows.toml", environ, cwd) == flagged
    assert resolve_config_path(str(tmp_path / "flag"), environ, cwd) == flagged
    assert resolve_config_path(None, environ, cwd) == from_env
    assert resolve_config_path(None, {"WF_CONFIG": ""}, cwd) == found
    assert resolve_config_path(None, {}, cwd) == found


def test_config_path_errors_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: file not found \(given by --config\)"):
        resolve_config_path("missing.toml", {}, tmp_path)
    with pytest.raises(ConfigError, match=r"file not found \(given by WF_CONFIG\)"):
        resolve_config_path(None, {"WF_CONFIG": str(tmp_path / "gone.toml")}, tmp_path)
    with pytest.raises(ConfigError, match="pass --config or set WF_CONFIG") as raised:
        resolve_config_path(None, {}, tmp_path)
    assert str(tmp_path) in raised.value.reason


def test_store_precedence_is_flag_then_environment_then_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    with_dir = load_project(write_project(tmp_path / "a", BASE + '[store]\ndir = ".wf"\n'))
    without = load_project(write_project(tmp_path / "b", BASE))
    environ = {"WF_STORE": str(tmp_path / "env-store")}

    def chosen(explicit: str | None, env: dict[str, str], project: Project | None) -> object:
        choice = resolve_store(explicit, env, project)
        return (choice.location, choice.given)

    assert chosen("flag-store", environ, with_dir) == (str(tmp_path / "flag-store"), True)
    assert chosen(None, environ, with_dir) == (str(tmp_path / "env-store"), True)
    assert chosen(None, {"WF_STORE": ""}, with_dir) == (str(tmp_path / "a" / ".wf"), False)
    assert chosen(None, {}, without) == (str(default_store_dir(without)), False)
    assert chosen("flag-store", {}, None) == (str(tmp_path / "flag-store"), True)
    url = "postgresql://localhost/wf"
    assert chosen(url, environ, with_dir) == (url, True)
    with pytest.raises(ConfigError, match="pass --store or set WF_STORE"):
        resolve_store(None, {}, None)


def test_store_url_in_the_file_names_a_database_or_a_folder(tmp_path: Path) -> None:
    url = "postgresql://wf@db.example/orders"
    project = load_project(write_project(tmp_path / "u", BASE + f'[store]\nurl = "{url}"\n'))
    assert project.store_location == url
    for bad, reason in (
        ('url = "mysql://db/x"', "expected a postgresql:// or file:// URL"),
        ('url = "/just/a/path"', "expected a postgresql:// or file:// URL"),
        ('url = "file:///tmp/s"\ndir = "s"', "give url or dir, not both"),
    ):
        with pytest.raises(ConfigError, match=reason) as raised:
            load_project(write_project(tmp_path / "bad", BASE + f"[store]\n{bad}\n"))
        assert raised.value.key == "store.url"


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_DATA_HOME is the Linux data folder")
def test_default_store_is_one_folder_per_project_under_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    first = load_project(write_project(tmp_path / "one", BASE))
    second = load_project(write_project(tmp_path / "two", BASE))

    store = default_store_dir(first)
    assert store.parent == tmp_path / "data" / "wfcli" / "projects"
    assert store.name.startswith("order-processor-")
    assert len(store.name) == len("order-processor-") + 8
    assert default_store_dir(second) != store
    assert default_store_dir(load_project(first.path)) == store


def test_store_dir_in_the_file_is_relative_to_it_and_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    relative = load_project(write_project(tmp_path / "p", BASE + '[store]\ndir = "../s"\n'))
    home = load_project(write_project(tmp_path / "q", BASE + '[store]\ndir = "~/s"\n'))

    assert relative.store_location == str(tmp_path / "s")
    assert home.store_location == str(tmp_path / "home" / "s")


# --- what a valid file gives ---------------------------------------------------------------


def test_a_full_file_loads_into_a_project(tmp_path: Path) -> None:
    toml = """\
        name = "order-processor"
        main = "cfgtest_flows"

        [vars]
        GREETING = "Hello"
        LIMITS = { daily = 10, ratio = 0.5, tags = ["a", "b"], on = true }

        [[workflows]]
        name = "greeting"
        binding = "GREETING_FLOW"
        class_name = "Greeting"

        [[workflows]]
        name = "flaky_2"
        binding = "FLAKY"
        class_name = "Flaky"
        main = "other.py"

        [store]
        fsync = false
    """
    project = load_project(write_project(tmp_path, toml))

    assert project.path == tmp_path / CONFIG_FILENAME
    assert project.name == "order-processor"
    assert project.main == "cfgtest_flows"
    assert project.variables == {
        "GREETING": "Hello",
        "LIMITS": {"daily": 10, "ratio": 0.5, "tags": ["a", "b"], "on": True},
    }
    assert project.workflows == (
        WorkflowConfig("greeting", "GREETING_FLOW", "Greeting", None),
        WorkflowConfig("flaky_2", "FLAKY", "Flaky", "other.py"),
    )
    assert project.store_location is None
    assert project.durable is False
    assert project.settings == Settings()


def test_defaults_and_limits_build_the_settings(tmp_path: Path) -> None:
    toml = BASE + textwrap.dedent("""\
        [defaults]
        retries = { limit = 2, backoff = "linear" }
        timeout = "2 minutes"
        max_inline_wait = 90

        [limits]
        max_step_result_bytes = 2048
    """)
    settings = load_project(write_project(tmp_path, toml)).settings

    assert settings.retries == RetryPolicy(limit=2, delay=timedelta(seconds=10), backoff="linear")
    assert settings.timeout == timedelta(minutes=2)
    assert settings.max_inline_wait == timedelta(seconds=90)
    assert settings.max_value_bytes == 2048


def test_a_workflow_with_its_own_main_needs_no_top_level_main(tmp_path: Path) -> None:
    toml = """\
        name = "solo"
        [[workflows]]
        name = "greeting"
        binding = "GREETING_FLOW"
        class_name = "Greeting"
        main = "cfgtest_flows.py"
    """
    project = load_project(write_project(tmp_path, toml))

    assert project.main is None
    assert project.load_workflows()["greeting"].__name__ == "Greeting"


# --- every mistake is one ConfigError with key and line ---------------------------------------

# (what is wrong, the file, the key named, text on the expected line or None, reason fragment)
MISTAKES = [
    (
        "TOML syntax",
        BASE + "retries = = 3\n",
        None,
        "retries = = 3",
        "invalid TOML: Invalid value",
    ),
    ("unknown top-level key", 'colour = "blue"\n' + BASE, "colour", "colour", "unknown key"),
    (
        "unknown key in a workflow",
        BASE + '[[workflows]]\nname = "b"\nbinding = "B"\nclas_name = "Greeting"\n',
        "workflows[1].clas_name",
        "clas_name",
        "did you mean 'class_name'?",
    ),
    (
        "unknown retry key",
        BASE + '[defaults]\nretries = { limit = 1, dlay = "1 second" }\n',
        "defaults.retries.dlay",
        "retries = ",
        "did you mean 'delay'?",
    ),
    (
        "unknown key in a sub-table",
        BASE + "[defaults.retries]\nlimit = 1\nbackof = 'linear'\n",
        "defaults.retries.backof",
        "backof",
        "unknown key",
    ),
    ("wrong type", BASE.replace('"order-processor"', "5"), "name", "name = 5", "got an integer"),
    (
        "missing project name",
        BASE.replace('name = "order-processor"\n', ""),
        "name",
        None,
        "missing (it is required)",
    ),
    (
        "missing binding",
        BASE.replace('binding = "GREETING_FLOW"\n', ""),
        "workflows[0].binding",
        "[[workflows]]",
        "missing",
    ),
    (
        "missing main",
        BASE.replace('main = "cfgtest_flows"\n', ""),
        "workflows[0].main",
        "[[workflows]]",
        "set main here or at the top level",
    ),
    (
        "no workflows",
        'name = "empty"\nmain = "cfgtest_flows"\n',
        "workflows",
        None,
        "at least one [[workflows]]",
    ),
    (
        "workflows as a table",
        'name = "x"\nmain = "m"\n[workflows]\nname = "a"\n',
        "workflows",
        "[workflows]",
        "expected an array of tables",
    ),
    (
        "duplicate workflow name",
        BASE
        + '[[workflows]]\nname = "greeting"  # again\nbinding = "OTHER"\nclass_name = "Flaky"\n',
        "workflows[1].name",
        "# again",
        "already the name of workflows[0]",
    ),
    (
        "duplicate binding",
        BASE
        + '[[workflows]]\nname = "b"\nbinding = "GREETING_FLOW"  # again\nclass_name = "Flaky"\n',
        "workflows[1].binding",
        "# again",
        "already the binding of workflows[0]",
    ),
    (
        "bad workflow name",
        BASE.replace('name = "greeting"', 'name = "Greeting Flow"'),
        "workflows[0].name",
        "Greeting Flow",
        "not a valid workflow name",
    ),
    (
        "bad project name",
        BASE.replace('"order-processor"', '"-orders"'),
        "name",
        "-orders",
        "not a valid project name",
    ),
    (
        "binding not an identifier",
        BASE.replace('"GREETING_FLOW"', '"GREETING-FLOW"'),
        "workflows[0].binding",
        "GREETING-FLOW",
        "not a Python identifier",
    ),
    (
        "bad main",
        BASE.replace('"cfgtest_flows"', '"my-flows"'),
        "main",
        "my-flows",
        "neither a dotted module name nor a path to a .py file",
    ),
    (
        "TOML date-time in vars",
        BASE + "[vars]\nGREETING = 'hi'\nWHEN = 1979-05-27T07:32:00Z\n",
        "vars.WHEN",
        "WHEN",
        "a date-time is not a JSON value",
    ),
    (
        "TOML date deep in vars",
        BASE + "[vars]\nDATES = [\n  'x',\n  1979-05-27,\n]\n",
        "vars.DATES[1]",
        "DATES",
        "a date is not a JSON value",
    ),
    ("infinite var", BASE + "[vars]\nBIG = inf\n", "vars.BIG", "BIG", "not a JSON number"),
    (
        "var named like a binding",
        BASE + "[vars]\nGREETING_FLOW = 1\n",
        "vars.GREETING_FLOW",
        "GREETING_FLOW = 1",
        "clashes with the binding of workflows[0]",
    ),
    (
        "bad backoff",
        BASE + '[defaults]\nretries = { backoff = "fibonacci" }\n',
        "defaults.retries.backoff",
        "fibonacci",
        "expected one of constant, linear, exponential",
    ),
    (
        "bad duration",
        BASE + '[defaults]\ntimeout = "10 fortnights"\n',
        "defaults.timeout",
        "fortnights",
        "is not a duration",
    ),
    (
        "zero timeout",
        BASE + "[defaults]\ntimeout = 0\n",
        "defaults.timeout",
        "timeout = 0",
        "longer than zero",
    ),
    (
        "bad limit",
        BASE + "[limits]\nmax_step_result_bytes = 0\n",
        "limits.max_step_result_bytes",
        "max_step_result_bytes",
        "from 1 to",
    ),
    (
        "schedules not an array",
        BASE + 'schedules = "0 2 * * *"\n',
        "workflows[0].schedules",
        "schedules",
        "expected an array, got a string",
    ),
    (
        "unknown schedule key",
        BASE + 'schedules = [{ cron = "0 2 * * *", tz = "UTC" }]\n',
        "workflows[0].schedules[0].tz",
        "schedules",
        "unknown key (expected one of",
    ),
    (
        "bad catch-up policy",
        BASE + 'schedules = [{ cron = "0 2 * * *", catchup = "every" }]\n',
        "workflows[0].schedules[0].catchup",
        "schedules",
        "expected one of latest, none, all, got 'every'",
    ),
    (
        "a schedule twice",
        BASE + 'schedules = ["0 2 * * *", { cron = "0 2 * * *" }]\n',
        "workflows[0].schedules[1]",
        "schedules",
        "the same schedule as schedules[0]",
    ),
    (
        "concurrency limit zero",
        BASE + "concurrency = { limit = 0 }\n",
        "workflows[0].concurrency.limit",
        "concurrency",
        "at least 1, got 0",
    ),
    (
        "unknown concurrency key",
        BASE + "concurrency = { max = 3 }\n",
        "workflows[0].concurrency.max",
        "concurrency",
        "unknown key",
    ),
    (
        "bad rate",
        BASE + 'rate = "10 per minute"\n',
        "workflows[0].rate",
        "rate",
        "expected COUNT/PERIOD such as '10/minute'",
    ),
    (
        "fsync not a boolean",
        BASE + '[store]\nfsync = "yes"\n',
        "store.fsync",
        "fsync",
        "expected true or false, got a string",
    ),
]


@pytest.mark.parametrize(
    ("toml", "key", "line_text", "reason"),
    [pytest.param(*mistake[1:], id=mistake[0]) for mistake in MISTAKES],
)
def test_each_mistake_is_one_config_error_with_key_and_line(
    tmp_path: Path, toml: str, key: str | None, line_text: str | None, reason: str
) -> None:
    config = write_project(tmp_path, toml)

    with pytest.raises(ConfigError) as raised:
        load_project(config)

    error = raised.value
    expected_line = None if line_text is None else line_of(toml, line_text)
    assert (error.key, error.line) == (key, expected_line)
    assert reason in error.reason
    where = str(config) if expected_line is None else f"{config}:{expected_line}"
    assert str(error).startswith(f"{where}:")
    assert "\n" not in str(error)


def test_schedules_and_limits_load_into_the_workflow(tmp_path: Path) -> None:
    toml = BASE + (
        'schedules = ["0 2 * * *", { cron = "*/15 9-17 * * MON-FRI", timezone = "Europe/Paris",'
        ' params = { region = "eu" }, catchup = "all", catchup_window = "6 hours",'
        ' overlap = "allow" }]\n'
        'concurrency = { limit = 3, key = "customer" }\nrate = "10/minute"\n'
    )
    project = load_project(write_project(tmp_path, toml))
    (workflow,) = project.workflows
    nightly, office = project.schedules()
    assert (nightly.name, nightly.cron, nightly.timezone, nightly.catchup, nightly.overlap) == (
        "greeting#1",
        "0 2 * * *",
        "UTC",
        "latest",
        "skip",
    )
    assert (office.name, office.timezone, office.params, office.catchup_window) == (
        "greeting#2",
        "Europe/Paris",
        {"region": "eu"},
        timedelta(hours=6),
    )
    assert project.limits() == {
        "greeting": ConcurrencyLimit(limit=3, key="customer", rate=Rate(10, timedelta(minutes=1)))
    }
    assert workflow.concurrency == project.limits()["greeting"]


def test_a_bad_cron_is_a_config_error_when_schedules_are_read(tmp_path: Path) -> None:
    toml = BASE + 'schedules = ["0 25 * * *"]\n'
    project = load_project(write_project(tmp_path, toml))  # wf status, wf list: no cron parser
    with pytest.raises(ConfigError) as raised:
        project.schedules()
    assert raised.value.key == "workflows[0].schedules[0]"
    assert raised.value.line == line_of(toml, "schedules")
    assert "Bad hour" in raised.value.reason


def test_lines_are_found_past_values_that_look_like_keys_and_tables(tmp_path: Path) -> None:
    toml = (
        'name = "x"\nmain = "m"\n'
        '[vars]\nNOTE = """\n[[workflows]]\nclass_name = 1\n"""\n'
        "LIST = [\n  'a = 1',\n  [2],\n]\n"
        '"QUOTED.KEY" = 1\n'
        '[[workflows]]\nname = "a"\nbinding = "A"\nclass_name = "C"\n'
    )
    config = write_project(tmp_path, toml)

    with pytest.raises(ConfigError) as raised:
        load_project(config)

    assert (raised.value.key, raised.value.line) == ('vars."QUOTED.KEY"', 12)
    assert "not a Python identifier" in raised.value.reason


def test_a_toml_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    toml = 'name = "x"\nmain = "m"\n\n[[workflows]]\nname = "a"\nbinding = "A\n'
    config = write_project(tmp_path, toml)

    with pytest.raises(ConfigError) as raised:
        load_project(config)

    assert raised.value.line == 6
    assert str(raised.value).startswith(f"{config}:6: invalid TOML: ")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / CONFIG_FILENAME
    config.write_bytes(b'name = "\xff"\n')

    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_project(config)
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_project(tmp_path / "absent.toml")


# --- importing the workflows ------------------------------------------------------------------


def test_classes_load_from_a_dotted_module_in_a_package(tmp_path: Path) -> None:
    files = {"cfgtest_pkg/__init__.py": "", "cfgtest_pkg/flows.py": FLOWS}
    toml = BASE.replace('"cfgtest_flows"', '"cfgtest_pkg.flows"')
    project = load_project(write_project(tmp_path, toml, files))

    classes = project.load_workflows()

    assert list(classes) == ["greeting"]
    assert classes["greeting"].__module__ == "cfgtest_pkg.flows"
    module_file = sys.modules["cfgtest_pkg.flows"].__file__
    assert module_file == str(tmp_path / "cfgtest_pkg" / "flows.py")


def test_classes_load_from_a_py_path_that_imports_its_siblings(tmp_path: Path) -> None:
    files = {
        "src/cfgtest_helpers.py": "GREETING = 'hello'\n",
        "src/entry.py": "from cfgtest_helpers import GREETING\n" + FLOWS,
    }
    toml = BASE.replace('"cfgtest_flows"', '"src/entry.py"')
    project = load_project(write_project(tmp_path, toml, files))

    module = sys.modules[project.load_workflows()["greeting"].__module__]

    assert module.__file__ == str(tmp_path / "src" / "entry.py")
    assert module.GREETING == "hello"


def test_each_module_is_imported_once_per_project(tmp_path: Path) -> None:
    counting = "import pathlib\nwith open(pathlib.Path(__file__).with_suffix('.log'), 'a') as f:\n"
    counting += "    f.write('imported\\n')\n" + FLOWS
    toml = BASE + '[[workflows]]\nname = "flaky"\nbinding = "FLAKY"\nclass_name = "Flaky"\n'
    toml = toml.replace('"cfgtest_flows"', '"entry.py"')
    project = load_project(write_project(tmp_path, toml, {"entry.py": counting}))

    first = project.load_workflows()
    second = project.load_workflows()

    assert set(first) == {"greeting", "flaky"}
    assert first == second
    assert (tmp_path / "entry.log").read_text() == "imported\n"


IMPORT_MISTAKES = [
    (
        "missing module",
        BASE.replace('"cfgtest_flows"', '"cfgtest_nowhere"'),
        {},
        "main",
        "cfgtest_nowhere",
        "cannot import 'cfgtest_nowhere': ModuleNotFoundError: No module named",
    ),
    (
        "syntax error in the module",
        BASE,
        {"cfgtest_flows.py": "def broken(:\n"},
        "main",
        "cfgtest_flows",
        "SyntaxError: invalid syntax (",
    ),
    (
        "module raises while importing",
        BASE,
        {"cfgtest_flows.py": "raise RuntimeError('no database')\n"},
        "main",
        "cfgtest_flows",
        "cannot import 'cfgtest_flows': RuntimeError: no database",
    ),
    (
        "module exits while importing",
        BASE,
        {"cfgtest_flows.py": "import sys\nsys.exit(3)\n"},
        "main",
        "cfgtest_flows",
        "SystemExit: 3",
    ),
    (
        "missing .py file",
        BASE.replace('"cfgtest_flows"', '"lost.py"'),
        {},
        "main",
        "lost.py",
        "file not found: ",
    ),
    (
        "missing module of one workflow",
        BASE + '[[workflows]]\nname = "b"\nbinding = "B"\nclass_name = "Flaky"\nmain = "gone.py"\n',
        {"cfgtest_flows.py": FLOWS},
        "workflows[1].main",
        "gone.py",
        "file not found: ",
    ),
    (
        "missing class",
        BASE.replace('"Greeting"', '"Greting"'),
        {"cfgtest_flows.py": FLOWS},
        "workflows[0].class_name",
        "Greting",
        "module 'cfgtest_flows' has no 'Greting'",
    ),
    (
        "class not a workflow",
        BASE.replace('"Greeting"', '"NotAWorkflow"'),
        {"cfgtest_flows.py": FLOWS},
        "workflows[0].class_name",
        "NotAWorkflow",
        "is not a subclass of wfcli.WorkflowEntrypoint",
    ),
    (
        "not a class",
        BASE.replace('"Greeting"', '"NOT_A_CLASS"'),
        {"cfgtest_flows.py": FLOWS},
        "workflows[0].class_name",
        "NOT_A_CLASS",
        "is not a subclass of wfcli.WorkflowEntrypoint",
    ),
    (
        "abstract class",
        BASE.replace('"Greeting"', '"Abstract"'),
        {"cfgtest_flows.py": FLOWS},
        "workflows[0].class_name",
        "Abstract",
        "is abstract: it does not implement run",
    ),
]


@pytest.mark.parametrize(
    "mistake", [pytest.param(mistake[1:], id=mistake[0]) for mistake in IMPORT_MISTAKES]
)
def test_each_import_mistake_is_one_config_error_with_key_and_line(
    tmp_path: Path, mistake: tuple[str, dict[str, str], str, str, str]
) -> None:
    toml, files, key, line_text, reason = mistake
    config = write_project(tmp_path, toml, files or {"unrelated.py": ""})
    project = load_project(config)

    with pytest.raises(ConfigError) as raised:
        project.load_workflows()

    error = raised.value
    line = line_of(toml, line_text)
    assert (error.key, error.line) == (key, line)
    assert reason in error.reason
    assert str(error).startswith(f"{config}:{line}: {key}: ")
    assert "\n" not in str(error)


def test_a_syntax_error_names_the_file_and_line_of_the_module(tmp_path: Path) -> None:
    files = {"cfgtest_flows.py": "x = 1\ndef broken(:\n"}
    project = load_project(write_project(tmp_path, BASE, files))

    with pytest.raises(ConfigError) as raised:
        project.load_workflows()

    assert f"({tmp_path / 'cfgtest_flows.py'}, line 2)" in raised.value.reason


# --- the client ---------------------------------------------------------------------------------

RUNNABLE = """\
name = "order-processor"
main = "cfgtest_flows"

[vars]
GREETING = "Hello"

[[workflows]]
name = "greeting"
binding = "GREETING_FLOW"
class_name = "Greeting"

[[workflows]]
name = "orders"
binding = "ORDERS"
class_name = "Flaky"

[[workflows]]
name = "bulky"
binding = "BULKY"
class_name = "Bulky"

[store]
fsync = false

[defaults]
retries = { limit = LIMIT, delay = "5 seconds", backoff = "constant" }
max_inline_wait = "1 minute"

[limits]
max_step_result_bytes = 100
"""


def runnable_project(folder: Path, retry_limit: int) -> Project:
    return load_project(write_project(folder, RUNNABLE.replace("LIMIT", str(retry_limit))))


def test_open_client_executes_a_workflow_from_the_config(tmp_path: Path) -> None:
    project = runnable_project(tmp_path / "project", retry_limit=2)
    client = open_client(project, tmp_path / "store", clock=FakeClock())

    handle = client.create("greeting", params={"who": "Ada"}, instance_id="first")
    status = client.execute(handle.id)

    assert status.status == "complete"
    assert status.output == {"text": "Hello, Ada", "can_start_orders": True}
    assert (tmp_path / "store" / "journals" / "first.jsonl").is_file()
    assert isinstance(client.store, FileStore)
    assert client.store.durable is False


def test_retries_from_the_config_reach_the_steps(tmp_path: Path) -> None:
    clock = FakeClock()
    enough = open_client(runnable_project(tmp_path / "a", 2), tmp_path / "a-store", clock=clock)
    too_few = open_client(runnable_project(tmp_path / "b", 1), tmp_path / "b-store", clock=clock)

    passed = enough.execute(enough.create("orders").id)
    failed = too_few.execute(too_few.create("orders").id)

    assert (passed.status, passed.output, passed.steps[0].attempts) == ("complete", 3, 3)
    assert (failed.status, failed.steps[0].attempts) == ("errored", 2)
    assert failed.error is not None
    assert "attempt 2 failed" in failed.error.message


def test_the_result_size_limit_from_the_config_applies(tmp_path: Path) -> None:
    client = open_client(runnable_project(tmp_path, 0), tmp_path / "store", clock=FakeClock())

    status = client.execute(client.create("bulky").id)

    assert status.status == "errored"
    assert status.error is not None
    assert "over the limit of 100 bytes" in status.error.message


def test_open_client_without_loading_imports_no_user_code(tmp_path: Path) -> None:
    files = {"cfgtest_flows.py": "raise RuntimeError('must not be imported')\n"}
    project = load_project(write_project(tmp_path, BASE, files))

    client = open_client(project, tmp_path / "store", load=False)

    assert client.workflows == {}
    assert client.bindings == {"GREETING_FLOW": "greeting"}
    assert "cfgtest_flows" not in sys.modules


def test_open_client_without_a_project_uses_default_settings(tmp_path: Path) -> None:
    client = open_client(None, tmp_path / "store")

    assert client.workflows == {}
    assert client.settings == Settings()
    assert isinstance(client.store, FileStore)
    assert client.store.durable is True
