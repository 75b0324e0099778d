"""Code changed under instances in flight: divergence stops a run, patches branch, versions.

Each divergence kind, met while executing, pauses the instance before anything new
runs (the journal gains only the run's ``run_started`` and the ``diverged`` record);
``wf resume``'s path (resume, then execute) tries again. ``step.patched`` answers once
per instance and journals the answer; ``wf replay`` honours and reports it.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_replay import scripted
from wfcli import FakeClock, FileStore, WorkflowClient, WorkflowEntrypoint, WorkflowEvent
from wfcli import WorkflowStep as Step
from wfcli.client.replay import replay_instance, replay_many
from wfcli.core.codec import (
    Created,
    Diverged,
    PatchMarked,
    Record,
    Resumed,
    RunStarted,
    decode_record,
    encode_record,
)
from wfcli.core.state import fold
from wfcli.engine.replay import ReplaySummary

FLOW = "flow"
# Waits at "nap" (1 hour) after a and b; c comes after the nap.
OLD = ("do:a", "do:b", "sleep:nap", "do:c")


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store", durable=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client(
    store: FileStore, clock: FakeClock, workflow: type[WorkflowEntrypoint], **options: Any
) -> WorkflowClient:
    return WorkflowClient(store, {FLOW: workflow}, clock=clock, **options)


def start(
    store: FileStore, clock: FakeClock, workflow: type[WorkflowEntrypoint], instance_id: str = "i1"
) -> WorkflowClient:
    """Create an instance and run it until it waits (or ends)."""
    made = client(store, clock, workflow)
    made.create(FLOW, instance_id=instance_id)
    made.execute(instance_id, max_inline_wait=timedelta(0))
    return made


def resume(current: WorkflowClient, instance_id: str = "i1") -> Any:
    """What ``wf resume`` does: lift a pause, then execute."""
    current.resume(instance_id)
    return current.execute(instance_id, max_inline_wait=timedelta(0))


def added(store: FileStore, before: list[Record], instance_id: str = "i1") -> list[Record]:
    after = store.read(instance_id)
    assert after[: len(before)] == before
    return after[len(before) :]


# --- divergence stops execution ------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "kind", "step", "position", "expected", "found"),
    [
        pytest.param(
            ("do:a", "do:x", "do:b", "sleep:nap", "do:c"), "new_step", "x", 2, "'b' (do)",
            "'x' (do)", id="inserted",
        ),
        pytest.param(
            ("do:a", "do:b2", "sleep:nap", "do:c"), "new_step", "b2", 2, "'b' (do)", "'b2' (do)",
            id="renamed",
        ),
        pytest.param(
            ("do:a", "sleep:nap", "do:c"), "out_of_order", "nap", 2, "'b' (do)",
            "'nap' (sleep), recorded at position 3", id="removed",
        ),
        pytest.param(
            ("do:b", "do:a", "sleep:nap", "do:c"), "out_of_order", "b", 1, "'a' (do)",
            "'b' (do), recorded at position 2", id="reordered",
        ),
        pytest.param(
            ("do:a", "sleep:b", "sleep:nap", "do:c"), "changed_kind", "b", 2, "'b' as a do step",
            "'b' as a sleep step", id="kind-changed",
        ),
        pytest.param(
            ("do:a", "do:a", "do:b", "sleep:nap", "do:c"), "duplicate_step", "a", 2, "'b' (do)",
            "'a' called again, returning the result of its first call at position 1",
            id="duplicate",
        ),
    ],
)  # fmt: skip
def test_each_divergence_pauses_the_instance_before_anything_new_runs(  # noqa: PLR0917
    store: FileStore,
    clock: FakeClock,
    current: tuple[str, ...],
    kind: str,
    step: str,
    position: int,
    expected: str,
    found: str,
) -> None:
    start(store, clock, scripted(*OLD))
    clock.advance(timedelta(hours=2))  # the nap is over: the instance is due
    before = store.read("i1")
    calls: list[str] = []
    changed = client(store, clock, scripted(*current, calls=calls))

    status = changed.execute("i1", max_inline_wait=timedelta(0))

    assert calls == []
    new = added(store, before)
    assert [type(r) for r in new] == [RunStarted, Diverged]
    diverged = new[1]
    assert isinstance(diverged, Diverged)
    assert (diverged.kind, diverged.step, diverged.position) == (kind, step, position)
    assert (diverged.expected, diverged.found) == (expected, found)
    assert status.status == "paused"
    document = status.to_json()
    assert document["divergence"] == {
        "kind": kind,
        "step": step,
        "position": position,
        "expected": expected,
        "found": found,
        "at": document["divergence"]["at"],  # type: ignore[index]
    }
    # The same check as wf replay's, in one place.
    (finding,) = replay_instance(changed, "i1").divergences
    assert (finding.kind, finding.step, finding.position) == (kind, step, position)

    # With the same code, a resume diverges again and runs nothing.
    again = added(store, store.read("i1"))
    before_again = store.read("i1")
    assert again == []
    assert resume(changed).status == "paused"
    assert [type(r) for r in added(store, before_again)] == [Resumed, RunStarted, Diverged]
    assert calls == []

    # Once the code is fixed, the resume goes on.
    fixed = client(store, clock, scripted(*OLD, calls=calls))
    done = resume(fixed)
    assert (done.status, done.divergence, calls) == ("complete", None, ["c"])
    assert "divergence" not in done.to_json()


def test_a_workflow_that_catches_the_stop_still_ends_nothing(
    store: FileStore, clock: FakeClock
) -> None:
    class Stubborn(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: Step) -> Any:
            step.do("a", lambda: 1)
            with contextlib.suppress(BaseException):  # what the test is about
                step.do("x", lambda: 2)
            with contextlib.suppress(BaseException):
                step.do("y", lambda: 3)
            return "done anyway"

    start(store, clock, scripted(*OLD))
    before = store.read("i1")

    status = client(store, clock, Stubborn).execute("i1", max_inline_wait=timedelta(0))

    assert status.status == "paused"
    assert [type(r) for r in added(store, before)] == [RunStarted, Diverged]


def test_the_end_of_the_history_is_not_a_divergence(store: FileStore, clock: FakeClock) -> None:
    start(store, clock, scripted(*OLD))
    clock.advance(timedelta(hours=2))
    calls: list[str] = []

    status = client(store, clock, scripted(*OLD, "do:d", calls=calls)).execute("i1")

    assert (status.status, calls) == ("complete", ["c", "d"])


# --- event waits ------------------------------------------------------------------------------


def waiter(event_type: str, timeout: str = "1 day") -> type[WorkflowEntrypoint]:
    class Waiter(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: Step) -> Any:
            step.do("a", lambda: 1)
            return step.wait_for_event("approval", type=event_type, timeout=timeout).payload

    return Waiter


def test_a_changed_event_type_of_a_wait_in_flight_diverges(
    store: FileStore, clock: FakeClock
) -> None:
    start(store, clock, waiter("go"))
    changed = client(store, clock, waiter("approve"))

    (finding,) = replay_instance(changed, "i1").findings
    assert (finding.kind, finding.warning, finding.position) == ("changed_event_type", False, 2)
    assert finding.expected == "'approval' waiting for 'go'"
    assert finding.found == "'approval' waiting for 'approve'"

    status = changed.execute("i1", max_inline_wait=timedelta(0))
    assert status.status == "paused"
    assert status.divergence is not None
    assert status.divergence.kind == "changed_event_type"

    # The old code waits again; the header and the step row say the same event type.
    waiting = resume(client(store, clock, waiter("go")))
    assert waiting.status == "waiting"
    document = waiting.to_json()
    assert document["waiting"]["event_type"] == "go"  # type: ignore[index]
    assert document["steps"][1]["event_type"] == "go"  # type: ignore[index]


def test_a_changed_timeout_is_a_warning_and_the_recorded_deadline_stands(
    store: FileStore, clock: FakeClock
) -> None:
    start(store, clock, waiter("go", "1 day"))
    deadline = fold(store.read("i1")).steps["approval"].until
    changed = client(store, clock, waiter("go", "2 days"))

    report = replay_instance(changed, "i1")
    assert report.compatible
    (finding,) = report.warnings
    assert finding.kind == "changed_timeout"
    assert "the recorded deadline stands" in finding.found

    status = changed.execute("i1", max_inline_wait=timedelta(0))
    assert status.status == "waiting"
    assert status.waiting is not None
    assert status.waiting.until == deadline


def test_a_changed_event_type_of_a_finished_wait_only_warns(
    store: FileStore, clock: FakeClock
) -> None:
    first = start(store, clock, waiter("go"))
    first.send_event("i1", "go", {"ok": True})
    assert first.execute("i1").status == "complete"

    report = replay_instance(client(store, clock, waiter("approve")), "i1")

    assert report.compatible
    assert [f.kind for f in report.warnings] == ["changed_event_type"]


# --- patches ------------------------------------------------------------------------------


def patched_flow(
    calls: list[str], *, deprecated: bool = False, removed: bool = False
) -> type[WorkflowEntrypoint]:
    """OLD with a patch at b: the new branch runs b2 instead of b.

    ``deprecated``: only the new branch, behind ``deprecate_patch``; ``removed``: the
    old branch and the patch call are both gone, but the steps are those of the old.
    """

    def effect(name: str) -> Any:
        return lambda: calls.append(name) or name

    class Patched(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: Step) -> Any:
            step.do("a", effect("a"))
            if removed:
                step.do("b", effect("b*"))
            elif deprecated:
                step.deprecate_patch("b2")
                step.do("b2", effect("b2"))
            elif step.patched("b2"):
                step.do("b2", effect("b2"))
            else:
                step.do("b", effect("b"))
            step.sleep("nap", "1 hour")
            step.do("c", effect("c"))
            return "ok"

    return Patched


def patches(store: FileStore, instance_id: str) -> list[PatchMarked]:
    return [r for r in store.read(instance_id) if isinstance(r, PatchMarked)]


def test_a_new_instance_takes_the_new_branch_and_journals_it(
    store: FileStore, clock: FakeClock
) -> None:
    calls: list[str] = []
    current = start(store, clock, patched_flow(calls))

    assert calls == ["a", "b2"]
    (marked,) = patches(store, "i1")
    assert (marked.patch, marked.applied, marked.steps_before) == ("b2", True, 1)
    clock.advance(timedelta(hours=2))
    assert current.execute("i1").status == "complete"
    assert calls == ["a", "b2", "c"]
    assert len(patches(store, "i1")) == 1  # decided once
    assert current.status("i1").to_json()["patches"] == {"b2": True}


def test_an_instance_past_the_patch_point_keeps_its_old_branch(
    store: FileStore, clock: FakeClock
) -> None:
    start(store, clock, scripted(*OLD))
    clock.advance(timedelta(hours=2))
    calls: list[str] = []
    current = client(store, clock, patched_flow(calls))

    report = replay_instance(current, "i1")
    assert report.compatible
    assert report.patches == (("b2", False),)  # what it will decide; replay writes nothing
    assert patches(store, "i1") == []
    status = current.execute("i1")

    assert (status.status, calls) == ("complete", ["c"])
    (marked,) = patches(store, "i1")
    assert (marked.applied, marked.steps_before) == (False, 1)
    assert replay_instance(current, "i1").patches == (("b2", False),)


def test_an_instance_waiting_before_the_patch_point_takes_the_new_branch(
    store: FileStore, clock: FakeClock
) -> None:
    start(store, clock, scripted("do:a", "sleep:nap0", "do:b", "sleep:nap", "do:c"))
    clock.advance(timedelta(hours=2))
    calls: list[str] = []

    class Later(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: Step) -> Any:
            step.do("a", lambda: 1)
            step.sleep("nap0", "1 hour")
            if step.patched("p"):
                calls.append("new")
            step.do("b", lambda: 2)
            return "ok"

    assert client(store, clock, Later).execute("i1").status == "complete"
    assert calls == ["new"]
    assert [(m.applied, m.steps_before) for m in patches(store, "i1")] == [(True, 2)]


def test_the_journaled_answer_never_changes(store: FileStore, clock: FakeClock) -> None:
    start(store, clock, scripted(*OLD))
    calls: list[str] = []
    current = client(store, clock, patched_flow(calls))
    clock.advance(timedelta(minutes=10))  # not due yet: the run decides and waits again
    assert current.execute("i1", max_inline_wait=timedelta(0)).status == "waiting"
    clock.advance(timedelta(hours=2))

    assert current.execute("i1").status == "complete"
    assert calls == ["c"]
    assert [m.applied for m in patches(store, "i1")] == [False]


def test_deprecate_patch_stops_an_instance_on_the_old_branch(
    store: FileStore, clock: FakeClock
) -> None:
    calls: list[str] = []
    start(store, clock, scripted(*OLD))
    clock.advance(timedelta(hours=2))
    client(store, clock, patched_flow(calls)).execute("i1", max_inline_wait=timedelta(0))
    start(store, clock, patched_flow(calls), "i2")  # the new branch
    calls.clear()
    current = client(store, clock, patched_flow(calls, deprecated=True))
    clock.advance(timedelta(hours=2))

    assert current.execute("i2").status == "complete"
    calls.clear()
    restarted = current.restart("i1")  # starts over: its old patch decision is forgotten
    assert restarted.state.patches == {}
    assert resume(current, "i1").status == "waiting"
    assert calls == ["a", "b2"]

    start(store, clock, scripted(*OLD), "i3")
    client(store, clock, patched_flow(calls)).execute("i3", max_inline_wait=timedelta(0))
    calls.clear()
    before = store.read("i3")
    clock.advance(timedelta(hours=2))
    stopped = current.execute("i3")

    assert calls == []
    assert stopped.status == "paused"
    assert stopped.divergence is not None
    assert stopped.divergence.kind == "changed_patch"
    assert "deprecate_patch('b2')" in stopped.divergence.found
    assert [type(r) for r in added(store, before, "i3")] == [RunStarted, Diverged]
    (finding,) = replay_instance(current, "i3").divergences
    assert finding.kind == "changed_patch"


def test_code_that_no_longer_asks_about_an_old_branch_diverges(
    store: FileStore, clock: FakeClock
) -> None:
    calls: list[str] = []
    start(store, clock, scripted(*OLD))
    client(store, clock, patched_flow(calls)).execute("i1", max_inline_wait=timedelta(0))
    clock.advance(timedelta(hours=2))
    removed = client(store, clock, patched_flow(calls, removed=True))

    (finding,) = replay_instance(removed, "i1").divergences
    status = removed.execute("i1")

    assert finding.kind == "changed_patch"
    assert (finding.step, finding.position) == ("b", 2)
    assert "patched('b2')" in finding.expected
    assert status.status == "paused"
    assert calls == []


def test_replay_and_list_name_the_instances_on_the_old_branch(
    store: FileStore, clock: FakeClock
) -> None:
    calls: list[str] = []
    for instance_id in ("old-1", "old-2"):
        start(store, clock, scripted(*OLD), instance_id)
    current = client(store, clock, patched_flow(calls))
    for instance_id in ("old-1", "old-2"):
        current.execute(instance_id, max_inline_wait=timedelta(0))
    start(store, clock, patched_flow(calls), "new-1")
    start(store, clock, scripted(*OLD), "untouched")

    reports = replay_many(current)
    summary = ReplaySummary.of(reports)

    # "untouched" has not met the patch yet, and will take the old branch when it does.
    assert summary.old_branches == (("b2", ("untouched", "old-2", "old-1")),)
    assert summary.to_json()["old_branches"] == {"b2": ["untouched", "old-2", "old-1"]}
    on_old = current.list_instances(old_branch="b2")
    assert [s.id for s in on_old] == ["old-2", "old-1"]
    assert [s.id for s in current.list_instances(old_branch="b2", limit=1)] == ["old-2"]
    listed = {s.id: s.to_json() for s in current.list_instances()}
    assert listed["new-1"]["patches"] == {"b2": True}
    assert "patches" not in listed["untouched"]


# --- versions ------------------------------------------------------------------------------


def test_the_version_is_recorded_at_creation_and_never_gates(
    store: FileStore, clock: FakeClock
) -> None:
    v1 = client(store, clock, scripted(*OLD), versions={FLOW: "2025-06.1"})
    v1.create(FLOW, instance_id="i1")
    v2 = client(store, clock, scripted(*OLD), versions={FLOW: "2025-07.1"})
    v2.create(FLOW, instance_id="i2")
    plain = client(store, clock, scripted(*OLD))
    plain.create(FLOW, instance_id="i3")

    assert v2.execute("i1", max_inline_wait=timedelta(0)).status == "waiting"
    assert v2.status("i1").to_json()["version"] == "2025-06.1"
    assert [s.id for s in plain.list_instances(version="2025-07.1")] == ["i2"]
    assert "version" not in plain.status("i3").to_json()
    created = store.read("i3")[0]
    assert isinstance(created, Created)
    assert '"version"' not in encode_record(created)
    old_line = {
        "v": 1,
        "type": "created",
        "at": "2025-06-02T09:30:00.000000+00:00",
        "instance_id": "o",
        "workflow": FLOW,
        "params": None,
    }
    decoded = decode_record(old_line)
    assert isinstance(decoded, Created)
    assert decoded.version is None
