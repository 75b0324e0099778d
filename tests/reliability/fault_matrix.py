"""The I/O fault-injection matrix: one storage fault at every write and sync of a run.

A scenario drives one instance through everything that writes (a create, steps, a
failed attempt and its inline retry, a suspended sleep, a pause and a resume, an
event, listings that save the index) on a file store whose ``os`` is
:class:`~tests.reliability.faults.FaultyOs`. It is run once undisturbed, counting
each operation's calls; then, for every (operation, call number, errno) and for a
short write at every ``write``, once more with that one fault. The action that
met the fault is tried again with the disk healthy (as a user does after exit 6),
then the scenario goes on and the instance is executed until it completes (as
``wf resume`` or a worker would). After each run:

- the instance completed with the undisturbed run's output (else it is *lost*);
- no attempt of a step ran twice, no callback ran without its attempt journaled
  first, none after its step's result was journaled (else a *double execution*);
  the only calls beyond the undisturbed run's are of an attempt whose outcome the
  fault kept from the journal (in flight at the fault, journaled afterwards as
  lost: ``AttemptLostError``), at most one per fault;
- right after the fault the journal was whole (every line complete and valid),
  the instance not ``errored``, and no lock held.

``python -m tests.reliability.fault_matrix`` prints the figures as JSON.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.reliability.faults import FAULT_ERRNOS, Fault, FaultyOs
from tests.workflows_for_tests import read_journal_strictly
from wfcli import (
    FakeClock,
    FileStore,
    Settings,
    StepContext,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.core.codec import AttemptFailed, AttemptStarted, Errored, StepCompleted
from wfcli.errors import InstanceExistsError, LeaseLostError, StoreFaultError
from wfcli.store.files import store as file_store_module

__all__ = ["Figures", "Outcome", "run_matrix", "run_scenario"]

INSTANCE = "gauntlet"
PARAMS = {"n": 4}
_SETTINGS = Settings(max_inline_wait=timedelta(minutes=1))
_MAX_RESUMES = 10


def make_gauntlet(calls: list[tuple[str, int]]) -> type[WorkflowEntrypoint]:
    """The scenario's workflow; each real callback call is appended to ``calls``."""

    def effect(context: StepContext, value: Any) -> Any:
        calls.append((context.name, context.attempt))
        return value

    class Gauntlet(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            n = event.payload["n"]
            a = step.do("a", lambda c: effect(c, n + 1))

            def flaky(context: StepContext) -> int:
                effect(context, None)
                if context.attempt == 1:
                    raise ConnectionError("refused")
                return a * 10

            retries = {"limit": 3, "delay": "5 seconds", "backoff": "constant"}
            f = step.do("flaky", flaky, retries=retries)  # retried inline
            step.sleep("nap", "1 hour")  # suspends
            approval = step.wait_for_event("approval", type="approve", timeout="1 day")
            b = step.do("b", lambda c: effect(c, f + approval.payload["by"]))
            return {"a": a, "flaky": f, "b": b}

    return Gauntlet


@dataclass
class Outcome:
    """What one run of the scenario did."""

    output: Any = None
    status: str = ""
    calls: list[tuple[str, int]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    """Each watched operation's calls (undisturbed run)."""
    faults_met: int = 0
    """Actions that failed with a store fault."""
    fired: int = 0
    problems: list[str] = field(default_factory=list)
    lost_attempts: int = 0
    double_executions: int = 0


@contextmanager
def _disk(proxy: FaultyOs) -> Iterator[None]:
    real = file_store_module.os
    file_store_module.os = proxy  # type: ignore[assignment]
    try:
        yield
    finally:
        file_store_module.os = real


def run_scenario(root: Path, *faults: Fault) -> Outcome:
    """Run the scenario in a fresh store under ``root`` with ``faults`` armed."""
    outcome = Outcome()
    store = FileStore(root / "store")
    clock = FakeClock()
    client = WorkflowClient(
        store, {"gauntlet": make_gauntlet(outcome.calls)}, clock=clock, settings=_SETTINGS
    )
    journal = root / "store" / "journals" / f"{INSTANCE}.jsonl"

    def create() -> None:
        # InstanceExistsError: the first try linked the journal, then its sync failed.
        with contextlib.suppress(InstanceExistsError):
            client.create("gauntlet", params=PARAMS, instance_id=INSTANCE)

    def later(delta: timedelta, action: Callable[[], object]) -> Callable[[], object]:
        def act() -> object:
            clock.advance(delta)
            return action()

        return act

    actions: list[Callable[[], object]] = [
        create,
        client.list_instances,
        lambda: client.execute(INSTANCE),  # a, flaky (fails, retried inline), nap
        client.list_instances,
        lambda: client.pause(INSTANCE),
        later(timedelta(hours=2), lambda: client.execute(INSTANCE)),  # paused: nothing runs
        lambda: client.resume(INSTANCE),
        lambda: client.execute(INSTANCE),  # nap over; waits for the event
        lambda: client.send_event(INSTANCE, "approve", {"by": 7}),
        lambda: client.execute(INSTANCE),  # b, finished
        client.list_instances,
    ]
    # No machine crash is simulated, so what a sync makes durable is not looked at:
    # the syncs are counted and failed, not made.
    proxy = FaultyOs(list(faults), real_syncs=False)
    with _disk(proxy):
        for action in actions:
            try:
                action()
            except (StoreFaultError, LeaseLostError):
                outcome.faults_met += 1
                _check_after_fault(store, journal, outcome)
                action()  # the fault has cleared: the user tries again
        for _ in range(_MAX_RESUMES):
            status = client.status(INSTANCE)
            if status.status == "complete":
                break
            clock.advance(timedelta(days=2))
            client.execute(INSTANCE)
    outcome.counts = proxy.calls
    outcome.fired = len(proxy.fired)
    final = client.status(INSTANCE)
    outcome.status, outcome.output = final.status, final.output
    if store.pending(INSTANCE):
        outcome.problems.append("inbox messages left unapplied")
    _attribute_calls(read_journal_strictly(journal), outcome)
    return outcome


def _check_after_fault(store: FileStore, journal: Path, outcome: Outcome) -> None:
    if not journal.exists():
        return  # the create failed: nothing was written
    try:
        read_journal_strictly(journal)
        status = store.read(INSTANCE)
    except Exception as error:  # anything at all is the finding
        outcome.problems.append(f"journal unreadable after the fault: {error!r}")
        return
    if any(isinstance(record, Errored) for record in status):
        outcome.problems.append("errored after a store fault")
    if store.holder(INSTANCE) is not None:
        outcome.problems.append("a lock is held after the fault")


def _attribute_calls(records: list[Any], outcome: Outcome) -> None:
    """Match every real callback call to its journaled attempt."""
    started = {(r.step, r.attempt) for r in records if isinstance(r, AttemptStarted)}
    completed = {r.step: r.attempt for r in records if isinstance(r, StepCompleted)}
    lost = {
        (r.step, r.attempt)
        for r in records
        if isinstance(r, AttemptFailed) and r.error.name == "AttemptLostError"
    }
    for (step, attempt), count in Counter(outcome.calls).items():
        outcome.double_executions += count - 1
        if (step, attempt) not in started:
            outcome.double_executions += count
            outcome.problems.append(f"{step} attempt {attempt} ran unjournaled")
        if step in completed and attempt > completed[step]:
            outcome.double_executions += count
            outcome.problems.append(f"{step} ran again after its result was journaled")
    in_flight = [call for call in outcome.calls if call in lost]
    outcome.lost_attempts = len(in_flight)


@dataclass
class Figures:
    """The matrix's totals."""

    faults_injected: int = 0
    runs: int = 0
    commands_failed: int = 0
    instances_lost: int = 0
    double_executions: int = 0
    attempts_lost_in_flight: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plan(counts: Counter[str], *, every: int = 1) -> list[Fault]:
    """Every fault of the matrix for an undisturbed run's ``counts``; with ``every``,
    only every ``every``-th call of each operation (a quick sample)."""
    faults = []
    for operation in sorted(counts):
        if operation in ("listdir", "scandir"):
            continue
        for at in range(1, counts[operation] + 1, every):
            faults += [Fault(operation, at, code) for code in FAULT_ERRNOS]
            if operation == "write":
                faults.append(Fault(operation, at, errno.ENOSPC, short=True))
    return faults


def run_matrix(root: Path, *, every: int = 1) -> Figures:
    """Run the scenario undisturbed, then once per fault of :func:`plan`."""
    began = time.monotonic()
    figures = Figures()
    baseline = run_scenario(root / "baseline")
    expected = Counter(step for step, _ in baseline.calls)
    if baseline.status != "complete" or baseline.problems:
        raise AssertionError(f"the undisturbed run failed: {baseline}")
    for number, fault in enumerate(plan(baseline.counts, every=every)):
        name = f"{fault.operation}#{fault.at} {errno.errorcode[fault.code]}"
        name += " short" if fault.short else ""
        outcome = run_scenario(root / f"run-{number}", Fault(**vars(fault)))
        figures.runs += 1
        figures.faults_injected += bool(outcome.fired)
        figures.by_operation[fault.operation] += bool(outcome.fired)
        figures.commands_failed += outcome.faults_met
        figures.attempts_lost_in_flight += outcome.lost_attempts
        figures.double_executions += outcome.double_executions
        counts = Counter(step for step, _ in outcome.calls)
        # A lost attempt is a call more than the undisturbed run made, unless it took
        # the place of an attempt that fails anyway (flaky's first).
        wrong = (
            outcome.status != "complete"
            or outcome.output != baseline.output
            or outcome.lost_attempts > 1
            or sum((counts - expected).values()) > outcome.lost_attempts
            or expected - counts
        )
        if outcome.status != "complete" or outcome.output != baseline.output:
            figures.instances_lost += 1
        if wrong or outcome.problems:
            figures.failures.append(
                f"{name}: {outcome.status} {outcome.output!r} calls {dict(counts)} "
                f"lost {outcome.lost_attempts} {outcome.problems}"
            )
    figures.seconds = round(time.monotonic() - began, 1)
    return figures


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="wf-faults-") as folder:
        figures = run_matrix(Path(folder))
    report = {**vars(figures), "by_operation": dict(figures.by_operation)}
    print(json.dumps(report, indent=2))
    return 1 if figures.failures else 0


if __name__ == "__main__":
    sys.exit(main())
