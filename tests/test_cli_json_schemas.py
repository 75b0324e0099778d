"""Every command's ``--json`` document against the tables of ``docs/cli-json.md``.

The schemas are read from the doc itself (its ``| key | type | meaning |``
tables), so the doc cannot drift from what the commands print: a key printed
and not documented, a documented key missing (unless its meaning says *only
when*), or a value of another type fails here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli_support import Project, make_project, wf_executable
from tests.workflows_for_tests import (
    BLOCK_ENV,
    PATIENCE_SECONDS,
    Effects,
    Pipeline,
    journal_path,
    wait_until,
)
from wfcli import WorkflowClient
from wfcli.cli import app
from wfcli.core.codec import format_time
from wfcli.core.schedule import Schedule
from wfcli.store import open_store

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli-json.md"
runner = CliRunner()


@dataclass(frozen=True)
class Key:
    type: str
    optional: bool  # its meaning starts "*only ...*": the key may be left out


def doc_tables() -> dict[str, list[dict[str, Key]]]:
    """Each ``## `` section of the doc: its key tables, in order."""
    sections: dict[str, list[dict[str, Key]]] = {}
    section: list[dict[str, Key]] = []
    table: dict[str, Key] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = sections.setdefault(line[3:].strip(), [])
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[:2] == ["key", "type"]:
            table = {}
            section.append(table)
        elif line.startswith("|") and table is not None and not set(cells[0]) <= set("-"):
            name = re.fullmatch(r"`([a-z_]+)`", cells[0])
            assert name is not None, f"not a key cell in {DOC.name}: {line}"
            table[name[1]] = Key(cells[1], cells[2].startswith("*only"))
        elif not line.startswith("|"):
            table = None
    return sections


TABLES = doc_tables()


def schema(section: str, index: int = 0) -> dict[str, Key]:
    """Table ``index`` of the section whose heading starts with ``section``."""
    (heading,) = [h for h in TABLES if h.startswith(section)]
    return TABLES[heading][index]


STATUS = schema("1. ")
STEP = schema("1. ", 1)


def _is_time(value: object) -> bool:
    """ISO 8601 in UTC with microseconds, as the doc says times are."""
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.utcoffset() == timedelta(0) and "." in value


def _matches(value: object, type_text: str) -> bool:
    for alternative in type_text.split(" or "):
        if alternative.startswith("array of "):
            item = alternative.removeprefix("array of ").rstrip("s")
            if isinstance(value, list) and all(_matches(v, item) for v in value):
                return True
            continue
        ok = {
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "null": value is None,
            "time": _is_time(value),
            "object": isinstance(value, dict),
            "JSON value": True,
        }.get(alternative)
        assert ok is not None, f"{DOC.name} has a type the test does not know: {alternative!r}"
        if ok:
            return True
    return False


def check(document: object, table: dict[str, Key], nested: dict[str, Any] | None = None) -> None:
    """``document`` has every key of ``table`` (optional ones may be missing), no other,
    each of its type; ``nested`` maps a key to the schema (or ``(schema, nested)``) of
    its items (an array) or of its value (an object)."""
    assert isinstance(document, dict), document
    unknown = set(document) - set(table)
    assert not unknown, f"keys not in {DOC.name}: {sorted(unknown)}"
    missing = {key for key, spec in table.items() if not spec.optional} - set(document)
    assert not missing, f"documented keys missing: {sorted(missing)}"
    for key, value in document.items():
        assert _matches(value, table[key].type), f"{key}={value!r} is not {table[key].type}"
    for key, inner in (nested or {}).items():
        inner_table, inner_nested = inner if isinstance(inner, tuple) else (inner, None)
        value = document.get(key)
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            check(item, inner_table, inner_nested)


def check_status(document: object, *, steps: bool = True) -> None:
    table = STATUS if steps else {k: v for k, v in STATUS.items() if k not in LIST_LEAVES_OUT}
    check(document, table, {"steps": STEP} if steps else None)


LIST_LEAVES_OUT = ("steps", "forked_from")

WORKER_EVENTS = (
    "worker",
    "started",
    "finished",
    "failed",
    "skipped",
    "fire",
    "stopping",
    "stopped",
)
"""The ``event`` of each table of section 13 after its first, in order."""


def worker_line_schema(event: str) -> dict[str, Key]:
    return schema("13. ", 1 + WORKER_EVENTS.index(event))


# --- running the commands ---------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


def wf_json(project: Project, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json", *project.options()])
    assert result.exit_code == code, result.output
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def test_the_doc_has_a_table_for_every_document() -> None:
    sections = ("2. ", "3. ", "4. ", "5. ", "7. ", "8. ", "9. ", "10. ", "11. ", "12. ")
    for section in (*sections, "13. ", "14. "):
        assert schema(section), section
    (worker_heading,) = [h for h in TABLES if h.startswith("13. ")]
    assert len(TABLES[worker_heading]) == 1 + len(WORKER_EVENTS)
    assert set(schema("13. ")) == {"event", "at"}
    for event in WORKER_EVENTS:
        assert set(worker_line_schema(event)) >= {"event", "at"}, event
    assert "forked_from" in STATUS
    assert STATUS["forked_from"].optional
    assert not STATUS["id"].optional


def test_run_status_list_history_and_resume(project: Project) -> None:
    params = project.params(n=1)
    check_status(wf_json(project, "run", "pipeline", "--id", "p1", "--params", params))
    check_status(wf_json(project, "run", "pipeline", "--id", "q1", "--detach"))
    check_status(wf_json(project, "status", "p1"))
    check_status(wf_json(project, "status", "p1", "--watch"))
    listed = wf_json(project, "list")
    check(listed, schema("2. "))
    for entry in listed["instances"]:
        check_status(entry, steps=False)
    history = wf_json(project, "history", "p1")
    check(history, schema("3. "))
    assert {record["type"] for record in history["records"]} >= {"created", "finished"}
    timeline = wf_json(project, "timeline", "p1")
    check(timeline, schema("12. "), {"steps": (schema("12. ", 1), {"spans": schema("12. ", 2)})})
    assert timeline["steps"]
    assert all(step["spans"] for step in timeline["steps"])
    waiting = wf_json(project, "run", "approval", "--id", "a1", "--params", params, code=3)
    check_status(waiting)
    assert waiting["waiting"]["kind"] == "event"
    resumed = wf_json(project, "resume", "a1", code=3)
    check(resumed, schema("4. "), {"instances": STATUS})


def test_run_if_exists_attach(project: Project) -> None:
    params = project.params(n=1)
    wf_json(project, "run", "pipeline", "--id", "p1", "--params", params)
    attached = wf_json(project, "run", "pipeline", "--id", "p1", "--if-exists", "attach")
    check_status(attached)
    assert attached["status"] == "complete"


def test_pause_terminate_and_restart(project: Project) -> None:
    params = project.params(n=1)
    wf_json(project, "run", "approval", "--id", "a1", "--params", params, code=3)
    paused = wf_json(project, "pause", "a1")
    check_status(paused)
    assert paused["status"] == "paused"
    terminated = wf_json(project, "terminate", "a1")
    check_status(terminated)
    assert terminated["status"] == "terminated"
    wf_json(project, "run", "pipeline", "--id", "p1", "--params", params)
    check_status(wf_json(project, "restart", "p1"))
    check_status(wf_json(project, "restart", "p1", "--from-step", "b"))
    fork = wf_json(project, "restart", "p1", "--from-step", "c", "--as", "p2")
    check_status(fork)
    assert fork["forked_from"] == {"id": "p1", "step": "c"}


def test_send_event(project: Project) -> None:
    wf_json(project, "run", "approval", "--id", "a1", "--params", project.params(), code=3)
    buffered = wf_json(project, "send-event", "a1", "--type", "other")
    check(buffered, schema("7. "), {"instance": (STATUS, {"steps": STEP})})
    assert buffered["fate"] == "buffered"
    ran = wf_json(project, "send-event", "a1", "--type", "approve", "--payload", '{"by": "me"}')
    check(ran, schema("7. "), {"instance": (STATUS, {"steps": STEP})})
    assert (ran["fate"], ran["instance"]["status"]) == ("ran", "complete")


def test_delete_prune_and_import(project: Project, tmp_path: Path) -> None:
    params = project.params(n=1)
    for instance_id in ("p1", "p2", "p3"):
        wf_json(project, "run", "pipeline", "--id", instance_id, "--params", params)
    exported = runner.invoke(app, ["export", "p1", *project.options()])
    assert exported.exit_code == 0, exported.output
    deleted = wf_json(project, "delete", "p1")
    check(deleted, schema("8. "), {"errors": schema("8. ", 1)})
    assert deleted == {"deleted": ["p1"], "errors": []}
    pruned = wf_json(project, "prune", "--older-than", "0")
    check(pruned, schema("8. "), {"errors": schema("8. ", 1)})
    assert sorted(pruned["deleted"]) == ["p2", "p3"]
    assert "damaged" in pruned
    export_file = tmp_path / "p1.export"
    export_file.write_text(exported.stdout, encoding="utf-8")
    imported = wf_json(project, "import", str(export_file))
    check(imported, schema("9. "))
    assert imported == {"imported": ["p1"]}


def test_doctor_replay_and_workflows(project: Project) -> None:
    wf_json(project, "run", "pipeline", "--id", "p1", "--params", project.params(n=1))
    doctor = wf_json(project, "doctor")
    check(doctor, schema("10. "), {"findings": schema("10. ", 1)})
    replayed = wf_json(project, "replay", "--all")
    check(replayed, schema("11. "), {"instances": schema("11. ", 1), "summary": schema("11. ", 2)})
    workflows = wf_json(project, "workflows")
    check(workflows, schema("5. "), {"workflows": schema("5. ", 1)})


HOURLY_PARAMS = {"n": 1}


def add_hourly_schedule(project: Project) -> Schedule:
    """Give the pipeline workflow an hourly schedule; the schedule as a worker reads it."""
    params = {"dir": str(project.effects), **HOURLY_PARAMS}
    text = project.config.read_text(encoding="utf-8")
    entry = 'name = "pipeline"\n'
    inline = ", ".join(f"{key} = {json.dumps(value)}" for key, value in params.items())
    line = f'schedules = [{{ cron = "0 * * * *", params = {{ {inline} }} }}]\n'
    project.config.write_text(text.replace(entry, entry + line), encoding="utf-8")
    return Schedule(workflow="pipeline", name="pipeline", cron="0 * * * *", params=params)


def test_worker_json_lines(project: Project) -> None:
    schedule = add_hourly_schedule(project)
    store = open_store(project.store)
    evaluated = format_time(datetime.now().astimezone() - timedelta(hours=2))
    store.update_schedule_state(schedule.key, lambda kept: {"evaluated": evaluated})
    wf_json(project, "run", "pipeline", "--id", "q1", "--params", project.params(n=1), "--detach")
    WorkflowClient(store, {"ghost": Pipeline}).create("ghost", instance_id="g1")
    wf_json(project, "run", "pipeline", "--id", "broken", "--detach")
    with journal_path(project.store, "broken").open("ab") as journal:
        journal.write(b'{"v":1,"type":"run_started",garbage\n')
    result = runner.invoke(
        app, ["worker", "--once", "--json", "--poll", "0.05", *project.options()]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    for line in lines:
        check(line, worker_line_schema(line["event"]))
    events = [line["event"] for line in lines]
    assert (events[0], events[-1]) == ("worker", "stopped")
    assert set(events) == {"worker", "fire", "started", "finished", "failed", "skipped", "stopped"}
    (fire,) = [line for line in lines if line["event"] == "fire"]
    assert fire["result"] == "started"
    finished = {line["id"]: line["status"] for line in lines if line["event"] == "finished"}
    assert finished == {"q1": "complete", fire["id"]: "complete"}


@pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")
def test_a_stopped_worker_json_lines(project: Project) -> None:
    effects = Effects(project.effects)
    wf_json(project, "run", "pipeline", "--id", "w1", "--params", project.params(n=1), "--detach")
    environment = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    worker = subprocess.Popen(
        [wf_executable(), "worker", "--json", "--poll", "0.05", *project.options()],
        env={**environment, BLOCK_ENV: "b"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    assert worker.stdout is not None
    stdout = worker.stdout
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in stdout), daemon=True
    )
    reader.start()
    try:
        wait_until(effects.blocked_marker("b").exists, "the worker to block in step b", worker)
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: any(line["event"] == "stopping" for line in lines), "stopping")
        effects.release_file("b").touch()
        assert worker.wait(timeout=PATIENCE_SECONDS) == 0
        reader.join(PATIENCE_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    for line in lines:
        check(line, worker_line_schema(line["event"]))
    assert [line["event"] for line in lines] == [
        "worker",
        "started",
        "stopping",
        "finished",
        "stopped",
    ]
    assert lines[2]["in_flight"] == ["w1"]
    assert lines[3]["status"] == "queued"  # journaled as stopped, for the next worker
    assert lines[4]["runs"] == {"queued": 1}
    check_status(wf_json(project, "status", "w1"))


def test_schedules_and_trigger(project: Project) -> None:
    add_hourly_schedule(project)
    listed = wf_json(project, "schedules")
    check(listed, schema("14. "), {"schedules": schema("14. ", 1)})
    assert [s["schedule"] for s in listed["schedules"]] == ["pipeline"]
    triggered = wf_json(project, "schedules", "--trigger", "pipeline")
    check(triggered, schema("14. ", 2))
    assert triggered["result"] == "started"
    check_status(wf_json(project, "status", triggered["id"]))
    (after,) = wf_json(project, "schedules")["schedules"]
    check(after, schema("14. ", 1))
    assert (after["last_id"], after["last_status"]) == (triggered["id"], "queued")


def test_a_document_with_an_undocumented_key_fails_the_check() -> None:
    with pytest.raises(AssertionError, match=r"keys not in cli-json\.md"):
        check({"imported": [], "surprise": 1}, schema("9. "))
    with pytest.raises(AssertionError, match="is not array of strings"):
        check({"imported": [1]}, schema("9. "))
