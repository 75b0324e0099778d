"""The worker (:class:`wfcli.client.worker.Worker`) driven directly, without the CLI.

Instances run in memory or in a file store; steps that must stay in flight block on
a :class:`Gates` event the test opens.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.workflows_for_tests import PATIENCE_SECONDS, Effects, make_client, wait_until
from wfcli import (
    FakeClock,
    InstanceStatus,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.client import NullWorkerEvents, Worker
from wfcli.client.replay import replay_instance
from wfcli.core.codec import StepKind
from wfcli.engine.step import NullObserver, RunObserver
from wfcli.errors import JournalCorruptError, StoreFaultError, WorkflowError, WorkflowInputError
from wfcli.store.memory import MemoryStore

POLL = timedelta(seconds=0.01)


class Gates:
    """Steps that wait until the test opens them, and how many wait at once."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._mutex = threading.Lock()
        self.inside: list[str] = []
        self.most_inside = 0
        self.passed: list[str] = []

    def enter(self, name: str) -> str:
        with self._mutex:
            self.inside.append(name)
            self.most_inside = max(self.most_inside, len(self.inside))
        assert self.opened.wait(PATIENCE_SECONDS), f"{name} was never let through"
        with self._mutex:
            self.inside.remove(name)
            self.passed.append(name)
        return name


GATES = Gates()


class Gated(WorkflowEntrypoint):
    """Step ``first`` waits at the gate; step ``second`` does not."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = step.do("first", lambda: GATES.enter(f"{event.instance_id}/first"))
        return step.do("second", lambda: f"{first} then second")


class Quick(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return step.do("only", lambda: event.instance_id)


class Napper(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.sleep("nap", "1 hour")
        return "rested"


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {"gated": Gated, "quick": Quick, "nap": Napper}


class Recorder:
    """Every event, in order, as ``(kind, detail)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []
        self._mutex = threading.Lock()

    def _add(self, kind: str, detail: object) -> None:
        with self._mutex:
            self.seen.append((kind, detail))

    def of(self, kind: str) -> list[object]:
        with self._mutex:
            return [detail for seen, detail in self.seen if seen == kind]

    def started(self, instance_id: str) -> None:
        self._add("started", instance_id)

    def finished(self, status: InstanceStatus) -> None:
        self._add("finished", (status.id, status.status))

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        self._add("failed", (instance_id, type(error).__name__))

    def skipped(self, error: JournalCorruptError) -> None:
        self._add("skipped", str(error))

    def stopping(self, in_flight: Sequence[str]) -> None:
        self._add("stopping", list(in_flight))


@pytest.fixture(autouse=True)
def gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gates]:
    fresh = Gates()
    monkeypatch.setattr(sys.modules[__name__], "GATES", fresh)
    yield fresh
    fresh.opened.set()  # a failed test leaves no thread stuck at the gate


@pytest.fixture
def memory() -> WorkflowClient:
    return WorkflowClient(MemoryStore(), WORKFLOWS, clock=FakeClock())


def fake_clock(client: WorkflowClient) -> FakeClock:
    assert isinstance(client.clock, FakeClock)
    return client.clock


def create(client: WorkflowClient, workflow: str, instance_id: str) -> None:
    """Create an instance a second after the one before (due ones run oldest first)."""
    fake_clock(client).advance(timedelta(seconds=1))
    client.create(workflow, instance_id=instance_id)


def worker_of(client: WorkflowClient, **options: Any) -> tuple[Worker, Recorder]:
    events = Recorder()
    return Worker(client, poll_interval=POLL, events=events, **options), events


def in_background(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def finish(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()


def scans_pass(count: int) -> None:
    """Let a polling worker scan the store about ``count`` more times."""
    time.sleep(POLL.total_seconds() * count)


def statuses(client: WorkflowClient) -> dict[str, str]:
    return {s.id: s.status for s in client.list_instances()}


def test_once_runs_everything_due_oldest_first_and_returns(memory: WorkflowClient) -> None:
    for index in range(3):
        create(memory, "quick", f"q{index}")
    create(memory, "nap", "n1")
    worker, events = worker_of(memory, once=True)
    worker.run()
    assert statuses(memory) == {
        "q0": "complete",
        "q1": "complete",
        "q2": "complete",
        "n1": "waiting",
    }
    assert events.of("started") == ["q0", "q1", "q2", "n1"]
    assert events.of("finished") == [
        ("q0", "complete"),
        ("q1", "complete"),
        ("q2", "complete"),
        ("n1", "waiting"),
    ]
    assert [s.holder for s in memory.list_instances()] == [None] * 4  # every lease released


def test_once_with_nothing_due_returns_at_once_and_runs_what_the_clock_makes_due(
    memory: WorkflowClient,
) -> None:
    worker, events = worker_of(memory, once=True)
    worker.run()
    assert events.seen == []
    create(memory, "nap", "n1")
    worker.run()
    worker.run()  # napping: nothing due
    assert events.of("finished") == [("n1", "waiting")]
    fake_clock(memory).advance(timedelta(hours=2))
    worker.run()
    assert memory.status("n1").status == "complete"


def test_concurrency_bounds_the_instances_in_flight(memory: WorkflowClient, gates: Gates) -> None:
    for index in range(5):
        create(memory, "gated", f"g{index}")
    worker, events = worker_of(memory, concurrency=2, once=True)
    thread = in_background(worker)
    wait_until(lambda: len(gates.inside) == 2, "two instances at the gate")
    scans_pass(5)
    assert sorted(gates.inside) == ["g0/first", "g1/first"]  # the oldest two, and no third
    gates.opened.set()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()
    assert gates.most_inside == 2
    assert set(statuses(memory).values()) == {"complete"}
    assert len(events.of("finished")) == 5


def test_stop_lets_the_step_in_flight_finish_and_starts_nothing_more(
    memory: WorkflowClient, gates: Gates
) -> None:
    create(memory, "gated", "g1")
    create(memory, "quick", "later")
    worker, events = worker_of(memory)
    thread = in_background(worker)
    wait_until(lambda: gates.inside == ["g1/first"], "g1 at the gate")
    worker.stop()
    assert worker.stopped
    wait_until(lambda: events.of("stopping") == [["g1"]], "the worker to say it is stopping")
    assert thread.is_alive()  # waiting for the step in flight
    gates.opened.set()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()
    stopped = memory.status("g1")
    assert [(s.name, s.status) for s in stopped.steps] == [("first", "completed")]
    # The next step never started; the stop is journaled, so it is queued, not interrupted.
    assert (stopped.status, stopped.interrupted) == ("queued", False)
    assert stopped.state.stopped is not None
    assert type(memory.history("g1")[-1]).__name__ == "Stopped"
    assert memory.status("later").status == "queued"
    assert events.of("finished") == [("g1", "queued")]
    assert replay_instance(memory, "g1").compatible  # wf replay reads the stop as it reads a crash
    rerun = memory.execute("g1")  # and any later run carries on from the step it reached
    assert rerun.status == "complete"
    assert rerun.state.stopped is None


def test_a_failing_instance_is_reported_once_and_not_retried(memory: WorkflowClient) -> None:
    for instance_id in ("i1", "i2", "i3"):
        create(memory, "quick", instance_id)
    codeless = WorkflowClient(memory.store, {}, clock=memory.clock)  # cannot run any of them
    worker, events = worker_of(codeless)
    thread = in_background(worker)
    wait_until(lambda: len(events.of("failed")) == 3, "every instance to fail")
    scans_pass(10)
    finish(worker, thread)
    assert events.of("failed") == [(i, "UnknownWorkflowError") for i in ("i1", "i2", "i3")]
    assert events.of("started") == ["i1", "i2", "i3"]
    assert statuses(memory) == {"i1": "queued", "i2": "queued", "i3": "queued"}


def test_the_failed_ones_do_not_keep_the_newer_ones_from_running(memory: WorkflowClient) -> None:
    create(memory, "gated", "old")
    create(memory, "quick", "new")
    knows_quick_only = WorkflowClient(memory.store, {"quick": Quick}, clock=memory.clock)
    worker, events = worker_of(knows_quick_only, concurrency=1)
    thread = in_background(worker)
    wait_until(lambda: events.of("finished") == [("new", "complete")], "new to run")
    create(memory, "quick", "newest")
    wait_until(lambda: len(events.of("finished")) == 2, "newest to run")
    finish(worker, thread)
    assert events.of("failed") == [("old", "UnknownWorkflowError")]
    assert memory.status("old").holder is None  # its claims were given back


def test_a_damaged_journal_is_reported_once_and_the_rest_run(tmp_path: Path) -> None:
    effects = Effects(tmp_path / "effects")
    effects.folder.mkdir()
    client = make_client(tmp_path / "store", clock=FakeClock())
    params = {"dir": str(effects.folder), "n": 1}
    client.create("pipeline", params=params, instance_id="broken")
    client.execute("broken")
    journal = tmp_path / "store" / "journals" / "broken.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"v":1,"type":"run_started",garbage\n'
    journal.write_bytes(b"".join(lines))
    worker, events = worker_of(client)
    thread = in_background(worker)
    wait_until(lambda: len(events.of("skipped")) == 1, "the damage to be reported")
    client.create("pipeline", params=params, instance_id="healthy")
    wait_until(lambda: events.of("finished") == [("healthy", "complete")], "healthy to run")
    scans_pass(10)
    finish(worker, thread)
    (problem,) = events.of("skipped")
    assert str(problem).startswith(f"{journal}:2: corrupt journal")
    assert events.of("failed") == []


class WakingStore(MemoryStore):
    """A memory store with the optional ``wait_for_work`` hook, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.work = threading.Event()

    def wait_for_work(self, timeout: float) -> bool:
        self.waits.append(timeout)
        woken = self.work.wait(timeout)
        self.work.clear()
        return woken


def test_an_idle_worker_waits_with_the_stores_hook_instead_of_sleeping() -> None:
    store = WakingStore()
    client = WorkflowClient(store, WORKFLOWS, clock=FakeClock())
    worker = Worker(client, poll_interval=timedelta(minutes=10))
    thread = in_background(worker)
    wait_until(lambda: store.waits == [600.0], "the worker to wait for work")
    client.create("quick", instance_id="q1")
    store.work.set()  # what a notification from another process does
    wait_until(lambda: client.status("q1").status == "complete", "q1 to run")
    worker.stop()
    store.work.set()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()


def test_concurrency_below_one_is_refused(memory: WorkflowClient) -> None:
    with pytest.raises(WorkflowInputError, match="concurrency: must be at least 1, got 0"):
        Worker(memory, concurrency=0)


def test_the_started_hook_observes_the_steps(memory: WorkflowClient) -> None:
    steps: list[str] = []

    class StepLog(NullObserver):
        def __init__(self, instance_id: str) -> None:
            self.instance_id = instance_id

        def step_started(self, name: str, kind: StepKind, attempt: int) -> None:
            steps.append(f"{self.instance_id}: {name} {attempt}")

    class Steps(NullWorkerEvents):
        def started(self, instance_id: str) -> RunObserver:
            return StepLog(instance_id)

    create(memory, "quick", "q1")
    Worker(memory, once=True, events=Steps()).run()
    assert steps == ["q1: only 1"]


class FlakyStore(MemoryStore):
    """A memory store whose first ``failures`` scans fail (a database restarting)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def claim_due(self, *args: Any, **options: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise StoreFaultError("query", "db", "the database system is starting up")
        return super().claim_due(*args, **options)


def test_a_worker_outlives_a_store_that_cannot_be_scanned_and_reports_it_once() -> None:
    client = WorkflowClient(FlakyStore(3), WORKFLOWS, clock=FakeClock())
    client.create("quick", instance_id="q1")
    events = Recorder()
    worker = Worker(client, poll_interval=timedelta(milliseconds=10), events=events)
    thread = in_background(worker)
    wait_until(lambda: client.status("q1").status == "complete", "q1 to run after the failures")
    worker.stop()
    thread.join(PATIENCE_SECONDS)
    assert events.of("skipped") == ["store failed: query db: the database system is starting up"]


def test_a_worker_once_raises_when_the_store_cannot_be_scanned() -> None:
    client = WorkflowClient(FlakyStore(1), WORKFLOWS, clock=FakeClock())
    with pytest.raises(StoreFaultError):
        Worker(client, once=True).run()
