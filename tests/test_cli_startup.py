"""What the real ``wf`` imports at start-up, per kind of command (issue 6, cold start).

Each process runs the installed ``wf`` script and, at exit, lists ``sys.modules``: every
module it imported, however (an ``import`` statement or ``importlib.import_module``).
``wf --help`` and the ``--json`` commands must not load pydantic (typer 0.29 does for
every parameter), rich (only human output draws tables) or platformdirs (only a store
that is neither given nor configured needs it). The control cases show the same probe
does see those modules when a command really needs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import Project, make_project, wf_executable
from tests.workflows_for_tests import PATIENCE_SECONDS
from wfcli.cli import COMMAND_MODULES
from wfcli.project import load_project, open_client

WF = wf_executable()
_NEVER_AT_START = {"pydantic", "rich", "platformdirs", "psycopg", "cronsim"}
# ``python -c _PROBE REPORT WF ARGS...``: runs the ``wf`` script as its own process would,
# then writes to the file REPORT, as JSON, the names in sys.modules and how many objects
# the cycle collector leaves alone (gc.freeze).
_PROBE = """
import atexit, gc, json, runpy, sys
report = sys.argv[1]
sys.argv = sys.argv[2:]
def write_report():
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"modules": list(sys.modules), "frozen": gc.get_freeze_count()}, out)
atexit.register(write_report)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def imports_of(*args: str, cwd: Path, **extra_env: str) -> set[str]:
    """Top-level packages that ``wf ARGS`` imported; the command must succeed."""
    return {name.split(".")[0] for name in modules_of(*args, cwd=cwd, extra_env=extra_env)}


def modules_of(
    *args: str, cwd: Path, exit_code: int = 0, extra_env: Mapping[str, str] | None = None
) -> set[str]:
    """Every module that ``wf ARGS`` imported; the command must exit with ``exit_code``."""
    return set(probe(*args, cwd=cwd, exit_code=exit_code, extra_env=extra_env)["modules"])


def probe(
    *args: str, cwd: Path, exit_code: int = 0, extra_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What ``wf ARGS`` left at its exit (see ``_PROBE``); it must exit with ``exit_code``."""
    env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    env.update(extra_env or {})
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(report), WF, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE_SECONDS,
            check=False,
        )
        assert done.returncode == exit_code, done.stderr
        found: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
        return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose workflows.toml sets ``[store] dir``, with one complete instance."""
    made = make_project(tmp_path_factory.mktemp("startup") / "project")
    client = open_client(load_project(made.config), made.store)
    client.create("pipeline", params={"dir": str(made.effects), "n": 1}, instance_id="p1")
    client.execute("p1")
    return made


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder with no workflows.toml in it or above it."""
    assert not any((folder / "workflows.toml").exists() for folder in (tmp_path, *tmp_path.parents))
    return tmp_path


def test_help_loads_typer_and_wfcli_only(elsewhere: Path) -> None:
    imported = imports_of("--help", cwd=elsewhere)
    assert {"typer", "wfcli"} <= imported
    assert not imported & _NEVER_AT_START, imported & _NEVER_AT_START


def test_help_does_not_build_the_journal_codec(elsewhere: Path) -> None:
    imported = modules_of("--help", cwd=elsewhere)
    assert "wfcli.cli.commands" in imported  # the probe sees wfcli's own modules
    assert "wfcli.core.codec" not in imported  # its record layouts are most of a start-up


_COMMAND_MODULES = {f"wfcli.cli.{name}" for name in COMMAND_MODULES}


@pytest.mark.parametrize("command", [["status", "p1", "--json"], ["list", "--json"]])
def test_a_command_loads_the_command_modules_up_to_its_own(
    project: Project, elsewhere: Path, command: list[str]
) -> None:
    imported = modules_of(*command, "--store", str(project.store), cwd=elsewhere)
    assert imported & _COMMAND_MODULES == {"wfcli.cli.commands"}


@pytest.mark.parametrize(
    "command", [["--help"], ["no-such-command"], ["doctor", "--store", "STORE", "--json"]]
)
def test_the_help_a_mistyped_command_and_the_last_module_load_every_command_module(
    project: Project, elsewhere: Path, command: list[str]
) -> None:
    args = [str(project.store) if arg == "STORE" else arg for arg in command]
    imported = modules_of(*args, cwd=elsewhere, exit_code=2 if args == ["no-such-command"] else 0)
    assert COMMAND_MODULES[-1] == "store"  # doctor's module, the last one
    assert imported >= _COMMAND_MODULES


@pytest.mark.parametrize("command", [["status", "p1", "--json"], ["list", "--json"]])
def test_reading_commands_load_no_engine_worker_or_memory_store(
    project: Project, elsewhere: Path, command: list[str]
) -> None:
    imported = modules_of(*command, "--store", str(project.store), cwd=elsewhere)
    unwanted = {"wfcli.engine.executor", "wfcli.engine.step", "wfcli.client.worker"}
    unwanted.add("wfcli.store.memory")
    assert "wfcli.client.client" in imported  # the probe sees wfcli's own modules
    assert not imported & unwanted, imported & unwanted


@pytest.mark.parametrize(
    "command", [["status", "p1", "--json"], ["list", "--json"], ["history", "p1", "--json"]]
)
def test_json_commands_given_the_store_read_no_config_and_draw_nothing(
    project: Project, elsewhere: Path, command: list[str]
) -> None:
    imported = imports_of(*command, "--store", str(project.store), cwd=elsewhere)
    unwanted = _NEVER_AT_START | {"tomllib", "tomli", "hashlib"}
    assert not imported & unwanted, imported & unwanted


@pytest.mark.parametrize(
    "command",
    [
        ["status", "p1", "--json"],
        ["replay", "p1", "--json"],
        ["workflows", "--json"],
        ["run", "pipeline", "--id", "r1", "--json"],
    ],
)
def test_json_commands_in_a_project_with_its_store_set_draw_nothing(
    project: Project, command: list[str]
) -> None:
    params = ["--params", project.params(n=1)] if command[0] == "run" else []
    imported = imports_of(*command, *params, cwd=project.config.parent)
    assert "tomllib" in imported or "tomli" in imported  # the config was read
    assert not imported & _NEVER_AT_START, imported & _NEVER_AT_START


def test_the_probe_sees_rich_for_human_output_and_the_default_store_s_platformdirs_and_digest(
    project: Project, tmp_path: Path
) -> None:
    assert "rich" in imports_of("status", "p1", "--store", str(project.store), cwd=tmp_path)
    unstored = tmp_path / "unstored"
    unstored.mkdir()
    text = project.config.read_text(encoding="utf-8")
    (unstored / "workflows.toml").write_text(
        text.replace('[store]\ndir = "store"\n', "[store]\n"), encoding="utf-8"
    )
    imported = imports_of("list", "--json", cwd=unstored, XDG_DATA_HOME=str(tmp_path / "data"))
    assert {"platformdirs", "hashlib"} <= imported


def test_only_the_commands_that_run_schedules_load_the_cron_library(
    project: Project, tmp_path: Path
) -> None:
    scheduled = tmp_path / "scheduled"
    scheduled.mkdir()
    text = project.config.read_text(encoding="utf-8").replace(
        'dir = "store"', f'dir = "{project.store}"'
    )
    entry = 'name = "pipeline"\n'
    (scheduled / "workflows.toml").write_text(
        text.replace(entry, entry + 'schedules = ["0 2 * * *"]\n'), encoding="utf-8"
    )
    for command in (["list", "--json"], ["status", "p1", "--json"], ["--help"]):
        imported = imports_of(*command, cwd=scheduled)
        assert not imported & {"cronsim", "hashlib", "zoneinfo"}, (command, imported)
    assert "cronsim" in imports_of("schedules", "--json", cwd=scheduled)


_LIMITS_AND_SCHEDULES = {"wfcli.core.admission", "wfcli.core.schedule"}


@pytest.mark.parametrize("command", [["status", "p1", "--json"], ["list", "--json"]])
def test_a_project_without_limits_or_schedules_loads_neither(
    project: Project, command: list[str]
) -> None:
    imported = modules_of(*command, cwd=project.config.parent)
    assert "wfcli.project.schema" in imported  # the config was read
    assert not imported & _LIMITS_AND_SCHEDULES, imported & _LIMITS_AND_SCHEDULES


def test_a_project_with_limits_and_schedules_loads_both(project: Project, tmp_path: Path) -> None:
    limited = tmp_path / "limited"
    limited.mkdir()
    text = project.config.read_text(encoding="utf-8").replace(
        'dir = "store"', f'dir = "{project.store}"'
    )
    entry = 'name = "pipeline"\n'
    rules = 'schedules = ["0 2 * * *"]\nrate = "10/minute"\nconcurrency = { limit = 2 }\n'
    (limited / "workflows.toml").write_text(text.replace(entry, entry + rules), encoding="utf-8")
    assert modules_of("list", "--json", cwd=limited) >= _LIMITS_AND_SCHEDULES


def test_wf_exempts_what_its_imports_made_from_the_cycle_collector(elsewhere: Path) -> None:
    assert probe("--help", cwd=elsewhere)["frozen"] > 1000  # typer's and wfcli's objects


def test_an_integer_too_long_for_python_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "workflows.toml").write_text(
        f'name = "big"\nmain = "flows"\n\n[vars]\nHUGE = {"9" * 5000}\n', encoding="utf-8"
    )
    done = subprocess.run(
        [WF, "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path / 'workflows.toml'}")
    assert "invalid TOML" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
