"""``wf doctor``: the order rules of a journal, and a whole store checked read-only."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli_support import Project
from tests.reliability.chaos_workflows import Approval, Chain
from tests.reliability.support import assert_one_line_error, make_chaos_project, run_wf, snapshot
from wfcli import FakeClock, MemoryStore, WorkflowClient
from wfcli.cli import app
from wfcli.core.codec import (
    AttemptStarted,
    EventReceived,
    InboxMessage,
    Record,
    Restarted,
    RunStarted,
    StepCompleted,
)
from wfcli.project import load_project, open_client
from wfcli.store import FileStore
from wfcli.store.health import journal_order_problems

runner = CliRunner()


def history(tmp_path: Path, workflow: str = "chain") -> list[Record]:
    """The records of a complete run of a chaos workflow, in memory."""
    client = WorkflowClient(
        MemoryStore(), {"chain": Chain, "approval": Approval}, clock=FakeClock()
    )
    params = {"dir": str(tmp_path), "trace": str(tmp_path / "trace"), "n": 1, "work": 0}
    handle = client.create(workflow, params={**params, "event_timeout": "1 hour"})
    handle.execute()
    if workflow == "approval":
        handle.send_event("approve", {"by": "x"})
        handle.execute()
    return client.history(handle.id)


def index_of(records: list[Record], kind: type[Record], step: str | None = None) -> int:
    return next(
        i
        for i, r in enumerate(records)
        if isinstance(r, kind) and (step is None or getattr(r, "step", None) == step)
    )


def test_a_journal_one_writer_wrote_keeps_every_order_rule(tmp_path: Path) -> None:
    assert journal_order_problems(history(tmp_path)) == []
    assert journal_order_problems(history(tmp_path, "approval")) == []


def test_a_result_whose_attempt_never_started_is_out_of_order(tmp_path: Path) -> None:
    records = history(tmp_path)
    del records[index_of(records, AttemptStarted, "s2")]

    assert journal_order_problems(records) == [
        (
            index_of(records, StepCompleted, "s2") + 1,
            "attempt 1 of step 's2' ended but never started",
        )
    ]


def test_step_records_before_any_run_are_out_of_order(tmp_path: Path) -> None:
    records = history(tmp_path)
    del records[index_of(records, RunStarted)]

    (first, *_) = journal_order_problems(records)
    assert first == (2, "a attempt_started record before any run_started")


def test_a_second_result_a_reapplied_message_and_a_run_after_the_end_are_out_of_order(
    tmp_path: Path,
) -> None:
    records = history(tmp_path, "approval")
    event = records[index_of(records, EventReceived)]
    result = records[index_of(records, StepCompleted, "prepare")]
    run = records[index_of(records, RunStarted)]

    problems = journal_order_problems([*records, event, result, run])

    end = len(records)
    assert problems == [
        (end + 1, f"message {event.message_id} applied a second time"),  # type: ignore[attr-defined]
        (end + 2, "a step_completed record after the instance ended"),
        (end + 3, "a run_started record after the instance ended"),
    ]


def test_a_restart_allows_running_again_and_a_late_event_is_fine(tmp_path: Path) -> None:
    records = history(tmp_path, "approval")
    late = replace(records[index_of(records, EventReceived)], message_id="late")
    at = records[-1].at
    restart = Restarted(at=at, message_id="again", from_step=None, kept_steps=[])
    # The run again, without the event: a message, once applied, stays applied.
    rerun = [r for r in records[index_of(records, RunStarted) :] if r.TYPE != "event_received"]

    assert journal_order_problems([*records, late, restart, *rerun]) == []


# --- whole stores -----------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_chaos_project(tmp_path / "project", fsync=False)
    client = open_client(load_project(project.config), project.store)
    params = {"dir": str(project.effects), "trace": str(project.effects / "trace"), "n": 1}
    for instance_id in ("a", "b"):
        client.create("chain", params={**params, "work": 0}, instance_id=instance_id)
        client.execute(instance_id)
    client.create("approval", params={**params, "event_timeout": "1 hour"}, instance_id="c")
    client.execute("c")
    return project


def write_private(path: Path, data: bytes) -> None:
    """Write a file the way wfcli does (0600), so that doctor has no mode to note."""
    path.write_bytes(data)
    path.chmod(0o600)


def doctor(project: Project) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["doctor", "--json", *project.options()])
    return result.exit_code, json.loads(result.stdout)


def kinds(report: dict[str, object]) -> list[tuple[str, str]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return sorted((f["severity"], f["kind"]) for f in findings)


def message(message_id: str) -> InboxMessage:
    """An event message for instance ``c``, as ``wf send-event`` would post it."""
    return InboxMessage(
        message_id=message_id,
        action="event",
        sent_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
        event_type="other",
        payload=None,
    )


def test_a_healthy_store_is_healthy(project: Project) -> None:
    assert runner.invoke(app, ["list", *project.options()]).exit_code == 0  # writes the index
    assert (project.store / "cache").is_dir()

    code, report = doctor(project)

    assert code == 0
    assert report == {
        "store": str(project.store),
        "healthy": True,
        "checked": {"journals": 3, "inbox_messages": 0, "lock_files": 3},
        "problems": 0,
        "notes": 0,
        "findings": [],
    }


def test_crash_leftovers_are_notes_and_doctor_changes_nothing(project: Project) -> None:
    store = project.store
    (store / "tmp" / ".tmp-0123").write_bytes(b"half a created record")
    inbox = store / "inbox" / "c"
    inbox.mkdir()
    (inbox / ".tmp-4567").write_bytes(b"half a message")
    client = open_client(load_project(project.config), store, load=False)
    client.store.post("c", message("m1"))
    (posted,) = inbox.glob("*.json")
    kept = posted.read_bytes()
    client.executor.apply_inbox("c")  # journals the event and discards the message...
    write_private(posted, kept)  # ...which a crash in between would have left behind
    journal_a = store / "journals" / "a.jsonl"
    lines = journal_a.read_bytes().splitlines(keepends=True)
    journal_a.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])  # torn ``finished``
    journal_b = store / "journals" / "b.jsonl"
    lines = journal_b.read_bytes().splitlines(keepends=True)
    journal_b.write_bytes(b"".join(lines[:-1]))  # the crash came before ``finished``
    before = snapshot(store)

    code, report = doctor(project)

    assert code == 0, report
    assert kinds(report) == [
        ("note", "applied-message"),
        ("note", "interrupted"),
        ("note", "interrupted"),
        ("note", "temporary-file"),
        ("note", "temporary-file"),
        ("note", "torn-tail"),
    ]
    assert snapshot(store) == before


def test_damage_is_a_problem_with_file_and_line(project: Project) -> None:
    store = project.store
    journal = store / "journals" / "a.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join([lines[0], *lines[2:]]))
    inbox = store / "inbox" / "c"
    inbox.mkdir()
    write_private(inbox / f"{'1' * 20}-{'a' * 32}.json", b"{not json")
    (store / "journals" / "not an id.jsonl").write_bytes(b"")
    (store / "inbox" / "gone").mkdir()

    code, report = doctor(project)

    assert code == 1
    assert report["healthy"] is False
    assert kinds(report) == [
        ("note", "orphan-inbox"),
        ("problem", "damaged-inbox"),
        ("problem", "damaged-journal"),
        ("problem", "unknown-entry"),
    ]
    findings = {f["kind"]: f for f in report["findings"]}  # type: ignore[union-attr]
    assert (findings["damaged-journal"]["path"], findings["damaged-journal"]["line"]) == (
        str(journal),
        2,
    )
    assert findings["damaged-inbox"]["line"] == 1


def test_a_message_whose_name_does_not_match_its_id_is_a_problem(project: Project) -> None:
    client = open_client(load_project(project.config), project.store, load=False)
    client.store.post("c", message("m1"))
    inbox = project.store / "inbox" / "c"
    (posted,) = inbox.glob("*.json")
    posted.rename(inbox / f"{'2' * 20}-other.json")

    code, report = doctor(project)

    assert code == 1
    assert kinds(report) == [("problem", "damaged-inbox")]


def test_plain_output_names_each_finding_then_sums_up(project: Project) -> None:
    (project.store / "tmp" / ".tmp-1").write_bytes(b"")

    result = runner.invoke(app, ["doctor", *project.options()])

    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"note: {project.store / 'tmp' / '.tmp-1'}: stray temporary file (a create that "
        "stopped before the journal was linked)",
        f"store {project.store}: checked 3 journals, 0 inbox messages, 3 lock files: "
        "healthy, 1 note",
    ]


def test_doctor_on_a_missing_store_is_bad_usage(tmp_path: Path) -> None:
    outcome = run_wf(
        make_chaos_project(tmp_path / "p"), "doctor", "--store", str(tmp_path / "nowhere")
    )

    assert_one_line_error(outcome, mentions="no such folder")


def test_the_store_report_counts_what_it_checked(project: Project) -> None:
    report = FileStore(project.store).check()

    assert (report.journals, report.inbox_messages, report.lock_files) == (3, 0, 3)
    assert report.healthy
    assert report.summary().endswith(": healthy")
