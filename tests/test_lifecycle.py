"""Pause, resume, terminate, restart, send-event and the lock: in-process and cross-process."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.workflows_for_tests import (
    Children,
    Effects,
    assert_journal_sane,
    journal_path,
    make_client,
    outputs,
    wait_until,
)
from wfcli import (
    FakeClock,
    FileStore,
    InstanceBusyError,
    InstanceExistsError,
    InstanceHandle,
    InvalidStateError,
    StepContext,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInputError,
    WorkflowStep,
)
from wfcli.core.codec import (
    EventReceived,
    Forked,
    Paused,
    Record,
    Restarted,
    Resumed,
    RunStarted,
    StepCompleted,
    Terminated,
    WaitStarted,
)
from wfcli.core.owner import Owner

PIPELINE_OUTPUT = {"a": 42, "b": {"double": 84}, "c": [42, 84, "done"]}


def steps_completed(records: list[Record]) -> list[str]:
    return [record.step for record in records if isinstance(record, StepCompleted)]


def index_of(records: list[Record], wanted: type[Record]) -> int:
    return next(i for i, record in enumerate(records) if isinstance(record, wanted))


# --- in one process, on a fake clock ------------------------------------------------------


def test_pause_holds_a_waiting_instance_until_resumed(
    client: WorkflowClient, effects: Effects, clock: FakeClock
) -> None:
    handle = client.create("sleeper", params={"dir": str(effects.folder), "seconds": 3600})
    assert handle.execute().status == "waiting"

    assert handle.pause().status == "paused"
    clock.advance(timedelta(hours=2))
    assert handle.execute().status == "paused"
    assert effects.count("after") == 0

    resumed = handle.resume()
    final = handle.execute()

    assert resumed.status == "waiting"  # back to the sleep it was paused in
    assert resumed.waiting is not None
    assert resumed.waiting.until <= clock.now()
    assert (final.status, final.output) == ("complete", 2)
    assert (effects.count("before"), effects.count("after")) == (1, 1)


def test_terminate_ends_an_instance_for_good(
    client: WorkflowClient, effects: Effects, clock: FakeClock
) -> None:
    handle = client.create("sleeper", params={"dir": str(effects.folder), "seconds": 3600})
    handle.execute()

    assert handle.terminate().status == "terminated"
    clock.advance(timedelta(hours=2))

    assert handle.execute().status == "terminated"
    assert effects.count("after") == 0
    for refused in (handle.pause, handle.resume, handle.terminate):
        with pytest.raises(InvalidStateError, match="it is terminated"):
            refused()
    with pytest.raises(InvalidStateError):
        handle.send_event("anything")


def test_execute_returns_what_a_fresh_read_of_the_journal_says(
    client: WorkflowClient, effects: Effects, clock: FakeClock
) -> None:
    """``execute`` builds its answer from the executor's state, not a second read: they agree."""
    statuses: list[str] = []

    def execute(handle: InstanceHandle) -> None:
        ending = handle.execute()
        assert ending.to_json() == client.status(handle.id).to_json()
        statuses.append(ending.status)

    folder = str(effects.folder)
    sleeper = client.create("sleeper", params={"dir": folder, "seconds": 60})
    approval = client.create("approval", params={"dir": folder})
    flaky = client.create("flaky", params={"dir": folder})
    pipeline = client.create("pipeline", params={})  # no "dir": run itself raises
    for handle in (sleeper, approval, flaky, pipeline):
        execute(handle)
    approval.send_event("approve", {"by": "ana"})
    clock.advance(timedelta(hours=2))
    for handle in (sleeper, approval, flaky):
        execute(handle)

    assert statuses == ["waiting"] * 3 + ["errored"] + ["complete"] * 3


def test_restart_runs_again_with_the_same_id_and_params_keeping_history(
    client: WorkflowClient, effects: Effects
) -> None:
    params = {"dir": str(effects.folder), "n": 41}
    handle = client.create("pipeline", params=params, instance_id="again")
    handle.execute()
    before = client.history("again")

    assert handle.restart().status == "queued"
    final = handle.execute()

    assert (final.id, final.state.params, final.output) == ("again", params, PIPELINE_OUTPUT)
    history = client.history("again")
    assert history[: len(before)] == before
    assert outputs(history) == [PIPELINE_OUTPUT, PIPELINE_OUTPUT]
    assert [effects.count(step) for step in "abc"] == [2, 2, 2]


def test_restart_from_a_step_keeps_the_results_before_it(
    client: WorkflowClient, effects: Effects
) -> None:
    handle = client.create("pipeline", params={"dir": str(effects.folder), "n": 41})
    handle.execute()

    handle.restart(from_step="b")
    final = handle.execute()

    assert final.output == PIPELINE_OUTPUT
    assert [effects.count(step) for step in "abc"] == [1, 2, 2]
    (restart,) = [r for r in client.history(handle.id) if isinstance(r, Restarted)]
    assert (restart.from_step, restart.kept_steps) == ("b", ["a"])


def test_restart_from_an_unknown_step_is_refused_naming_the_known_steps(
    client: WorkflowClient, effects: Effects, store_dir: Path
) -> None:
    handle = client.create("pipeline", params={"dir": str(effects.folder), "n": 41})
    handle.execute()
    journal = journal_path(store_dir, handle.id).read_bytes()

    with pytest.raises(ValueError, match=r"no step 'z' \(steps: 'a', 'b', 'c'\)"):
        handle.restart(from_step="z")
    assert journal_path(store_dir, handle.id).read_bytes() == journal


def test_a_fork_keeps_the_steps_before_its_step_and_leaves_the_original_alone(
    client: WorkflowClient, effects: Effects, store_dir: Path
) -> None:
    handle = client.create("pipeline", params={"dir": str(effects.folder), "n": 41})
    handle.execute()
    original = journal_path(store_dir, handle.id).read_bytes()

    fork = handle.fork(from_step="b", new_id="forked")
    assert (fork.status().status, fork.status().state.forked_from) == ("queued", (handle.id, "b"))
    final = fork.execute()

    assert final.output == PIPELINE_OUTPUT
    assert [effects.count(step) for step in "abc"] == [1, 2, 2]
    assert journal_path(store_dir, handle.id).read_bytes() == original
    records = assert_journal_sane(journal_path(store_dir, "forked"))
    (forked,) = [r for r in records if isinstance(r, Forked)]
    assert (forked.source, forked.from_step, forked.kept_steps) == (handle.id, "b", ["a"])
    assert outputs(records) == [PIPELINE_OUTPUT, PIPELINE_OUTPUT]  # the source's, then its own
    assert final.state.started is not None
    assert final.state.started >= forked.at


def test_a_fork_keeps_the_priority_and_the_redaction_of_its_source_not_its_schedule(
    client: WorkflowClient, effects: Effects
) -> None:
    schedule = {"schedule": "nightly", "cron": "0 2 * * *", "scheduled_time": "t"}
    params = {"dir": str(effects.folder), "n": 41}
    handle = client.create("pipeline", params=params, priority=7, schedule=schedule, sensitive=True)
    handle.execute()

    fork = handle.fork(from_step="b", new_id="forked").status()
    assert (fork.state.priority, fork.state.sensitive_params) == (7, ("",))
    assert fork.state.schedule is None  # no schedule started the fork
    assert fork.to_json()["params"] == "[REDACTED]"


def test_a_fork_of_an_unknown_step_or_onto_a_taken_id_writes_nothing(
    client: WorkflowClient, effects: Effects, store_dir: Path
) -> None:
    handle = client.create("pipeline", params={"dir": str(effects.folder), "n": 41})
    handle.execute()
    client.create("pipeline", params={}, instance_id="taken")
    with pytest.raises(WorkflowInputError, match=r"no step 'z' \(steps: 'a', 'b', 'c'\)"):
        handle.fork(from_step="z", new_id="new")
    with pytest.raises(InstanceExistsError):
        handle.fork(from_step="b", new_id="taken")
    with pytest.raises(WorkflowInputError):
        handle.fork(from_step="b", new_id="../bad")
    assert sorted(p.name for p in (store_dir / "journals").iterdir()) == [
        f"{handle.id}.jsonl",
        "taken.jsonl",
    ]


def test_restart_requested_during_a_run_starts_over_without_duplicate_name_warnings(
    store_dir: Path, effects: Effects, clock: FakeClock
) -> None:
    counts_seen: list[int] = []

    class RestartsItselfOnce(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            def first(context: StepContext) -> int:
                counts_seen.append(context.count)
                if len(counts_seen) == 1:  # the lease holder applies it at the next step
                    client.restart(event.instance_id)
                return int(effects.call("first", 1))

            return step.do("first", first) + step.do("second", lambda: effects.call("second", 2))

    client = WorkflowClient(FileStore(store_dir), {"restarts": RestartsItselfOnce}, clock=clock)
    final = client.create("restarts").execute()

    assert (final.status, final.output) == ("complete", 3)
    assert (effects.count("first"), effects.count("second")) == (2, 1)
    assert counts_seen == [1, 1]
    assert final.state.warnings == []


@pytest.mark.parametrize("bad_type", ["", "new\nline", "x" * 257, "file-\udcff"], ids=repr)
def test_an_event_of_a_bad_type_is_refused_with_nothing_posted(
    client: WorkflowClient, effects: Effects, store_dir: Path, bad_type: str
) -> None:
    handle = client.create("approval", params={"dir": str(effects.folder)})
    handle.execute()
    journal = journal_path(store_dir, handle.id).read_bytes()

    with pytest.raises(ValueError, match=r"^event type: ") as refused:
        handle.send_event(bad_type, {"by": "ops"})

    assert isinstance(refused.value, WorkflowInputError)
    assert client.store.pending(handle.id) == []
    assert journal_path(store_dir, handle.id).read_bytes() == journal


# --- duplicate and invalid IDs ----------------------------------------------------------------


def test_a_duplicate_id_is_refused_with_nothing_written(
    client: WorkflowClient, store_dir: Path
) -> None:
    client.create("pipeline", params={"dir": "x", "n": 1}, instance_id="order-1")
    journal = journal_path(store_dir, "order-1").read_bytes()

    with pytest.raises(InstanceExistsError, match="'order-1' already exists"):
        client.create("pipeline", params={"dir": "y", "n": 2}, instance_id="order-1")

    assert journal_path(store_dir, "order-1").read_bytes() == journal
    assert sorted(p.name for p in (store_dir / "journals").iterdir()) == ["order-1.jsonl"]
    assert list((store_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "a/b",
        "a\x00b",
        "x" * 101,
        "\u0430bc",  # Cyrillic a
        "\uff41bc",  # fullwidth a
        "-leading-dash",
        "",
        ".hidden",
        "with space",
        "trailing-newline\n",
    ],
)
def test_an_invalid_id_is_refused_before_anything_is_written(
    client: WorkflowClient, store_dir: Path, bad_id: str
) -> None:
    with pytest.raises(ValueError, match="instance ID") as refused:
        client.create("pipeline", params={"dir": "x", "n": 1}, instance_id=bad_id)

    assert isinstance(refused.value, WorkflowInputError)
    assert not (store_dir / "journals").exists() or not any((store_dir / "journals").iterdir())
    with pytest.raises(ValueError, match="instance ID"):
        client.status(bad_id)


def test_the_longest_valid_id_is_accepted(client: WorkflowClient) -> None:
    longest = "_" + "x-" * 49 + "9"
    assert client.create("pipeline", params={"dir": "x", "n": 1}, instance_id=longest).id == longest


# --- from a second process while the first executes ------------------------------------------


@dataclass
class LiveRun:
    """A child process executing the pipeline ``live``, blocked inside step ``b``."""

    client: WorkflowClient
    child: subprocess.Popen[str]
    children: Children
    effects: Effects
    journal: Path

    def let_b_finish(self) -> Any:
        """Release step ``b`` and return the child's final status document."""
        self.effects.release_file("b").touch()
        return self.children.finish(self.child)[1]

    def calls(self) -> list[int]:
        return [self.effects.count(step) for step in "abc"]


@pytest.fixture
def live(store_dir: Path, effects: Effects, children: Children) -> LiveRun:
    client = make_client(store_dir)
    client.create("pipeline", params={"dir": str(effects.folder), "n": 41}, instance_id="live")
    child = children.start("execute", store_dir, "live", block_at="b")
    wait_until(effects.blocked_marker("b").exists, "step b to start", child)
    return LiveRun(client, child, children, effects, journal_path(store_dir, "live"))


def test_pause_while_a_step_runs_waits_for_the_step_then_pauses(
    live: LiveRun, store_dir: Path
) -> None:
    requested = live.client.pause("live")

    assert requested.status == "waitingForPause"
    assert requested.holder is not None
    assert requested.holder.pid == live.child.pid
    assert live.let_b_finish()["status"] == "paused"
    assert live.client.status("live").status == "paused"
    assert live.calls() == [1, 1, 0]

    assert live.client.resume("live").status == "queued"
    final = live.children.run("execute", store_dir, "live")

    assert (final["status"], final["output"]) == ("complete", PIPELINE_OUTPUT)
    assert live.calls() == [1, 1, 1]
    records = assert_journal_sane(live.journal)
    paused = index_of(records, Paused)
    assert steps_completed(records[:paused]) == ["a", "b"]
    assert not any(isinstance(r, StepCompleted) for r in records[paused : paused + 2])


def test_pause_and_resume_while_a_step_runs_lets_the_same_process_carry_on(
    live: LiveRun,
) -> None:
    assert live.client.pause("live").status == "waitingForPause"
    assert live.client.resume("live").status == "waitingForPause"
    final = live.let_b_finish()

    assert (final["status"], final["output"]) == ("complete", PIPELINE_OUTPUT)
    assert live.calls() == [1, 1, 1]
    records = assert_journal_sane(live.journal)
    paused, resumed = index_of(records, Paused), index_of(records, Resumed)
    assert steps_completed(records[:paused]) == ["a", "b"]
    assert resumed == paused + 1
    assert isinstance(records[resumed + 1], RunStarted)
    assert steps_completed(records[resumed:]) == ["c"]


def test_terminate_while_a_step_runs_lets_it_finish_and_runs_nothing_after(
    live: LiveRun,
) -> None:
    assert live.client.terminate("live").status == "running"
    stopped = live.let_b_finish()

    assert (stopped["status"], stopped["output"]) == ("terminated", None)
    assert live.calls() == [1, 1, 0]
    records = assert_journal_sane(live.journal)
    assert isinstance(records[-1], Terminated)
    assert steps_completed(records) == ["a", "b"]


@pytest.mark.parametrize(
    ("from_step", "calls"), [(None, [2, 2, 1]), ("b", [1, 2, 1])], ids=["all", "from-b"]
)
def test_restart_while_a_step_runs_starts_over_after_it(
    live: LiveRun, from_step: str | None, calls: list[int]
) -> None:
    live.client.restart("live", from_step=from_step)
    final = live.let_b_finish()

    assert (final["status"], final["output"]) == ("complete", PIPELINE_OUTPUT)
    assert final["warnings"] == []
    assert live.calls() == calls
    records = assert_journal_sane(live.journal)
    restarted = index_of(records, Restarted)
    assert steps_completed(records[:restarted]) == ["a", "b"]
    assert isinstance(records[restarted + 1], RunStarted)


def test_send_event_reaches_an_instance_waiting_in_another_process(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    client = make_client(store_dir)
    client.create("approval", params={"dir": str(effects.folder)}, instance_id="ask")
    child = children.start("execute", store_dir, "ask", "--max-inline-wait", 3600)
    wait_until(
        lambda: any(isinstance(r, WaitStarted) for r in client.history("ask")),
        "the event wait to begin",
        child,
    )

    assert client.send_event("ask", "approve", {"by": "ops"}).status in ("running", "complete")
    _, final = children.finish(child)

    assert (final["status"], final["output"]) == ("complete", {"approved_by": "ops"})
    records = assert_journal_sane(journal_path(store_dir, "ask"))
    assert index_of(records, WaitStarted) < index_of(records, EventReceived)
    assert steps_completed(records) == ["prepare", "approval", "record"]


# --- the lock -----------------------------------------------------------------------------


def test_a_second_executor_is_told_who_holds_the_instance_and_changes_nothing(
    live: LiveRun,
) -> None:
    journal = live.journal.read_bytes()

    with pytest.raises(InstanceBusyError, match=f"process {live.child.pid}") as busy:
        live.client.execute("live")
    with pytest.raises(InstanceBusyError):
        live.client.delete("live")

    assert busy.value.pid == live.child.pid
    assert live.journal.read_bytes() == journal


def test_execute_and_delete_wait_out_a_lease_held_for_a_moment(
    client: WorkflowClient, effects: Effects
) -> None:
    """A process that posts a message applies it under a lease held for milliseconds;
    an operator's execute or delete at that moment is not refused as busy."""
    poster = Owner(worker_id="poster", pid=4242, host="elsewhere")
    handle = client.create("pipeline", params={"dir": str(effects.folder), "n": 41})

    for operation in (client.execute, client.delete):
        brief = client.store.acquire(handle.id, poster)
        releaser = threading.Timer(0.1, brief.release)
        releaser.start()
        try:
            operation(handle.id)
        finally:
            releaser.join()

    assert client.store.instance_ids() == []
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


def test_an_instance_whose_process_died_is_interrupted_and_recovered(live: LiveRun) -> None:
    assert not live.client.status("live").interrupted

    live.children.kill(live.child)
    crashed = live.client.status("live")
    assert (crashed.status, crashed.interrupted, crashed.holder) == ("running", True, None)
    assert live.client.due() == ["live"]

    final = live.client.execute("live")

    assert (final.status, final.output) == ("complete", PIPELINE_OUTPUT)
    assert live.calls() == [1, 2, 1]
