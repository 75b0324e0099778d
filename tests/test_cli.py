"""The ``wf`` command line, in-process through typer's ``CliRunner``.

Every command, its ``--json`` document, every exit code (SPEC §5) and the error
paths a user can hit. Instances run for real against a file store in a
temporary project (``tests/cli_support.py``); where a test needs an instance
held by "another process", a thread of this process executes it (the lock is
per open file, so the command under test is refused just the same).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

import wfcli
from tests.cli_support import ERROR_MESSAGE, Project, make_project
from tests.workflows_for_tests import BLOCK_ENV, Effects, Pipeline, wait_for_file, wait_until
from wfcli import FakeClock, InstanceStatus, WorkflowClient
from wfcli.cli import app
from wfcli.core.codec import ErrorInfo
from wfcli.project import load_project, open_client
from wfcli.store import open_store
from wfcli.ui import render
from wfcli.ui.render import GatheredLines, LineRunLog, LiveRunView, history_table

STATUS_KEYS = {
    "id",
    "workflow",
    "status",
    "interrupted",
    "params",
    "output",
    "error",
    "created",
    "started",
    "ended",
    "waiting",
    "holder",
    "pending",
    "warnings",
    "steps",
}
STEP_KEYS = {
    "name",
    "type",
    "status",
    "attempts",
    "started",
    "ended",
    "output",
    "error",
    "retry_at",
    "until",
    "event_type",
}

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


@pytest.fixture
def effects(project: Project) -> Effects:
    return Effects(project.effects)


def wf(project: Project | None, *args: str, stdin: str | None = None) -> Result:
    """Run ``wf ARGS`` with the project's ``--config`` and ``--store``."""
    options = project.options() if project is not None else []
    return runner.invoke(app, [*args, *options], input=stdin)


def ok(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def one_line_error(result: Result, code: int = 2) -> str:
    """Assert the command failed with ``code`` and one ``error:`` line, no traceback."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def status_of(project: Project, instance_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(wf(project, "status", instance_id, "--json")).stdout)
    return document


def journals(project: Project) -> list[str]:
    folder = project.store / "journals"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def python_client(project: Project) -> WorkflowClient:
    return open_client(load_project(project.config), project.store)


@contextmanager
def held_by_another_executor(
    project: Project, instance_id: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, InstanceStatus]]:
    """Execute a pipeline instance in a thread, blocked inside step ``b``; release on exit."""
    effects = Effects(project.effects)
    monkeypatch.setenv(BLOCK_ENV, "b")
    outcome: dict[str, InstanceStatus] = {}
    client = python_client(project)
    thread = threading.Thread(target=lambda: outcome.update(status=client.execute(instance_id)))
    thread.start()
    try:
        wait_until(effects.blocked_marker("b").exists, "step b to block")
        yield outcome
    finally:
        effects.release_file("b").touch()
        thread.join(timeout=30)
    assert not thread.is_alive()


def detach(project: Project, workflow: str, instance_id: str, **params: object) -> None:
    result = wf(
        project,
        "run",
        workflow,
        "--id",
        instance_id,
        "--detach",
        "--params",
        project.params(**params),
    )
    assert ok(result).stdout.strip() == instance_id


# --- help and usage --------------------------------------------------------------------


def test_version_is_the_installed_packages() -> None:
    result = ok(wf(None, "--version"))
    assert result.stdout == f"wf (wfcli) {wfcli.__version__}\n"
    assert result.stdout.split()[-1] == importlib.metadata.version("wfcli")
    assert "--version" in ok(wf(None, "--help")).stdout


def test_help_says_where_the_store_and_config_come_from() -> None:
    top = ok(wf(None, "--help"))
    assert "WF_STORE" in top.stdout
    assert "WF_CONFIG" in top.stdout
    for command in ("run", "status", "list", "resume", "worker", "prune"):
        text = ok(wf(None, command, "--help")).stdout
        assert "--store" in text
        assert "WF_STORE" in text


@pytest.mark.parametrize(
    "args",
    [["run"], ["no-such-command"], ["list", "--limit", "0"], ["send-event", "x"], ["delete"]],
)
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    result = wf(None, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# --- run --------------------------------------------------------------------------------


def test_run_to_completion_prints_one_plain_line_per_event(
    project: Project, effects: Effects
) -> None:
    result = ok(wf(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1)))
    lines = result.stdout.splitlines()
    assert lines[:2] == ["'a': started (attempt 1)", "'a': done"]
    assert "p1: complete after" in result.stdout
    assert 'output: {"a":2,"b":{"double":4},"c":[2,4,"done"]}' in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when stdout is not a terminal
    assert "─" not in result.stdout  # no box drawing either
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


def test_run_json_is_one_status_document(project: Project) -> None:
    result = ok(wf(project, "run", "pipeline", "--json", "--params", project.params(n=2)))
    document = json.loads(result.stdout)
    assert set(document) == STATUS_KEYS
    assert document["status"] == "complete"
    assert document["output"]["a"] == 3
    assert [step["name"] for step in document["steps"]] == ["a", "b", "c"]
    assert all(set(step) == STEP_KEYS for step in document["steps"])


def test_run_shows_a_retried_attempt(project: Project) -> None:
    result = ok(wf(project, "run", "flaky", "--id", "f1"))
    assert "'wobble': attempt 1 failed: ValueError: not yet; retry at" in result.stdout
    assert "'wobble': started (attempt 2)" in result.stdout
    assert status_of(project, "f1")["steps"][0]["attempts"] == 2


def test_run_errored_exits_1_with_the_error(project: Project) -> None:
    result = ok(wf(project, "run", "failing", "--id", "e1"), code=1)
    assert f"error: NonRetryableError: {ERROR_MESSAGE}" in result.stdout
    error = status_of(project, "e1")["error"]
    assert (error["name"], error["message"]) == ("NonRetryableError", ERROR_MESSAGE)
    assert error["traceback"].endswith("raise NonRetryableError(ERROR_MESSAGE)")


def test_run_suspended_on_a_sleep_exits_3_and_says_how_it_continues(project: Project) -> None:
    result = ok(
        wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)),
        code=3,
    )
    assert "s1: waiting" in result.stdout
    assert "`wf resume s1`" in result.stdout
    waiting = status_of(project, "s1")["waiting"]
    assert waiting["kind"] == "sleep"
    assert waiting["step"] == "nap"


def test_run_waiting_for_an_event_says_how_to_send_it(project: Project) -> None:
    result = ok(wf(project, "run", "approval", "--id", "a1", "--params", project.params()), code=3)
    assert "`wf send-event a1 --type approve`" in result.stdout
    assert status_of(project, "a1")["waiting"]["event_type"] == "approve"


def test_max_wait_overrides_the_projects_max_inline_wait(project: Project, tmp_path: Path) -> None:
    nap = project.params(seconds=0.2)  # under this project's max inline wait of 1 second
    ok(wf(project, "run", "sleeper", "--id", "inline", "--params", nap))
    ok(wf(project, "run", "sleeper", "--id", "later", "--max-wait", "0", "--params", nap), 3)
    strict = make_project(tmp_path / "strict", max_inline_wait="0 seconds")
    nap = strict.params(seconds=0.2)
    ok(wf(strict, "run", "sleeper", "--id", "later", "--params", nap), 3)
    ok(wf(strict, "run", "sleeper", "--id", "inline", "--max-wait", "5 seconds", "--params", nap))


def test_detach_only_creates_a_queued_instance(project: Project, effects: Effects) -> None:
    detach(project, "pipeline", "d1", n=1)
    assert status_of(project, "d1")["status"] == "queued"
    assert effects.count("a") == 0
    document = json.loads(ok(wf(project, "run", "pipeline", "--detach", "--json")).stdout)
    assert document["status"] == "queued"
    assert set(document) == STATUS_KEYS


def test_params_from_a_file_and_from_stdin(project: Project, tmp_path: Path) -> None:
    params_file = tmp_path / "params.json"
    params_file.write_text(project.params(n=10), encoding="utf-8")
    ok(wf(project, "run", "pipeline", "--id", "file", "--params", f"@{params_file}"))
    ok(wf(project, "run", "pipeline", "--id", "stdin", "--params", "-", stdin=project.params(n=20)))
    assert status_of(project, "file")["output"]["a"] == 11
    assert status_of(project, "stdin")["output"]["a"] == 21


@pytest.mark.parametrize(
    ("params", "stdin", "message"),
    [
        ("{not json", None, "--params: not valid JSON"),
        ("-", "[1, 2", "--params from stdin: not valid JSON"),
        ("@/no/such/file.json", None, "--params from /no/such/file.json: cannot read it"),
        ("[NaN]", None, "is not a JSON number"),
    ],
)
def test_bad_params_exit_2_and_write_nothing(
    project: Project, params: str, stdin: str | None, message: str
) -> None:
    line = one_line_error(wf(project, "run", "pipeline", "--params", params, stdin=stdin))
    assert message in line
    assert journals(project) == []


def test_bad_run_input_exits_2_and_writes_nothing(project: Project) -> None:
    assert "unknown workflow 'nope'" in one_line_error(wf(project, "run", "nope"))
    assert "instance ID" in one_line_error(wf(project, "run", "pipeline", "--id", "bad.id"))
    assert "--max-wait" in one_line_error(wf(project, "run", "pipeline", "--max-wait", "soon"))
    assert journals(project) == []
    detach(project, "pipeline", "taken", n=1)
    assert "already exists" in one_line_error(wf(project, "run", "pipeline", "--id", "taken"))


# --- configuration ------------------------------------------------------------------------


def test_config_errors_are_one_line_naming_the_file(project: Project, tmp_path: Path) -> None:
    missing = one_line_error(runner.invoke(app, ["list", "--config", str(tmp_path / "nope.toml")]))
    assert "nope.toml" in missing
    broken = tmp_path / "broken" / "workflows.toml"
    broken.parent.mkdir()
    broken.write_text('name = "x"\nmain = "m.py"\n[[workflows]]\nname = 3\n', encoding="utf-8")
    line = one_line_error(runner.invoke(app, ["run", "x", "--config", str(broken)]))
    assert f"{broken}:4:" in line
    bad_class = project.config.read_text(encoding="utf-8").replace('"Pipeline"', '"Missing"')
    project.config.write_text(bad_class, encoding="utf-8")
    assert "'Missing'" in one_line_error(wf(project, "run", "pipeline"))


def test_no_workflows_toml_and_no_store_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WF_STORE", raising=False)
    monkeypatch.delenv("WF_CONFIG", raising=False)
    assert "workflows.toml" in one_line_error(runner.invoke(app, ["list"]))


def test_reading_commands_need_only_the_store(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(wf(project, "run", "approval", "--id", "a1", "--params", project.params()), 3)
    ok(wf(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("WF_CONFIG", raising=False)
    store = ["--store", str(project.store)]
    listed = json.loads(ok(runner.invoke(app, ["list", "--json", *store])).stdout)
    assert {i["id"] for i in listed["instances"]} == {"a1", "p1"}
    ok(runner.invoke(app, ["status", "a1", *store]))
    ok(runner.invoke(app, ["history", "p1", *store]))
    # posting works too; going on needs the workflows, so it says how and exits 3
    sent = runner.invoke(app, ["send-event", "a1", "--type", "approve", *store])
    assert sent.exit_code == 3, sent.output
    assert "wf resume a1" in sent.stderr
    monkeypatch.setenv("WF_STORE", str(project.store))
    ok(runner.invoke(app, ["terminate", "a1"]))
    ok(runner.invoke(app, ["delete", "p1"]))
    assert "workflows.toml" in one_line_error(runner.invoke(app, ["run", "pipeline"]))


def test_workflows_lists_bindings_config_and_store(project: Project) -> None:
    plain = ok(wf(project, "workflows")).stdout
    assert "pipeline  PIPELINE  Pipeline" in plain
    assert str(project.config) in plain
    document = json.loads(ok(wf(project, "workflows", "--json")).stdout)
    assert set(document) == {"config", "store", "workflows"}
    assert document["store"] == str(project.store)
    assert document["workflows"][0] == {
        "name": "pipeline",
        "binding": "PIPELINE",
        "class_name": "Pipeline",
        "main": str(Path(__file__).resolve().parent / "workflows_for_tests.py"),
    }


# --- reading -------------------------------------------------------------------------------


def test_status_shows_the_instance_and_its_steps(project: Project) -> None:
    ok(wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)), 3)
    text = ok(wf(project, "status", "s1")).stdout
    assert "status    waiting" in text
    assert "waiting   sleep (step 'nap') until" in text
    rows = [line.split()[:3] for line in text.splitlines() if line.startswith(("before", "nap"))]
    assert rows == [["before", "do", "completed"], ["nap", "sleep", "waiting"]]


def test_status_watch_returns_once_the_instance_settles(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    detach(project, "pipeline", "w1", n=1)
    with held_by_another_executor(project, "w1", monkeypatch):
        assert status_of(project, "w1")["status"] == "running"
        Effects(project.effects).release_file("b").touch()
        document = json.loads(ok(wf(project, "status", "w1", "--watch", "--json")).stdout)
    assert document["status"] == "complete"


def test_list_filters_and_orders_newest_first(project: Project) -> None:
    detach(project, "pipeline", "q1", n=1)
    ok(wf(project, "run", "failing", "--id", "e1"), 1)
    ok(wf(project, "run", "pipeline", "--id", "c1", "--params", project.params(n=1)))

    def ids(*args: str) -> list[str]:
        document = json.loads(ok(wf(project, "list", "--json", *args)).stdout)
        assert all(set(i) == STATUS_KEYS - {"steps"} for i in document["instances"])
        return [i["id"] for i in document["instances"]]

    assert ids() == ["c1", "e1", "q1"]
    assert ids("--workflow", "pipeline") == ["c1", "q1"]
    assert ids("--status", "queued", "--status", "errored") == ["e1", "q1"]
    assert ids("--limit", "1") == ["c1"]
    plain = ok(wf(project, "list")).stdout.splitlines()
    assert plain[0].split() == ["ID", "WORKFLOW", "STATUS", "CREATED", "(UTC)", "ENDED", "(UTC)"]
    assert [line.split()[:3] for line in plain[1:2]] == [["c1", "pipeline", "complete"]]
    assert "'bogus' is not one of" in one_line_error(wf(project, "list", "--status", "bogus"))


def test_history_lists_every_record(project: Project) -> None:
    ok(wf(project, "run", "pipeline", "--id", "h1", "--params", project.params(n=1)))
    document = json.loads(ok(wf(project, "history", "h1", "--json")).stdout)
    assert document["id"] == "h1"
    types = [record["type"] for record in document["records"]]
    assert types[0] == "created"
    assert types[-1] == "finished"
    assert types.count("step_completed") == 3
    assert document["records"][0]["params"]["n"] == 1
    text = ok(wf(project, "history", "h1")).stdout.splitlines()
    assert text[0].split() == ["TIME", "(UTC)", "TYPE", "STEP", "ATTEMPT", "DETAIL"]
    assert len(text) == 1 + len(types)


@pytest.fixture
def in_kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone is Asia/Kolkata (UTC+05:30, called IST)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_human_times_say_their_zone(project: Project, in_kolkata: None) -> None:
    ok(wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)), 3)
    document = status_of(project, "s1")
    wake = datetime.fromisoformat(document["waiting"]["until"])
    assert document["waiting"]["until"].endswith("+00:00")  # JSON stays UTC
    local = (wake + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    shown = ok(wf(project, "status", "s1")).stdout
    assert f"until {local} IST (in " in shown
    assert "STARTED (IST)" in shown
    assert ok(wf(project, "history", "s1")).stdout.split()[:3] == ["TIME", "(IST)", "TYPE"]
    assert "CREATED (IST)" in ok(wf(project, "list")).stdout


def test_history_shows_the_retry_time_and_details_up_to_the_terminals_width(
    project: Project,
) -> None:
    ok(wf(project, "run", "flaky", "--id", "f1"))
    records = python_client(project).history("f1")
    now = records[-1].at
    for width in (100, 200):
        console = Console(width=width, record=True, force_terminal=True)
        console.print(history_table(records, now, plain=False))
        (failed,) = [
            line for line in console.export_text().splitlines() if "attempt_failed" in line
        ]
        assert "retry_at=" in failed
        assert len(failed.rstrip()) == width - 1 or failed.rstrip().endswith("not yet")
    plain = ok(wf(project, "history", "f1")).stdout
    (failed,) = [line for line in plain.splitlines() if "attempt_failed" in line]
    assert failed.endswith(" UTC error=ValueError: not yet")


@pytest.mark.parametrize(
    "command",
    [
        ["status", "ghost"],
        ["history", "ghost"],
        ["pause", "ghost"],
        ["terminate", "ghost"],
        ["restart", "ghost"],
        ["resume", "ghost"],
        ["send-event", "ghost", "--type", "t"],
        ["delete", "ghost"],
        ["status", "../escape"],
    ],
)
def test_unknown_or_invalid_ids_exit_2(project: Project, command: list[str]) -> None:
    project.store.mkdir()
    line = one_line_error(wf(project, *command))
    assert "ghost" in line or "not valid" in line


# Every command that does not create instances, so never makes a store.
READ_COMMANDS = [
    ["status", "ghost"],
    ["list"],
    ["history", "ghost"],
    ["doctor"],
    ["replay", "--all"],
    ["resume", "ghost"],
    ["pause", "ghost"],
    ["terminate", "ghost"],
    ["restart", "ghost"],
    ["send-event", "ghost", "--type", "t"],
    ["delete", "ghost"],
    ["prune", "--older-than", "1 day"],
    ["export", "ghost"],
]


@pytest.mark.parametrize("json_output", [[], ["--json"]])
@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_file_given_as_a_store_to_a_read_command_is_refused(
    project: Project, command: list[str], json_output: list[str]
) -> None:
    given = project.store.parent / "plain.txt"
    given.write_text("not a store\n", encoding="utf-8")
    options = ["--config", str(project.config), "--store", str(given)]
    flags = json_output if command[0] != "export" else []
    line = one_line_error(wf(None, *command, *flags, *options))
    assert line == f"error: store {given}: not a folder (a file store is a folder)"
    assert given.read_text(encoding="utf-8") == "not a store\n"


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_store_folder_given_to_a_read_command_must_exist(
    project: Project, command: list[str]
) -> None:
    missing = project.store.parent / "nowhere"
    line = one_line_error(
        wf(None, *command, "--config", str(project.config), "--store", str(missing))
    )
    assert line == f"error: store {missing}: no such folder"
    assert not missing.exists()


def test_a_file_given_as_a_store_is_refused(project: Project) -> None:
    project.store.parent.joinpath("plain.txt").write_text("not a store\n", encoding="utf-8")
    given = project.store.parent / "plain.txt"
    for command in (["list"], ["run", "pipeline", "--params", project.params(n=1)]):
        line = one_line_error(
            wf(None, *command, "--config", str(project.config), "--store", str(given))
        )
        assert line == f"error: store {given}: not a folder (a file store is a folder)"


def test_a_store_given_as_a_file_url_is_the_same_as_its_folder(project: Project) -> None:
    ok(wf(project, "run", "pipeline", "--id", "u1", "--params", project.params(n=1)))
    by_path = ok(wf(None, "list", "--json", "--store", str(project.store)))
    by_url = ok(wf(None, "list", "--json", "--store", project.store.as_uri()))
    assert by_url.stdout == by_path.stdout
    assert json.loads(by_url.stdout)["instances"][0]["id"] == "u1"
    status = ok(wf(None, "status", "u1", "--json", "--store", project.store.as_uri()))
    assert json.loads(status.stdout)["status"] == "complete"


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("mysql://db/wf", "unknown scheme 'mysql': use a folder, a file:// or a postgresql:// URL"),
        ("file://elsewhere/tmp/s", "a file:// URL names a folder on this machine"),
    ],
)
def test_a_store_location_that_names_no_store_is_one_line(
    project: Project, location: str, reason: str
) -> None:
    line = one_line_error(wf(None, "list", "--store", location))
    assert line == f"error: store {location}: {reason}"


def test_a_corrupt_journal_is_reported_with_file_and_line(project: Project) -> None:
    ok(wf(project, "run", "pipeline", "--id", "c1", "--params", project.params(n=1)))
    journal = project.store / "journals" / "c1.jsonl"
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = "{garbage\n"
    journal.write_text("".join(lines), encoding="utf-8")
    assert f"{journal}:2: corrupt journal" in one_line_error(wf(project, "status", "c1"))


# --- controlling --------------------------------------------------------------------------


def test_pause_then_resume(project: Project) -> None:
    ok(wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)), 3)
    assert ok(wf(project, "pause", "s1")).stdout.strip() == "s1: paused"
    assert status_of(project, "s1")["status"] == "paused"
    resumed = ok(wf(project, "resume", "s1"), 3)  # lifted, and asleep again
    assert "s1: waiting" in resumed.stdout
    assert status_of(project, "s1")["status"] == "waiting"


def test_pause_while_a_step_runs_takes_effect_after_it(
    project: Project, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    detach(project, "pipeline", "p1", n=1)
    with held_by_another_executor(project, "p1", monkeypatch) as outcome:
        paused = ok(wf(project, "pause", "p1")).stdout
        assert paused.startswith("p1: waitingForPause (process ")
    assert outcome["status"].status == "paused"
    assert effects.count("c") == 0
    ok(wf(project, "resume", "p1"))
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


def test_terminate_ends_it_and_resume_refuses(project: Project, effects: Effects) -> None:
    ok(wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)), 3)
    assert ok(wf(project, "terminate", "s1")).stdout.strip() == "s1: terminated"
    line = one_line_error(wf(project, "resume", "s1"))
    assert line == "error: cannot resume instance 's1': it is terminated"
    assert "it is terminated" in one_line_error(wf(project, "pause", "s1"))
    assert effects.count("after") == 0


def test_terminate_of_a_running_instance_says_the_termination_was_requested(
    project: Project, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    detach(project, "pipeline", "p1", n=1)
    with held_by_another_executor(project, "p1", monkeypatch) as outcome:
        said = ok(wf(project, "terminate", "p1")).stdout
        assert said.startswith("p1: termination requested; process ")
        assert said.endswith(", which executes it, terminates it when the step in flight ends\n")
        document = json.loads(ok(wf(project, "terminate", "p1", "--json")).stdout)
        assert (document["status"], document["pending"]) == ("running", ["terminate"] * 2)
    assert outcome["status"].status == "terminated"
    assert effects.count("c") == 0


def test_terminated_while_running_exits_4(
    project: Project, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BLOCK_ENV, "b")
    client = python_client(project)

    def terminate_when_blocked() -> None:
        wait_for_file(effects.blocked_marker("b"))
        client.terminate("t1")
        effects.release_file("b").touch()

    helper = threading.Thread(target=terminate_when_blocked)
    helper.start()
    result = wf(project, "run", "pipeline", "--id", "t1", "--params", project.params(n=1))
    helper.join(timeout=30)
    ok(result, code=4)
    assert "t1: terminated" in result.stdout
    assert effects.count("c") == 0


def test_an_instance_held_elsewhere_is_busy_exit_5(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    detach(project, "pipeline", "b1", n=1)
    with held_by_another_executor(project, "b1", monkeypatch) as outcome:
        line = one_line_error(wf(project, "resume", "b1"), code=5)
        assert "instance 'b1' is being executed by process" in line
        one_line_error(wf(project, "delete", "b1"), code=5)
        assert status_of(project, "b1")["holder"]["pid"] > 0
    assert outcome["status"].status == "complete"


def test_restart_runs_again_keeping_history(project: Project, effects: Effects) -> None:
    ok(wf(project, "run", "sleeper", "--id", "r1", "--params", project.params(seconds=0)))
    ok(wf(project, "restart", "r1", "--from-step", "after"))
    assert (effects.count("before"), effects.count("after")) == (1, 2)
    ok(wf(project, "restart", "r1"))
    assert (effects.count("before"), effects.count("after")) == (2, 3)
    records = json.loads(ok(wf(project, "history", "r1", "--json")).stdout)["records"]
    assert [r["type"] for r in records].count("restarted") == 2
    assert [r["type"] for r in records].count("finished") == 3
    assert "no step 'nope'" in one_line_error(wf(project, "restart", "r1", "--from-step", "nope"))


def test_restart_as_forks_a_new_instance_and_leaves_the_original_alone(
    project: Project, effects: Effects
) -> None:
    ok(wf(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1)))
    original = ok(wf(project, "history", "p1", "--json")).stdout
    ran = ok(wf(project, "restart", "p1", "--from-step", "c", "--as", "p2"))
    assert "'a': replayed from the journal" in ran.stdout
    assert "p2: complete after" in ran.stdout
    assert [effects.count(step) for step in "abc"] == [1, 1, 2]
    assert ok(wf(project, "history", "p1", "--json")).stdout == original
    shown = ok(wf(project, "status", "p2")).stdout
    assert "forked from  p1 (kept the steps before 'c')" in shown
    assert status_of(project, "p2")["forked_from"] == {"id": "p1", "step": "c"}
    assert "forked_from" not in status_of(project, "p1")
    assert "compatible" in ok(wf(project, "replay", "p2")).stdout
    assert ok(wf(project, "doctor")).stdout.endswith("healthy\n")
    listed = json.loads(ok(wf(project, "list", "--json")).stdout)["instances"]
    assert [entry["id"] for entry in listed] == ["p2", "p1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "p2"], "error: --as: a fork needs --from-step NAME"),
        (["--from-step", "z", "--as", "p2"], "no step 'z' (steps: 'a', 'b', 'c')"),
        (["--from-step", "b", "--as", "p1"], "an instance with ID 'p1' already exists"),
        (["--from-step", "b", "--as", "../x"], "not valid"),
    ],
)
def test_a_bad_fork_is_refused_writing_nothing(
    project: Project, args: list[str], message: str
) -> None:
    ok(wf(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1)))
    assert message in one_line_error(wf(project, "restart", "p1", *args))
    assert journals(project) == ["p1.jsonl"]


def test_run_if_exists_attach_reports_a_finished_instance_with_its_exit_code(
    project: Project, effects: Effects
) -> None:
    ok(wf(project, "run", "failing", "--id", "f1"), 1)
    attached = ok(wf(project, "run", "failing", "--id", "f1", "--if-exists", "attach"), 1)
    assert attached.stderr == "f1: exists (errored); attaching\n"
    assert "status    errored" in attached.stdout
    detached = ok(wf(project, "run", "failing", "--id", "f1", "--if-exists", "attach", "--detach"))
    assert "status    errored" in detached.stdout
    assert one_line_error(wf(project, "run", "failing", "--id", "f1")) == (
        "error: an instance with ID 'f1' already exists"
    )


def test_run_if_exists_attach_runs_a_queued_instance(project: Project, effects: Effects) -> None:
    detach(project, "pipeline", "q1", n=1)
    params = project.params(n=1)
    attached = ok(
        wf(project, "run", "pipeline", "--id", "q1", "--params", params, "--if-exists", "attach")
    )
    assert "q1: complete after" in attached.stdout
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]
    again = ok(wf(project, "run", "pipeline", "--id", "q1", "--if-exists", "attach", "--json"))
    assert json.loads(again.stdout)["status"] == "complete"
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sleeper", "--id", "p1", "--if-exists", "attach"], "exists as a 'pipeline' instance"),
        (["pipeline", "--if-exists", "attach"], "give the instance's --id"),
        (["pipeline", "--id", "p1", "--if-exists", "join"], "'join': give fail or attach"),
    ],
)
def test_run_if_exists_refuses_what_it_cannot_attach_to(
    project: Project, args: list[str], message: str
) -> None:
    ok(wf(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1)))
    assert message in one_line_error(wf(project, "run", *args))
    assert journals(project) == ["p1.jsonl"]


def test_send_event_resumes_the_waiter_in_the_foreground(
    project: Project, effects: Effects
) -> None:
    ok(wf(project, "run", "approval", "--id", "a1", "--params", project.params()), 3)
    result = ok(wf(project, "send-event", "a1", "--type", "approve", "--payload", '{"by": "ada"}'))
    assert "a1: complete" in result.stdout
    assert status_of(project, "a1")["output"] == {"approved_by": "ada"}
    assert (effects.count("prepare"), effects.count("record")) == (1, 1)


def test_send_event_of_another_type_is_buffered(project: Project) -> None:
    ok(wf(project, "run", "approval", "--id", "a1", "--params", project.params()), 3)
    result = ok(wf(project, "send-event", "a1", "--type", "other", "--payload", "-", stdin="7"))
    assert "buffered" in result.stdout
    assert status_of(project, "a1")["status"] == "waiting"
    assert "--payload: not valid JSON" in one_line_error(
        wf(project, "send-event", "a1", "--type", "approve", "--payload", "{")
    )


def test_send_event_to_an_instance_held_elsewhere_leaves_it_to_that_process(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(wf(project, "run", "approval", "--id", "a1", "--params", project.params()), 3)
    monkeypatch.setenv(BLOCK_ENV, "record")  # the waiter holds a1 until released
    effects = Effects(project.effects)
    client = python_client(project)
    outcome: dict[str, InstanceStatus] = {}
    waiter = threading.Thread(
        target=lambda: outcome.update(
            status=client.execute("a1", max_inline_wait=timedelta(hours=2))
        )
    )
    waiter.start()
    wait_until(lambda: client.status("a1").holder is not None, "the waiter to take a1")
    result = ok(wf(project, "send-event", "a1", "--type", "approve", "--payload", '{"by":"x"}'))
    wait_for_file(effects.blocked_marker("record"))
    effects.release_file("record").touch()
    waiter.join(timeout=30)
    assert "which executes the instance, will take it" in result.stdout
    assert outcome["status"].status == "complete"


def test_resume_several_reports_the_worst_outcome(project: Project) -> None:
    detach(project, "pipeline", "good", n=1)
    detach(project, "failing", "bad")
    detach(project, "sleeper", "slow", seconds=3600)
    document = json.loads(ok(wf(project, "resume", "good", "slow", "--json"), 3).stdout)
    assert [(i["id"], i["status"]) for i in document["instances"]] == [
        ("good", "complete"),
        ("slow", "waiting"),
    ]
    ok(wf(project, "resume", "bad", "slow"), 1)


def test_resume_due_runs_queued_instances(project: Project) -> None:
    detach(project, "pipeline", "q1", n=1)
    detach(project, "pipeline", "q2", n=2)
    ok(wf(project, "run", "sleeper", "--id", "s1", "--params", project.params(seconds=3600)), 3)
    document = json.loads(ok(wf(project, "resume", "--due", "--json")).stdout)
    assert sorted(i["id"] for i in document["instances"]) == ["q1", "q2"]
    assert ok(wf(project, "resume", "--due")).stdout.strip() == "nothing is due"
    assert "give instance IDs, or --due" in one_line_error(wf(project, "resume"))


def test_resume_refuses_a_finished_instance_before_running_anything(
    project: Project, effects: Effects
) -> None:
    detach(project, "pipeline", "q1", n=1)
    ok(wf(project, "run", "failing", "--id", "done"), 1)
    line = one_line_error(wf(project, "resume", "q1", "done"))
    assert "cannot resume instance 'done': it is errored" in line
    assert effects.count("a") == 0


def test_worker_once_runs_everything_due_and_exits(project: Project) -> None:
    for index in range(3):
        detach(project, "pipeline", f"q{index}", n=index)
    detach(project, "failing", "e1")
    result = ok(wf(project, "worker", "--once", "--concurrency", "2", "--poll", "0.05"))
    assert {"q0: complete", "q1: complete", "q2: complete", "e1: errored"} <= set(
        result.stdout.splitlines()
    )
    assert "--poll" in one_line_error(wf(project, "worker", "--poll", "often"))


def test_worker_prints_each_run_its_outcome_and_what_it_cannot_run(project: Project) -> None:
    unbound = WorkflowClient(open_store(project.store), {"ghost": Pipeline})
    unbound.create("ghost", params={"dir": str(project.effects), "n": 1}, instance_id="g1")
    detach(project, "pipeline", "q1", n=1)
    result = ok(wf(project, "worker", "--once"))
    assert result.stdout.splitlines() == [
        *(
            f"q1: {line}"
            for step in "abc"
            for line in (f"{step!r}: started (attempt 1)", f"{step!r}: done")
        ),
        "q1: complete",
    ]
    assert result.stderr.splitlines() == [
        f"worker: store {project.store}, up to 1 at a time",
        "error: g1: unknown workflow 'ghost' (known: approval, failing, flaky, pipeline, sleeper)",
        "worker: stopped: 1 run (1 complete); 1 failed",
    ]


def test_delete_and_prune(project: Project) -> None:
    ok(wf(project, "run", "pipeline", "--id", "old1", "--params", project.params(n=1)))
    ok(wf(project, "run", "failing", "--id", "old2"), 1)
    ok(wf(project, "run", "sleeper", "--id", "live", "--params", project.params(seconds=3600)), 3)
    detach(project, "pipeline", "gone", n=1)
    assert "ghost" in one_line_error(wf(project, "delete", "gone", "ghost"))
    assert "gone.jsonl" in journals(project)  # nothing deleted when one ID is unknown
    assert ok(wf(project, "delete", "gone")).stdout.strip() == "deleted gone"
    assert ok(wf(project, "prune", "--older-than", "1 hour")).stdout.strip() == "pruned 0 instances"
    pruned = ok(wf(project, "prune", "--older-than", "0", "--status", "errored")).stdout
    assert pruned.splitlines() == ["deleted old2", "pruned 1 instance"]
    ok(wf(project, "prune", "--older-than", "0 seconds"))
    assert journals(project) == ["live.jsonl"]
    # The lock files of the instances deleted went with them; status reads make none.
    ok(wf(project, "status", "live"))
    assert sorted(path.name for path in (project.store / "locks").iterdir()) == ["live.lock"]
    ok(wf(project, "delete", "live"))
    assert list((project.store / "locks").iterdir()) == []
    assert "finished instances only" in one_line_error(
        wf(project, "prune", "--older-than", "0", "--status", "waiting")
    )
    assert "--older-than" in one_line_error(wf(project, "prune", "--older-than", "ages"))


# --- live views -------------------------------------------------------------------------------


def test_line_log_says_what_happens_to_each_step() -> None:
    out = io.StringIO()
    clock = FakeClock()
    log = LineRunLog(out, clock.now, prefix="i1: ")
    log.step_started("charge", "do", 1)
    log.attempt_failed(
        "charge",
        1,
        ErrorInfo("IOError", "down"),
        clock.now() + timedelta(seconds=2),
        retryable=True,
    )
    log.waiting("charge", "retry", clock.now() + timedelta(seconds=2))
    log.step_finished("charge", "do", ok=True, replayed=False)
    log.step_finished("validate", "do", ok=True, replayed=True)
    log.attempt_failed("ship", 3, ErrorInfo("IOError", "down"), None, retryable=True)
    log.attempt_failed("pay", 1, ErrorInfo("CardDeclined", "no"), None, retryable=False)
    log.step_started("last", "do", 1)
    assert out.getvalue().endswith("not retryable\n")  # written at once before a wait
    log.flush()
    lines = out.getvalue().splitlines()
    assert lines[0] == "i1: 'charge': started (attempt 1)"
    assert lines[1].startswith("i1: 'charge': attempt 1 failed: IOError: down; retry at ")
    assert lines[1].endswith(" UTC") or lines[1][-5:-4] in "+-"
    assert lines[2].endswith("(2.0s)")
    assert lines[3:5] == ["i1: 'charge': done", "i1: 'validate': replayed from the journal"]
    assert lines[5:] == [
        "i1: 'ship': attempt 3 failed: IOError: down; no retries left",
        "i1: 'pay': attempt 1 failed: CardDeclined: no; not retryable",
        "i1: 'last': started (attempt 1)",
    ]


def test_gathered_lines_go_out_at_a_flush_or_a_tenth_of_a_second_later() -> None:
    out = io.StringIO()
    lines = GatheredLines(out)
    lines.write("one\n")
    lines.write("two\n")
    assert out.getvalue() == ""
    lines.flush()
    assert out.getvalue() == "one\ntwo\n"
    lines.write("three\n")  # no flush: the timer armed by "one" writes it
    deadline = time.monotonic() + 5
    while "three" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.getvalue() == "one\ntwo\nthree\n"


def test_runs_sharing_gathered_lines_keep_their_order_without_a_thread_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers: list[threading.Timer] = []
    real_timer = threading.Timer

    def counted_timer(*args: Any, **kwargs: Any) -> threading.Timer:
        timer = real_timer(*args, **kwargs)
        timers.append(timer)
        return timer

    monkeypatch.setattr(render.threading, "Timer", counted_timer)
    out = io.StringIO()
    shared = GatheredLines(out)
    for run in range(200):
        log = LineRunLog(shared, FakeClock().now, prefix=f"i{run}: ")
        log.step_started("a", "do", 1)
        log.step_finished("a", "do", ok=True, replayed=False)
        log.flush()
    expected = [
        line
        for run in range(200)
        for line in (f"i{run}: 'a': started (attempt 1)", f"i{run}: 'a': done")
    ]
    assert out.getvalue().splitlines() == expected
    assert 1 <= len(timers) <= 10  # one per tenth of a second at most, not one per run


def test_live_view_counts_down_to_retries_and_wake_times() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    view = LiveRunView(clock.now)
    view.step_finished("validate", "do", ok=True, replayed=True)
    view.step_started("charge", "do", 2)
    view.attempt_failed(
        "charge",
        2,
        ErrorInfo("IOError", "down"),
        clock.now() + timedelta(seconds=8),
        retryable=True,
    )
    view.step_started("nap", "sleep", 1)
    view.waiting("nap", "sleep", clock.now() + timedelta(seconds=30))
    clock.advance(timedelta(seconds=5))

    def drawn() -> str:
        console = Console(record=True, width=120, force_terminal=True)
        console.print(view)
        return console.export_text()

    text = drawn()
    assert "replayed" in text
    assert "attempt 2" in text
    assert "retry in 3.0s" in text
    assert "25s left" in text
    view.settle()
    assert "suspended" in drawn()


# --- schedules, limits, priorities ---------------------------------------------------------


def configure_pipeline(project: Project, *lines: str) -> None:
    """Add ``lines`` to the pipeline workflow's entry in the project's workflows.toml."""
    text = project.config.read_text(encoding="utf-8")
    entry = 'name = "pipeline"\n'
    assert entry in text
    project.config.write_text(text.replace(entry, entry + "".join(f"{line}\n" for line in lines)))


def test_run_priority_is_recorded_and_checked(project: Project) -> None:
    detach(project, "pipeline", "plain", n=1)
    result = ok(wf(project, "run", "pipeline", "--id", "p7", "--detach", "--priority", "7"))
    assert result.stdout == "p7\n"
    assert status_of(project, "p7")["priority"] == 7
    assert "priority" not in status_of(project, "plain")
    refused = wf(project, "run", "pipeline", "--priority", "1001")
    assert refused.exit_code == 2
    assert "'--priority': 1001 is not in the range 0<=x<=1000" in refused.stderr


def test_status_says_why_a_queued_instance_over_its_limit_waits(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_pipeline(project, "concurrency = { limit = 1 }")
    detach(project, "pipeline", "first", n=1)
    detach(project, "pipeline", "second", n=2)
    with held_by_another_executor(project, "first", monkeypatch):
        result = ok(wf(project, "status", "second"))
        assert result.stderr.splitlines()[-1] == (
            "queued: concurrency limit of 'pipeline' reached: 1 of 1 running;"
            " a worker starts it when there is room"
        )
        reason = status_of(project, "second")["queued_reason"]
        assert reason == "concurrency limit of 'pipeline' reached: 1 of 1 running"
    assert "queued_reason" not in status_of(project, "second")  # room again


def test_schedules_lists_next_and_last_fires_and_triggers_one(project: Project) -> None:
    configure_pipeline(
        project, 'schedules = [{ cron = "0 2 * * *", params = { dir = "x", n = 1 } }]'
    )
    listed = json.loads(ok(wf(project, "schedules", "--json")).stdout)["schedules"]
    assert [(s["schedule"], s["cron"], s["last_fire"], s["skipped"]) for s in listed] == [
        ("pipeline", "0 2 * * *", None, 0)
    ]
    assert listed[0]["next_fire"].endswith("T02:00:00.000000+00:00")
    triggered = ok(wf(project, "schedules", "--trigger", "pipeline"))
    instance_id = triggered.stdout.strip()
    assert instance_id.startswith("cron-")
    assert "-m" in instance_id
    status = status_of(project, instance_id)
    assert (status["status"], status["params"]) == ("queued", {"dir": "x", "n": 1})
    assert status["schedule"]["manual"] is True
    (after,) = json.loads(ok(wf(project, "schedules", "--json")).stdout)["schedules"]
    assert (after["last_id"], after["last_status"]) == (instance_id, "queued")
    table = ok(wf(project, "schedules")).stdout
    assert "0 2 * * *" in table
    assert instance_id in table
    error = one_line_error(wf(project, "schedules", "--trigger", "nightly"))
    assert "no schedule 'nightly' (schedules: pipeline)" in error


def test_a_bad_cron_stops_the_worker_with_a_config_error(project: Project) -> None:
    configure_pipeline(project, 'schedules = ["every night"]')
    error = one_line_error(wf(project, "worker", "--once"))
    assert "workflows[0].schedules[0]: 'every night': Wrong number of fields" in error
    detach(project, "pipeline", "p1", n=1)  # commands that run no schedule never parse it


def test_worker_once_suspends_a_wait_longer_than_its_poll_instead_of_sitting_in_it(
    tmp_path: Path,
) -> None:
    patient = make_project(tmp_path / "patient", max_inline_wait="30 seconds")
    detach(patient, "sleeper", "nap", seconds=20)  # wf run would sleep through it inline
    detach(patient, "pipeline", "after", n=1)
    ok(wf(patient, "worker", "--once", "--poll", "0.05"))
    assert status_of(patient, "nap")["status"] == "waiting"  # its slot went to "after"
    assert status_of(patient, "after")["status"] == "complete"
