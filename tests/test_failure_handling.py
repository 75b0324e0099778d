"""Rollbacks, workflow deadlines, waiting for a child, async callbacks (SPEC 6.3), through
the real executor on a file store, and SIGKILLed processes at every point of a rollback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.workflows_for_tests import (
    BINDINGS,
    WORKFLOWS,
    Children,
    Effects,
    assert_journal_sane,
    journal_path,
    make_client,
    wait_until,
)
from wfcli import (
    FakeClock,
    FileStore,
    JournalCorruptError,
    JournalStore,
    MemoryStore,
    Settings,
    WorkflowClient,
)
from wfcli.client.replay import replay_instance
from wfcli.core.codec import (
    AttemptStarted,
    Record,
    RollbackCompleted,
    RollbackFinished,
    RollbackStarted,
    encode_record,
)
from wfcli.engine.step import CHILD_POLL
from wfcli.store import open_store
from wfcli.store.contract import Owner

SAGA_ERROR = {"name": "NonRetryableError", "message": "ship is out of order"}


def named(error: Any) -> dict[str, Any]:
    """An error object without its traceback (the frames depend on the file's lines)."""
    return {key: error[key] for key in ("name", "message")}


def rollbacks_done(store_dir: Path, instance_id: str) -> list[str]:
    return [
        r.step for r in FileStore(store_dir).read(instance_id) if isinstance(r, RollbackCompleted)
    ]


def given(effects: Effects, name: str) -> Any:
    return json.loads((effects.folder / f"undo-{name}.given").read_text())


def saga(client: WorkflowClient, effects: Effects, **params: Any) -> str:
    return client.create("saga", params={"dir": str(effects.folder), **params}, instance_id="s").id


# --- rollbacks ----------------------------------------------------------------------------


def test_an_uncaught_failure_rolls_back_every_started_step_last_first(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    status = client.execute(saga(client, effects, fail="ship"))

    assert status.status == "errored"
    assert status.error is not None
    assert named(status.error.to_json()) == SAGA_ERROR
    assert rollbacks_done(store_dir, "s") == ["ship", "charge", "reserve"]
    assert [effects.count(f"undo-{n}") for n in ("ship", "charge", "reserve")] == [1, 1, 1]
    # The failing step's rollback gets no output and the step's error; the others their output.
    assert given(effects, "ship") == {
        "output": None,
        "error": "ship is out of order",
        "attempt": 1,
        "limit": 5,
    }
    assert given(effects, "charge") == {
        "output": {"id": "C-1", "order": "R-1"},
        "error": None,
        "attempt": 1,
        "limit": 2,
    }
    document = status.to_json()
    assert named(document["error"]) == SAGA_ERROR
    rollback = document["rollback"]
    assert isinstance(rollback, dict)
    assert (rollback["status"], rollback["completed"], rollback["total"]) == ("complete", 3, 3)
    assert [step["name"] for step in rollback["steps"]] == ["ship", "charge", "reserve"]
    assert_journal_sane(journal_path(store_dir, "s"))


def test_a_completed_instance_rolls_nothing_back(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    status = client.execute(saga(client, effects))

    assert status.status == "complete"
    assert "rollback" not in status.to_json()
    assert effects.count("undo-reserve") == 0


def test_the_chain_stops_at_the_first_rollback_that_fails_for_good(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    status = client.execute(saga(client, effects, fail="ship", broken="charge"))

    assert status.status == "errored"
    assert status.error is not None
    assert named(status.error.to_json()) == SAGA_ERROR  # the original
    assert [effects.count(f"undo-{n}") for n in ("ship", "charge", "reserve")] == [1, 1, 0]
    rollback = status.to_json()["rollback"]
    assert isinstance(rollback, dict)
    assert (rollback["status"], rollback["completed"], rollback["failed_step"]) == (
        "failed",
        1,
        "charge",
    )
    assert named(rollback["error"]) == {
        "name": "NonRetryableError",
        "message": "cannot undo charge",
    }


def test_a_rollback_is_retried_with_its_own_config(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    status = client.execute(saga(client, effects, fail="ship", flaky="charge"))

    assert status.status == "errored"
    assert effects.count("undo-charge") == 2
    assert given(effects, "charge")["attempt"] == 2
    assert rollbacks_done(store_dir, "s") == ["ship", "charge", "reserve"]


def test_terminate_without_rollback_undoes_nothing(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    assert client.execute(saga(client, effects, wait=True)).status == "waiting"

    status = client.terminate("s")

    assert status.status == "terminated"
    assert effects.count("undo-charge") == effects.count("undo-reserve") == 0


def test_terminate_with_rollback_undoes_the_started_steps_then_ends_terminated(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    assert client.execute(saga(client, effects, wait=True)).status == "waiting"

    requested = client.terminate("s", rollback=True)
    assert requested.status == "queued"  # due: the rollbacks need the code, run by execute
    assert "s" in client.due()
    status = client.execute("s")

    assert status.status == "terminated"
    assert status.error is None
    assert rollbacks_done(store_dir, "s") == ["charge", "reserve"]
    assert effects.count("undo-ship") == 0  # never started


def test_parallel_steps_roll_back_in_reverse_order_of_their_start(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    client.create("parallel-saga", params={"dir": str(effects.folder)}, instance_id="s")

    status = client.execute("s")

    assert status.status == "errored"
    records = FileStore(store_dir).read("s")
    started = [r.step for r in records if isinstance(r, AttemptStarted) and r.step != "settle"]
    assert rollbacks_done(store_dir, "s") == list(reversed(started))
    assert sorted(started) == ["p1", "p2", "p3"]


# --- a SIGKILL at every point of a rollback chain -------------------------------------------

CHAIN = ("ship", "charge", "reserve")


@pytest.mark.parametrize("killed_in", CHAIN)
def test_a_kill_inside_a_rollback_reruns_only_that_rollback(
    store_dir: Path, effects: Effects, children: Children, killed_in: str
) -> None:
    saga(make_client(store_dir), effects, fail="ship")
    victim = children.start("execute", store_dir, "s", block_at=f"undo-{killed_in}")
    wait_until(effects.blocked_marker(f"undo-{killed_in}").exists, "the rollback", victim)
    children.kill(victim)

    status = children.run("execute", store_dir, "s")

    assert (status["status"], named(status["error"])) == ("errored", SAGA_ERROR)
    assert [effects.count(f"undo-{n}") for n in CHAIN] == [
        2 if n == killed_in else 1 for n in CHAIN
    ]
    assert rollbacks_done(store_dir, "s") == list(CHAIN)
    assert_journal_sane(journal_path(store_dir, "s"))


@pytest.mark.parametrize("killed_after", CHAIN)
def test_a_kill_after_a_rollbacks_record_repeats_no_finished_rollback(
    store_dir: Path, effects: Effects, children: Children, tmp_path: Path, killed_after: str
) -> None:
    saga(make_client(store_dir), effects, fail="ship")
    marker = tmp_path / "recorded"
    victim = children.start(
        "execute",
        store_dir,
        "s",
        "--hang-after-record",
        f"rollback {killed_after}",
        "--marker",
        marker,
    )
    wait_until(marker.exists, "the rollback's record", victim)
    children.kill(victim)

    status = children.run("execute", store_dir, "s")

    assert (status["status"], named(status["error"])) == ("errored", SAGA_ERROR)
    assert [effects.count(f"undo-{n}") for n in CHAIN] == [1, 1, 1]
    records = FileStore(store_dir).read("s")
    assert sum(isinstance(r, RollbackStarted) for r in records) == 1
    assert sum(isinstance(r, RollbackFinished) for r in records) == 1


def test_a_kill_in_the_failing_step_before_the_rollback_starts_it_later(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    saga(make_client(store_dir), effects, fail="ship")
    victim = children.start("execute", store_dir, "s", block_at="ship")
    wait_until(effects.blocked_marker("ship").exists, "step ship", victim)
    children.kill(victim)

    status = children.run("execute", store_dir, "s")

    assert (status["status"], named(status["error"])) == ("errored", SAGA_ERROR)
    assert [effects.count(f"undo-{n}") for n in CHAIN] == [1, 1, 1]


# --- workflow deadlines ------------------------------------------------------------------


def deadline_run(store_dir: Path, effects: Effects, wait: str, timeout: float) -> WorkflowClient:
    client = make_client(store_dir)
    client.create(
        "deadline",
        params={"dir": str(effects.folder), "wait": wait, "seconds": 2 * timeout},
        instance_id="d",
        timeout=timedelta(seconds=timeout),
    )
    return client


@pytest.mark.parametrize("wait", ["sleep", "event"])
def test_a_suspended_wait_is_due_at_the_deadline_and_then_errors(
    store_dir: Path, effects: Effects, wait: str
) -> None:
    client = deadline_run(store_dir, effects, wait, 1.0)

    waiting = client.execute("d", max_inline_wait=timedelta(seconds=0.1))
    assert waiting.status == "waiting"
    deadline = waiting.state.deadline
    assert waiting.waiting is not None
    assert waiting.waiting.until == deadline  # not in an hour
    assert "d" not in client.due()
    wait_until(lambda: "d" in client.due(), "the deadline")
    status = client.execute("d")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "WorkflowTimeoutError"
    assert "deadline" in status.error.message
    assert effects.count("undo-book") == 1
    assert effects.count("late") == 0


def test_an_inline_wait_ends_at_the_deadline(store_dir: Path, effects: Effects) -> None:
    client = deadline_run(store_dir, effects, "event", 0.3)

    status = client.execute("d", max_inline_wait=timedelta(hours=2))

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "WorkflowTimeoutError"
    assert effects.count("undo-book") == 1


def test_a_deadline_passed_in_a_step_errors_at_the_next_step(
    store_dir: Path, effects: Effects
) -> None:
    client = deadline_run(store_dir, effects, "slow", 0.5)

    status = client.execute("d")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "WorkflowTimeoutError"
    assert "at step 'late'" in status.error.message
    assert status.state.steps["slow"].status == "completed"  # a running step is not cut
    assert effects.count("late") == 0
    assert effects.count("undo-book") == 1


def test_the_deadline_is_journaled_at_creation(store_dir: Path, effects: Effects) -> None:
    client = deadline_run(store_dir, effects, "sleep", 60)
    created = FileStore(store_dir).read("d")[0]
    assert created.deadline is not None  # type: ignore[attr-defined]
    assert client.status("d").to_json()["deadline"] is not None


def test_replay_of_an_instance_that_passed_its_deadline_is_compatible(
    store_dir: Path, effects: Effects
) -> None:
    client = deadline_run(store_dir, effects, "slow", 0.2)
    client.execute("d")
    report = replay_instance(client, "d")
    assert report.compatible, report.to_json()


# --- children ----------------------------------------------------------------------------


def parent(client: WorkflowClient, effects: Effects, **child: Any) -> None:
    client.create(
        "parent",
        params={"child_id": "kid", "child": {"dir": str(effects.folder), **child}},
        instance_id="mom",
    )


def test_a_parent_runs_its_child_and_gets_its_output(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    parent(client, effects)

    status = client.execute("mom")

    assert (status.status, status.output) == ("complete", {"child said": "hello"})
    assert client.status("kid").state.parent == "mom"
    assert client.status("kid").to_json()["parent"] == "mom"
    assert status.to_json()["children"] == ["kid"]


def test_a_child_that_errors_fails_the_parents_wait(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    parent(client, effects, fail=True)

    status = client.execute("mom")

    assert status.status == "errored"
    assert status.error is not None
    assert (status.error.name, status.error.message) == ("NonRetryableError", "child broke")
    assert status.state.steps["join"].status == "failed"


def test_a_terminated_child_wakes_its_waiting_parent_which_fails(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    parent(client, effects, nap=3600)
    assert client.execute("mom").status == "waiting"
    assert client.status("kid").status == "waiting"
    assert "mom" not in client.due()

    client.terminate("kid")

    assert "mom" in client.due()  # woken through its inbox, not by its poll
    status = client.execute("mom")
    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "Terminated"


def test_a_parent_whose_wake_was_lost_looks_at_its_child_within_a_minute(
    store_dir: Path, effects: Effects, clock: FakeClock
) -> None:
    client = make_client(store_dir, clock=clock)
    parent(client, effects, nap=45)
    waiting = client.execute("mom")
    assert waiting.waiting is not None
    assert (waiting.waiting.kind, waiting.waiting.until) == ("instance", clock.now() + CHILD_POLL)

    clock.advance(timedelta(seconds=46))
    assert client.execute("kid").status == "complete"
    with FileStore(store_dir).acquire("mom", Owner.current()) as lease:  # as if never sent
        lease.discard([message.message_id for message in lease.pending()])
    assert "mom" not in client.due()
    clock.advance(timedelta(seconds=15))

    assert client.due() == ["mom"]
    status = client.execute("mom")
    assert (status.status, status.output) == ("complete", {"child said": "hello"})


def test_a_child_killed_in_the_parents_process_finishes_on_the_next_run(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    parent(make_client(store_dir), effects)
    victim = children.start("execute", store_dir, "mom", block_at="work")
    wait_until(effects.blocked_marker("work").exists, "the child's step", victim)
    children.kill(victim)

    status = children.run("execute", store_dir, "mom")

    assert (status["status"], status["output"]) == ("complete", {"child said": "hello"})
    assert effects.count("work") == 2
    assert make_client(store_dir).status("kid").status == "complete"


def test_a_child_run_elsewhere_and_killed_then_finished_wakes_the_parent(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    client = make_client(store_dir)
    parent(client, effects, nap=0.4)
    assert client.execute("mom", max_inline_wait=timedelta(seconds=0)).status == "waiting"
    time.sleep(0.5)
    victim = children.start("execute", store_dir, "kid", block_at="work")
    wait_until(effects.blocked_marker("work").exists, "the child's step", victim)
    children.kill(victim)
    assert children.run("execute", store_dir, "kid")["status"] == "complete"

    assert "mom" in client.due()
    status = client.execute("mom")
    assert (status.status, status.output) == ("complete", {"child said": "hello"})


def test_creating_an_instance_outside_a_step_is_refused_on_the_first_run(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    client.create("careless", params={"dir": str(effects.folder)}, instance_id="c")

    status = client.execute("c")

    assert status.status == "errored"
    assert status.error is not None
    assert "inside a step.do callback" in status.error.message
    assert [s.id for s in client.list_instances()] == ["c"]


# --- async callbacks and the step context ------------------------------------------------------


def test_async_callbacks_are_awaited_with_timeouts_and_retries(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    client.create("async-steps", params={"dir": str(effects.folder)}, instance_id="a")

    status = client.execute("a")

    assert status.status == "complete"
    assert status.output == {"fetched": {"attempt": 1, "timeout": 600.0}, "attempts": 2}
    assert effects.count("slow") == 2
    wait_until(lambda: effects.count("cancelled") == 1, "the timed-out attempt's cancellation")


def test_an_async_rollback_runs(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    client.create("async-steps", params={"dir": str(effects.folder), "fail": True}, instance_id="a")

    assert client.execute("a").status == "errored"
    assert effects.count("undo-fetch") == 1


def test_a_rollback_that_times_out_is_cancelled_and_retried(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    params = {"dir": str(effects.folder), "fail": True, "slow_undo": True}
    client.create("async-steps", params=params, instance_id="a")

    status = client.execute("a")

    assert status.status == "errored"
    assert status.state.rollback is not None
    assert status.state.rollback.status == "complete"
    assert status.state.rollback.steps["fetch"].attempts == 2
    assert effects.count("undo-fetch") == 2
    wait_until(lambda: effects.count("undo-cancelled") == 1, "the timed-out rollback's cancel")


# --- replay and damaged journals ---------------------------------------------------------------


def test_replay_of_a_rolled_back_history_is_compatible(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    client.execute(saga(client, effects, fail="ship", broken="charge"))

    report = replay_instance(client, "s")

    assert report.compatible, report.to_json()


def test_replay_flags_a_rollback_the_code_no_longer_has(
    store_dir: Path, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(store_dir)
    client.execute(saga(client, effects, fail="ship"))
    from wfcli.engine.step import WorkflowStep

    real_do = WorkflowStep.do

    def without_rollbacks(self: WorkflowStep, name: str, callback: Any, **options: Any) -> Any:
        options.pop("rollback", None)
        options.pop("rollback_config", None)
        return real_do(self, name, callback, **options)

    monkeypatch.setattr(WorkflowStep, "do", without_rollbacks)
    report = replay_instance(client, "s")

    assert not report.compatible
    assert report.divergences[0].kind == "changed_rollback"


def test_a_rollback_record_out_of_place_is_reported_with_its_line(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    client.execute(saga(client, effects))
    path = journal_path(store_dir, "s")
    lines = path.read_bytes().splitlines()
    stray: Record = RollbackCompleted(at=client.clock.now(), step="charge", attempt=1)
    path.write_bytes(b"\n".join([*lines, encode_record(stray, len(lines) + 1).encode()]) + b"\n")

    with pytest.raises(JournalCorruptError) as raised:
        FileStore(store_dir).read("s")
    assert f":{len(lines) + 1}" in str(raised.value) or str(len(lines) + 1) in str(raised.value)
    assert "before 'rollback_started'" in str(raised.value)


def test_an_unknown_rollback_record_type_is_refused(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir)
    client.execute(saga(client, effects))
    path = journal_path(store_dir, "s")
    lines = path.read_bytes().splitlines()
    number = len(lines) + 1
    line = (
        f'{{"v":1,"n":{number},"type":"rollback_exploded","at":"2025-01-01T00:00:00.000000+00:00"}}'
    )
    path.write_bytes(b"\n".join([*lines, line.encode()]) + b"\n")

    with pytest.raises(JournalCorruptError, match="rollback_exploded"):
        FileStore(store_dir).read("s")


def test_step_context_has_the_resolved_config(store_dir: Path, effects: Effects) -> None:
    client = make_client(store_dir, settings=Settings(timeout=timedelta(seconds=42)))
    client.create("async-steps", params={"dir": str(effects.folder)}, instance_id="a")
    status = client.execute("a")
    assert status.output["fetched"]["timeout"] == 42.0  # type: ignore[index,call-overload]


# --- on every store -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "files", "postgres"])
def any_store(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[JournalStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "files":
        yield FileStore(store_dir)
    else:
        server = request.getfixturevalue("pg_server")
        store = open_store(server.store_url())
        yield store
        store.close()


def test_a_child_wakes_its_parent_and_a_deadline_wakes_a_sleeper_on_every_store(
    any_store: JournalStore, effects: Effects
) -> None:
    client = WorkflowClient(any_store, WORKFLOWS, bindings=BINDINGS)
    client.create(
        "parent",
        params={"child_id": "kid", "child": {"dir": str(effects.folder), "nap": 3600}},
        instance_id="mom",
    )
    short = timedelta(seconds=0.05)
    assert client.execute("mom", max_inline_wait=short).status == "waiting"
    client.create(
        "deadline",
        params={"dir": str(effects.folder), "wait": "sleep"},
        instance_id="d",
        timeout=timedelta(seconds=2),
    )
    assert client.execute("d", max_inline_wait=short).status == "waiting"
    assert "mom" not in client.due()

    client.terminate("kid")
    wait_until(lambda: set(client.due()) == {"mom", "d"}, "the wake and the deadline")

    assert client.execute("mom").status == "errored"
    timed_out = client.execute("d")
    assert timed_out.error is not None
    assert timed_out.error.name == "WorkflowTimeoutError"
    assert effects.count("undo-book") == 1


def test_terminate_with_rollback_reaches_a_run_in_another_process(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    client = make_client(store_dir)
    saga(client, effects, wait=True)
    runner = children.start("execute", store_dir, "s", "--max-inline-wait", "7200")
    wait_until(lambda: "approval" in client.status("s").state.steps, "the event wait", runner)
    assert client.status("s").holder is not None

    client.terminate("s", rollback=True)  # the holder applies it while it waits

    code, status = children.finish(runner)
    assert code == 0
    assert status["status"] == "terminated"
    assert [s["name"] for s in status["rollback"]["steps"]] == ["charge", "reserve"]
    assert [effects.count(f"undo-{n}") for n in CHAIN] == [0, 1, 1]


def test_a_parent_killed_while_it_waits_for_its_child_finishes_on_the_next_run(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    client = make_client(store_dir)
    parent(client, effects, nap=3600)
    runner = children.start("execute", store_dir, "mom", "--max-inline-wait", "120")
    wait_until(lambda: "join" in client.status("mom").state.steps, "the parent's wait", runner)
    children.kill(runner)
    assert client.status("mom").interrupted

    client.terminate("kid")
    status = children.run("execute", store_dir, "mom")

    assert status["status"] == "errored"
    assert status["error"]["name"] == "Terminated"
    assert effects.count("work") == 0


def test_the_timeline_draws_each_rollback_in_a_row_of_its_own(
    store_dir: Path, effects: Effects
) -> None:
    import io

    from rich.console import Console

    from wfcli.core.timeline import Timeline
    from wfcli.ui.timeline import timeline_view

    client = make_client(store_dir)
    client.execute(saga(client, effects, fail="ship"))

    timeline = Timeline.of(FileStore(store_dir).read("s"))
    rows = {name: row for name, row in timeline.rows.items() if row.kind == "rollback"}
    assert list(rows) == ["rollback ship", "rollback charge", "rollback reserve"]
    for row in rows.values():
        assert [(span.kind, span.outcome) for span in row.spans] == [("rollback", "ok")]
        assert row.spans[0].end is not None
    console = Console(width=120, file=io.StringIO(), color_system=None)
    console.print(timeline_view(timeline, timeline.end(client.clock.now()), 120, plain=True))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    (charge,) = [line for line in lines if line.startswith("rollback charge")]
    assert charge.split()[2:4] == ["undo", "1"]
    assert "▚" in charge
    assert any("▚ rollback" in line for line in lines)  # the legend
