"""``wfcli.replay``: current code against recorded journals, served from the record only."""

from __future__ import annotations

import gc
import json
import threading
import types
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wfcli import (
    FakeClock,
    FileStore,
    NonRetryableError,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.client.replay import replay_instance, replay_many
from wfcli.core.codec import (
    AttemptStarted,
    Created,
    Errored,
    ErrorInfo,
    Finished,
    InboxMessage,
    Record,
    RunStarted,
    StepCompleted,
    Suspended,
    WaitStarted,
    Warned,
)
from wfcli.core.settings import Settings
from wfcli.core.state import InstanceState, fold
from wfcli.engine.callbacks import CallbackRunner
from wfcli.engine.history import HistoryMatcher
from wfcli.engine.replay import (
    Finding,
    ReplayReport,
    ReplaySummary,
    ReplayWriteError,
    _ReplaySource,
)
from wfcli.engine.signals import RunSignal
from wfcli.errors import InstanceNotFoundError
from wfcli.store.contract import JournalStore, Lease, Owner

WORKFLOW = "flow"


def scripted(*plan: str, calls: list[str] | None = None) -> type[WorkflowEntrypoint]:
    """A workflow that runs ``plan`` in order and returns what its steps returned.

    Items: ``do:NAME``, ``sleep:NAME`` (1 hour), ``event:NAME`` (waits for an event
    of type NAME), ``parallel:A,B``, ``fail:NAME`` (a step failing for good) and
    ``raise:MESSAGE`` (``run`` raises ValueError). Callbacks append their step
    name to ``calls``.
    """
    sink = calls if calls is not None else []

    def effect(name: str) -> Callable[[], str]:
        def callback() -> str:
            sink.append(name)
            return name.upper()

        return callback

    def failure(name: str) -> Callable[[], str]:
        def callback() -> str:
            sink.append(name)
            raise NonRetryableError(f"{name} cannot succeed")

        return callback

    class Scripted(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            results: list[Any] = []
            for item in plan:
                kind, _, name = item.partition(":")
                if kind == "do":
                    results.append(step.do(name, effect(name)))
                elif kind == "sleep":
                    step.sleep(name, "1 hour")
                elif kind == "event":
                    results.append(step.wait_for_event(name, type=name, timeout="1 day").payload)
                elif kind == "parallel":
                    branches = {branch: effect(branch) for branch in name.split(",")}
                    results.extend(step.parallel(branches))
                elif kind == "fail":
                    step.do(name, failure(name))
                elif kind == "raise":
                    raise ValueError(name)
                else:
                    raise AssertionError(f"bad plan item {item!r}")
            return results

    return Scripted


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store", durable=False)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def client_for(
    store: FileStore, clock: FakeClock, workflow: type[WorkflowEntrypoint]
) -> WorkflowClient:
    return WorkflowClient(store, {WORKFLOW: workflow}, clock=clock)


def record(
    store: FileStore,
    clock: FakeClock,
    workflow: type[WorkflowEntrypoint],
    instance_id: str = "i1",
) -> WorkflowClient:
    """Create and execute an instance with ``workflow`` until it ends or waits."""
    client = client_for(store, clock, workflow)
    client.create(WORKFLOW, instance_id=instance_id)
    client.execute(instance_id, max_inline_wait=timedelta(0))
    return client


def replay(
    store: FileStore, clock: FakeClock, workflow: type[WorkflowEntrypoint], instance_id: str = "i1"
) -> ReplayReport:
    return replay_instance(client_for(store, clock, workflow), instance_id)


def only_divergence(report: ReplayReport) -> Finding:
    assert not report.compatible
    assert len(report.divergences) == 1, report.findings
    return report.divergences[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


# --- compatible histories -----------------------------------------------------------------


def test_unchanged_code_replays_clean_over_many_journals(
    store: FileStore, fake_clock: FakeClock
) -> None:
    plans: dict[str, tuple[str, ...]] = {
        "straight": ("do:a", "do:b", "do:c"),
        "sleeper": ("do:a", "sleep:nap", "do:b"),
        "waiter": ("do:a", "event:approve", "do:b"),
        "fan": ("do:a", "parallel:x,y,z", "do:b"),
        "failing": ("do:a", "fail:b", "do:c"),
        "raising": ("do:a", "raise:broken"),
    }
    expected_status = {}
    for round_number in range(5):
        for label, plan in plans.items():
            instance_id = f"{label}-{round_number}"
            client = WorkflowClient(store, {label: scripted(*plan)}, clock=fake_clock)
            client.create(label, instance_id=instance_id)
            status = client.execute(instance_id, max_inline_wait=timedelta(0))
            if round_number % 2 and status.status == "waiting":  # half of them go on
                if label == "waiter":
                    client.send_event(instance_id, "approve", {"ok": True})
                fake_clock.advance(timedelta(hours=2))
                status = client.execute(instance_id, max_inline_wait=timedelta(0))
            expected_status[instance_id] = status.status
    current = WorkflowClient(store, {label: scripted(*plan) for label, plan in plans.items()})

    reports = replay_many(current)

    assert {report.instance_id: report.status for report in reports} == expected_status
    assert set(expected_status.values()) == {"complete", "waiting", "errored"}
    assert all(report.compatible and not report.findings for report in reports)
    assert ReplaySummary.of(reports) == ReplaySummary(30, 30, 0, 0)
    outcomes = {report.instance_id: report.outcome for report in reports}
    assert outcomes["straight-0"] == "returned"
    assert outcomes["sleeper-0"] == "end_of_history"
    assert outcomes["failing-0"] == outcomes["raising-0"] == "raised"


def test_replay_never_calls_a_callback_and_writes_nothing(
    store: FileStore, fake_clock: FakeClock
) -> None:
    calls: list[str] = []
    workflow = scripted("do:a", "parallel:x,y", "sleep:nap", "do:b", calls=calls)
    for instance_id in ("done", "asleep", "held"):
        record(store, fake_clock, workflow, instance_id)
    fake_clock.advance(timedelta(hours=2))
    client_for(store, fake_clock, workflow).execute("done")
    # A pending inbox message and a lock held by someone else during the replay.
    message = InboxMessage(
        message_id=uuid.uuid4().hex, action="event", sent_at=fake_clock.now(), event_type="t"
    )
    store.post("asleep", message)
    lease = store.acquire("held", Owner(worker_id="w-4242", pid=4242, host="elsewhere"))
    calls.clear()
    before = snapshot(store.root)

    try:
        reports = replay_many(client_for(store, fake_clock, workflow))
    finally:
        after = snapshot(store.root)
        lease.release()

    assert calls == []
    assert after == before
    assert "inbox/asleep" in "".join(before)
    assert json.loads(before["locks/held.lock"]) == {
        "worker": "w-4242",
        "pid": 4242,
        "host": "elsewhere",
    }
    assert [report.compatible for report in reports] == [True, True, True]


def test_a_workflow_writing_through_its_bindings_is_refused(
    store: FileStore, fake_clock: FakeClock
) -> None:
    class Spawner(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            step.do("a", lambda: 1)
            child = self.env.FLOW.create(params={"n": 1})  # outside a step, against advice
            return child.id is not None

    client = WorkflowClient(store, {WORKFLOW: Spawner}, bindings={"FLOW": WORKFLOW})
    client.create(WORKFLOW, instance_id="parent")
    first = client.execute("parent")  # refused live too, on the first run already
    assert first.status == "errored"
    assert first.error is not None
    assert "inside a step.do callback" in first.error.message
    before = snapshot(store.root)

    report = replay_instance(client, "parent")

    assert snapshot(store.root) == before
    finding = only_divergence(report)
    assert finding.kind == "changed_outcome"
    assert "inside a step.do callback" in finding.expected
    assert "ReplayWriteError: replay writes nothing: refused to create instance" in finding.found


def test_parallel_branches_match_in_any_recorded_order(
    store: FileStore, fake_clock: FakeClock
) -> None:
    class Sequential(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
            for name in "azxyb":
                step.do(name, lambda: 1)

    class Parallel(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
            step.do("a", lambda: 1)
            step.parallel({name: lambda: 1 for name in "xyz"})
            step.do("b", lambda: 1)

    record(store, fake_clock, Sequential)

    report = replay(store, fake_clock, Parallel)

    assert report.compatible
    assert report.outcome == "returned"
    assert report.steps_replayed == report.history_steps == 5


def test_failed_steps_and_errors_replay_identically(
    store: FileStore, fake_clock: FakeClock
) -> None:
    calls: list[str] = []
    workflow = scripted("do:a", "fail:b", calls=calls)
    assert record(store, fake_clock, workflow).status("i1").status == "errored"
    calls.clear()

    report = replay(store, fake_clock, workflow)

    assert report.compatible
    assert report.outcome == "raised"
    assert calls == []


@pytest.mark.parametrize("control", ["none", "pause", "terminate"])
def test_end_of_an_unfinished_history_is_not_a_divergence(
    store: FileStore, fake_clock: FakeClock, control: str
) -> None:
    client = record(store, fake_clock, scripted("do:a", "sleep:nap", "do:b"))
    if control != "none":
        getattr(client, control)("i1")

    report = replay(store, fake_clock, scripted("do:a", "sleep:nap", "do:new", "do:b"))

    assert (
        report.status == {"none": "waiting", "pause": "paused", "terminate": "terminated"}[control]
    )
    assert report.compatible
    assert report.outcome == "end_of_history"
    assert (report.steps_replayed, report.history_steps) == (2, 2)


def test_an_interrupted_step_is_the_end_of_history(store: FileStore, fake_clock: FakeClock) -> None:
    client = record(store, fake_clock, scripted("do:a"), "crashed")
    client.restart("crashed", from_step=None)
    with store.acquire("crashed", Owner.current()) as lease:  # a crash mid-attempt
        owner = lease.owner
        lease.append(
            [
                RunStarted(at=fake_clock.now(), pid=owner.pid, host=owner.host),
                AttemptStarted(at=fake_clock.now(), step="a", attempt=1),
            ]
        )

    report = replay(store, fake_clock, scripted("do:a", "do:b"), "crashed")

    assert report.status == "running"
    assert report.compatible
    assert report.outcome == "end_of_history"


def test_restart_keeps_only_the_steps_before_the_restart_point(
    store: FileStore, fake_clock: FakeClock
) -> None:
    client = record(store, fake_clock, scripted("do:a", "do:b", "do:c"))
    client.restart("i1", from_step="b")

    report = replay(store, fake_clock, scripted("do:a", "do:renamed"))

    assert report.status == "queued"
    assert report.compatible
    assert report.history_steps == 1


def test_a_duplicate_that_history_has_too_is_a_warning(
    store: FileStore, fake_clock: FakeClock
) -> None:
    workflow = scripted("do:a", "do:a", "do:b")
    record(store, fake_clock, workflow)

    report = replay(store, fake_clock, workflow)

    assert report.compatible
    (warning,) = report.warnings
    assert (warning.kind, warning.step, warning.position) == ("duplicate_step", "a", 2)
    assert warning.to_json()["severity"] == "warning"


# --- divergences -------------------------------------------------------------------------

ABC = ("do:a", "do:b", "do:c")


@pytest.mark.parametrize(
    ("current", "kind", "step", "position", "expected", "found"),
    [
        pytest.param(
            ("do:a", "do:x", "do:b", "do:c"), "new_step", "x", 2, "'b' (do)", "'x' (do)",
            id="inserted",
        ),
        pytest.param(
            ("do:a", "do:b2", "do:c"), "new_step", "b2", 2, "'b' (do)", "'b2' (do)",
            id="renamed",
        ),
        pytest.param(
            ("do:a", "do:c"), "out_of_order", "c", 2, "'b' (do)",
            "'c' (do), recorded at position 3", id="removed",
        ),
        pytest.param(
            ("do:a", "do:c", "do:b"), "out_of_order", "c", 2, "'b' (do)",
            "'c' (do), recorded at position 3", id="reordered",
        ),
        pytest.param(
            ("do:a", "sleep:b", "do:c"), "changed_kind", "b", 2, "'b' as a do step",
            "'b' as a sleep step", id="kind-changed",
        ),
        pytest.param(
            ("do:a", "do:a", "do:c"), "duplicate_step", "a", 2, "'b' (do)",
            "'a' called again, returning the result of its first call at position 1",
            id="duplicate",
        ),
        pytest.param(
            ("do:a", "do:b", "do:c", "do:d"), "new_step", "d", 4,
            "the end of the run (the instance is complete)", "'d' (do)", id="appended",
        ),
    ],
)  # fmt: skip
def test_each_kind_of_divergence_names_step_and_position(  # noqa: PLR0917 (parametrized)
    store: FileStore,
    fake_clock: FakeClock,
    current: tuple[str, ...],
    kind: str,
    step: str,
    position: int,
    expected: str,
    found: str,
) -> None:
    calls: list[str] = []
    record(store, fake_clock, scripted(*ABC))

    report = replay(store, fake_clock, scripted(*current, calls=calls))

    finding = only_divergence(report)
    assert report.outcome == "divergence"
    assert (finding.kind, finding.step, finding.position) == (kind, step, position)
    assert (finding.expected, finding.found) == (expected, found)
    assert finding.message.startswith("instance 'i1': ")
    assert f"at position {position}" in finding.message
    assert calls == []


def test_recorded_steps_the_code_no_longer_reaches(store: FileStore, fake_clock: FakeClock) -> None:
    record(store, fake_clock, scripted(*ABC))

    report = replay(store, fake_clock, scripted("do:a"))

    assert report.outcome == "returned"
    assert [(f.kind, f.step, f.position) for f in report.divergences] == [
        ("unreached_step", "b", 2),
        ("unreached_step", "c", 3),
    ]
    assert report.divergences[0].found == "the run returned"


def test_code_that_now_raises_before_history_ends(store: FileStore, fake_clock: FakeClock) -> None:
    record(store, fake_clock, scripted("do:a", "sleep:nap", "do:b"))

    report = replay(store, fake_clock, scripted("do:a", "raise:new bug"))

    finding = only_divergence(report)
    assert (finding.kind, finding.step, finding.position) == ("unreached_step", "nap", 2)
    assert finding.found == "the run raised ValueError: new bug"


def test_a_new_step_before_the_recorded_wait_diverges(
    store: FileStore, fake_clock: FakeClock
) -> None:
    record(store, fake_clock, scripted("do:a", "sleep:nap", "do:b"))

    report = replay(store, fake_clock, scripted("do:a", "do:new", "sleep:nap"))

    finding = only_divergence(report)
    assert (finding.kind, finding.step, finding.position) == ("new_step", "new", 2)
    assert finding.expected == "'nap' (sleep)"


def test_a_finished_run_with_another_outcome(store: FileStore, fake_clock: FakeClock) -> None:
    record(store, fake_clock, scripted(*ABC), "complete")
    record(store, fake_clock, scripted("do:a", "raise:old bug"), "errored")

    raises = replay(store, fake_clock, scripted(*ABC, "raise:new bug"), "complete")
    other_output = replay(store, fake_clock, scripted("do:a", "do:c", "do:b"), "complete")
    fixed = replay(store, fake_clock, scripted("do:a"), "errored")
    other_error = replay(store, fake_clock, scripted("do:a", "raise:another bug"), "errored")

    expected_output = 'output ["A", "B", "C"]'
    assert [(f.kind, f.expected, f.found) for f in raises.findings] == [
        ("changed_outcome", expected_output, "error ValueError: new bug")
    ]
    assert only_divergence(other_output).kind == "out_of_order"
    assert [(f.expected, f.found) for f in fixed.findings] == [
        ("error ValueError: old bug", 'output ["A"]')
    ]
    assert [(f.expected, f.found) for f in other_error.findings] == [
        ("error ValueError: old bug", "error ValueError: another bug")
    ]


def test_same_steps_with_a_different_output(store: FileStore, fake_clock: FakeClock) -> None:
    class Doubled(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return [step.do(name, lambda: 0) * 2 for name in ("a", "b", "c")]

    record(store, fake_clock, scripted(*ABC))

    finding = only_divergence(replay(store, fake_clock, Doubled))

    assert (finding.kind, finding.step, finding.position) == ("changed_outcome", None, None)
    assert finding.found == 'output ["AA", "BB", "CC"]'


def test_a_workflow_no_longer_configured(store: FileStore, fake_clock: FakeClock) -> None:
    record(store, fake_clock, scripted(*ABC))

    report = replay_instance(WorkflowClient(store, {"other": scripted(*ABC)}), "i1")

    finding = only_divergence(report)
    assert finding.kind == "unknown_workflow"
    assert finding.found == "no such workflow (known: other)"


# --- replay_many and the command's body ----------------------------------------------------


def test_replay_many_filters_by_workflow_and_status(
    store: FileStore, fake_clock: FakeClock
) -> None:
    sleeper = scripted("do:a", "sleep:nap")
    client = WorkflowClient(store, {"one": sleeper, "two": sleeper}, clock=fake_clock)
    for instance_id, workflow in (("w1", "one"), ("w2", "two")):
        client.create(workflow, instance_id=instance_id)
        client.execute(instance_id, max_inline_wait=timedelta(0))
    client.create("one", instance_id="q1")

    waiting_one = replay_many(client, workflow="one", statuses=["waiting"])
    chosen = replay_many(client, ["w2", "q1"])

    assert [report.instance_id for report in waiting_one] == ["w1"]
    assert [report.instance_id for report in chosen] == ["w2", "q1"]
    with pytest.raises(InstanceNotFoundError):
        replay_many(client, ["missing"])


# --- replay cannot write, by construction ---------------------------------------------------


class WritesRefused(FileStore):
    """A store whose every write (journal, lock, inbox, cache) fails the test."""

    def create(self, record: Created) -> None:
        raise AssertionError(f"replay created {record.instance_id!r}")

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        raise AssertionError(f"replay locked {instance_id!r}")

    def post(self, instance_id: str, message: InboxMessage) -> None:
        raise AssertionError(f"replay posted to {instance_id!r}")

    def save_cache(self, name: str, data: bytes) -> None:
        raise AssertionError(f"replay saved the cache {name!r}")


def test_every_kind_of_history_replays_against_a_store_that_refuses_writes(
    store: FileStore, fake_clock: FakeClock
) -> None:
    plans: dict[str, tuple[str, ...]] = {
        "straight": ("do:a", "do:b"),
        "sleeper": ("do:a", "sleep:nap", "do:b"),
        "waiter": ("do:a", "event:approve", "do:b"),
        "fan": ("do:a", "parallel:x,y,z", "do:b"),
        "failing": ("do:a", "fail:b"),
        "raising": ("do:a", "raise:broken"),
        "twice": ("do:a", "do:a", "do:b"),
    }
    recorder = WorkflowClient(
        store, {label: scripted(*plan) for label, plan in plans.items()}, clock=fake_clock
    )
    for label in plans:
        for suffix in ("early", "late"):
            recorder.create(label, instance_id=f"{label}-{suffix}")
            recorder.execute(f"{label}-{suffix}", max_inline_wait=timedelta(0))
    recorder.send_event("waiter-late", "approve", {"ok": True})
    fake_clock.advance(timedelta(hours=2))
    for label in plans:
        recorder.execute(f"{label}-late", max_inline_wait=timedelta(0))
    recorder.pause("sleeper-early")
    recorder.create("straight", instance_id="queued")
    before = snapshot(store.root)
    # The current code: some fit their histories, some diverge.
    current = {**plans, "straight": ("do:a", "do:new", "do:b"), "fan": ("do:a", "do:x", "do:b")}

    def replay_all(journals: FileStore) -> list[dict[str, Any]]:
        workflows = {label: scripted(*plan) for label, plan in current.items()}
        return [r.to_json() for r in replay_many(WorkflowClient(journals, workflows))]

    refused = replay_all(WritesRefused(store.root, durable=False))

    assert refused == replay_all(store)
    assert snapshot(store.root) == before
    by_id = {report["id"]: report for report in refused}
    assert len(by_id) == 15
    assert {report["outcome"] for report in refused} == {
        "returned",
        "raised",
        "end_of_history",
        "divergence",
    }
    assert not by_id["straight-late"]["compatible"]
    assert by_id["twice-late"]["compatible"]
    assert by_id["sleeper-early"]["status"] == "paused"


def reachable(root: object) -> list[object]:
    """Every object reachable from ``root`` through instances and containers
    (classes, modules and functions are not followed: they reach everything)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (type, types.ModuleType, types.FunctionType)):
            continue
        seen[id(item)] = item
        stack.extend(gc.get_referents(item))
    return list(seen.values())


def test_the_replay_source_holds_nothing_that_reaches_a_store(
    store: FileStore, fake_clock: FakeClock
) -> None:
    record(store, fake_clock, scripted("do:a", "parallel:x,y", "sleep:nap"))
    source = _ReplaySource(fold(store.read("i1")), Settings())
    step = WorkflowStep(source)

    assert step.do("a", lambda: "never called") == "A"
    assert step.parallel({"x": lambda: 0, "y": lambda: 0}) == ["X", "Y"]
    with pytest.raises(RunSignal):  # the sleep is in flight: history ends there
        step.sleep("nap", "1 hour")

    assert source.halted == "end_of_history"
    assert source.matcher.matched == 4
    forbidden = (JournalStore, Lease, CallbackRunner, WorkflowClient, threading.Thread)
    assert any(isinstance(item, forbidden) for item in reachable(WorkflowClient(store, {})))
    assert [type(item) for item in reachable(source) if isinstance(item, forbidden)] == []
    assert [type(item) for item in reachable(step) if isinstance(item, forbidden)] == []


def test_bindings_refuse_every_write_and_still_read(store: FileStore) -> None:
    refusals: list[str] = []

    class Meddler(WorkflowEntrypoint):
        replaying = False

        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            first = step.do("a", lambda: 1)
            if not self.replaying:
                return first
            flow = self.env.FLOW
            other = flow.get("other")
            attempts: list[Callable[[], object]] = [
                lambda: flow.create(params={"n": 1}, id="child"),
                lambda: flow.create_batch([{"id": "batch-1"}]),
                other.pause,
                other.resume,
                other.terminate,
                other.restart,
                lambda: other.send_event("go", {"n": 1}),
                other.execute,
            ]
            for attempt in attempts:
                with pytest.raises(ReplayWriteError) as refused:
                    attempt()
                refusals.append(str(refused.value))
            assert flow.create_batch([]) == []
            assert other.status().status == "queued"
            return first

    client = WorkflowClient(store, {WORKFLOW: Meddler}, bindings={"FLOW": WORKFLOW})
    client.create(WORKFLOW, instance_id="parent")
    client.create(WORKFLOW, instance_id="other")
    assert client.execute("parent").status == "complete"
    before = snapshot(store.root)
    Meddler.replaying = True

    report = replay_instance(client, "parent")

    assert snapshot(store.root) == before
    assert report.compatible, report.findings
    prefix = "replay writes nothing: refused to "
    assert refusals == [
        prefix + "create instance 'child'",
        prefix + "create instance 'batch-1'",
        *(
            prefix + f"post a {action!r} message to instance 'other'"
            for action in ("pause", "resume", "terminate", "restart", "event")
        ),
        prefix + "append to the journal of instance 'other'",
    ]


# --- the history matcher: findings as a pure function of history and calls -----------------

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def history(*steps: str, ending: str = "suspended", warned: tuple[str, ...] = ()) -> InstanceState:
    """A folded journal, built in memory: ``KIND:NAME`` steps, all settled, then ``ending``
    (``suspended``, ``finished`` with output ``"out"``, or ``errored``)."""
    records: list[Record] = [
        Created(at=T0, instance_id="h", workflow=WORKFLOW, params=None),
        RunStarted(at=T0, pid=1, host="here"),
    ]
    for item in steps:
        kind, _, name = item.partition(":")
        if kind == "do":
            records.append(AttemptStarted(at=T0, step=name, attempt=1))
        else:
            records.append(WaitStarted(at=T0, step=name, kind="sleep", until=T0, event_type=None))
        records.append(StepCompleted(at=T0, step=name, kind=kind, attempt=1, output=name))
    records += [Warned(at=T0, step=name, message="duplicate") for name in warned]
    if ending == "finished":
        records.append(Finished(at=T0, output="out"))
    elif ending == "errored":
        records.append(Errored(at=T0, error=ErrorInfo("ValueError", "old")))
    else:
        records.append(Suspended(at=T0, wait="sleep", step="later", until=T0, event_type=None))
    return fold(records)


def play(matcher: HistoryMatcher, *groups: str) -> list[str]:
    """Feed ``groups`` (``KIND:A,B`` calls) to ``matcher``; the verdict on each."""
    counts: dict[str, int] = {}
    verdicts: list[str] = []
    for group in groups:
        kind, _, names = group.partition(":")
        for name in names.split(","):
            counts[name] = counts.get(name, 0) + 1
            if not matcher.called(name, kind, counts[name]):  # type: ignore[arg-type]
                return [*verdicts, "divergence"]
        verdicts.append(matcher.match())
        if verdicts[-1] != "recorded":
            break
    return verdicts


@pytest.mark.parametrize(
    ("steps", "ending", "calls", "verdicts", "found"),
    [
        (("do:a", "do:b"), "suspended", ("do:a", "do:b", "do:c"),
         ["recorded", "recorded", "end_of_history"], []),
        (("do:a", "do:x", "do:y"), "suspended", ("do:a", "do:y,x"), ["recorded"] * 2, []),
        (("do:a", "do:b"), "suspended", ("do:a", "do:new"), ["recorded", "divergence"],
         [("new_step", "new", 2, "'b' (do)")]),
        (("do:a", "do:b"), "suspended", ("do:b",), ["divergence"],
         [("out_of_order", "b", 1, "'a' (do)")]),
        (("do:a", "sleep:b"), "suspended", ("do:a", "do:b"), ["recorded", "divergence"],
         [("changed_kind", "b", 2, "'b' as a sleep step")]),
        (("do:a",), "finished", ("do:a", "do:more"), ["recorded", "divergence"],
         [("new_step", "more", 2, "the end of the run (the instance is complete)")]),
        (("do:a", "do:b"), "suspended", ("do:a", "do:a"), ["recorded", "divergence"],
         [("duplicate_step", "a", 2, "'b' (do)")]),
        (("do:a",), "suspended", ("do:a", "do:a", "do:b"),
         ["recorded", "recorded", "end_of_history"], [("duplicate_step", "a", 2, None)]),
    ],
)  # fmt: skip
def test_matcher_verdicts_and_findings(
    steps: tuple[str, ...],
    ending: str,
    calls: tuple[str, ...],
    verdicts: list[str],
    found: list[tuple[str, str, int, str | None]],
) -> None:
    state = history(*steps, ending=ending)
    journaled = state.record_count
    matchers = [HistoryMatcher(state), HistoryMatcher(state)]

    assert [play(matcher, *calls) for matcher in matchers] == [verdicts, verdicts]
    first, second = (matcher.findings for matcher in matchers)
    assert first == second  # the same history and calls, the same findings
    assert [(f.kind, f.step, f.position, None if f.warning else f.expected) for f in first] == found
    assert state.record_count == journaled


def test_matcher_at_the_end_of_the_run() -> None:
    duplicate = HistoryMatcher(history("do:a", "do:a", ending="finished", warned=("a",)))
    assert play(duplicate, "do:a", "do:a") == ["recorded", "recorded"]
    duplicate.finish("out", None)
    assert [(f.kind, f.warning) for f in duplicate.findings] == [("duplicate_step", True)]

    short = HistoryMatcher(history("do:a", "sleep:b", "do:c", ending="errored"))
    assert play(short, "do:a") == ["recorded"]
    short.finish(None, ErrorInfo("ValueError", "new"))
    assert [(f.kind, f.step, f.position, f.found) for f in short.findings] == [
        ("unreached_step", "b", 2, "the run raised ValueError: new"),
        ("unreached_step", "c", 3, "the run raised ValueError: new"),
    ]

    changed = HistoryMatcher(history("do:a", ending="errored"))
    assert play(changed, "do:a") == ["recorded"]
    changed.finish(["fixed"], None)
    assert [(f.kind, f.expected, f.found) for f in changed.findings] == [
        ("changed_outcome", "error ValueError: old", 'output ["fixed"]')
    ]
