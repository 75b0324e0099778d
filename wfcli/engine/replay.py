"""``wf replay``: does the current workflow code still fit the recorded histories?

Replay runs a workflow's ``run`` against an instance's journal with the real step
engine (:class:`~wfcli.step.StepRun` and :class:`~wfcli.step.WorkflowStep`),
serving every step from the record: no callback runs, no wait waits, and nothing
is written to any journal, lock or inbox. Where the code departs from the history
it says exactly where: a step history does not have while history goes on, steps
out of order, a step whose kind changed, a duplicate step name, recorded steps the
code no longer reaches, or a different outcome of a finished run. Reaching the end
of the history of an instance still in flight is not a divergence: replay stops
there and the instance is compatible.

Positions are 1-based places in the instance's step order, as ``wf status`` lists
steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from wfcli.client.client import WorkflowClient
from wfcli.core.codec import (
    Created,
    ErrorInfo,
    InboxMessage,
    JsonValue,
    Record,
    StepKind,
    check_json,
)
from wfcli.core.ids import validate_instance_id
from wfcli.core.retry import RetryPolicy
from wfcli.core.state import InstanceState, StepState, fold
from wfcli.core.workflow import ReceivedEvent, WorkflowEvent, freeze
from wfcli.engine.callbacks import Callback, CallbackRunner
from wfcli.engine.signals import RunSignal
from wfcli.engine.step import NullObserver, StepRun, WorkflowStep
from wfcli.errors import StepFailedError, UnknownWorkflowError, WorkflowError
from wfcli.store.contract import JournalStore, Lease, Owner

__all__ = [
    "Finding",
    "FindingKind",
    "ReplayOutcome",
    "ReplayReport",
    "ReplaySummary",
    "ReplayWriteError",
    "replay_instance",
    "replay_many",
]

FindingKind = Literal[
    "new_step",
    "out_of_order",
    "changed_kind",
    "duplicate_step",
    "unreached_step",
    "changed_outcome",
    "unknown_workflow",
]
ReplayOutcome = Literal["returned", "raised", "end_of_history", "divergence"]

_TITLES: dict[FindingKind, str] = {
    "new_step": "step not in history",
    "out_of_order": "steps out of order",
    "changed_kind": "step kind changed",
    "duplicate_step": "duplicate step name",
    "unreached_step": "recorded step not reached",
    "changed_outcome": "different outcome",
    "unknown_workflow": "workflow not configured",
}
_SHOWN_JSON_CHARS = 80


class ReplayWriteError(WorkflowError):
    """Something tried to write during a replay (a workflow using ``self.env`` outside a step)."""

    def __init__(self, operation: str, instance_id: str) -> None:
        self.operation = operation
        self.instance_id = instance_id
        super().__init__(f"replay writes nothing: refused to {operation} instance {instance_id!r}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One place where the code departs from an instance's history.

    ``expected`` is what the history has there, ``found`` what the code does. A
    ``warning`` (a duplicate step name the history has too) does not make the
    instance divergent.
    """

    instance_id: str
    kind: FindingKind
    step: str | None
    position: int | None
    expected: str
    found: str
    warning: bool = False

    @property
    def message(self) -> str:
        """One line for people, naming the instance, the step and its position."""
        where = "" if self.position is None else f" at position {self.position}"
        return (
            f"instance {self.instance_id!r}: {_TITLES[self.kind]}{where}: "
            f"expected {self.expected}, found {self.found}"
        )

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "instance": self.instance_id,
            "kind": self.kind,
            "severity": "warning" if self.warning else "divergence",
            "step": self.step,
            "position": self.position,
            "expected": self.expected,
            "found": self.found,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What replaying one instance found.

    ``outcome`` says how the replay ended: the code returned or raised, it reached
    the end of an in-flight history, or it diverged. ``steps_replayed`` counts the
    history steps the code asked for in order, out of ``history_steps``.
    """

    instance_id: str
    workflow: str
    status: str
    outcome: ReplayOutcome
    steps_replayed: int
    history_steps: int
    findings: tuple[Finding, ...]

    @property
    def compatible(self) -> bool:
        return not self.divergences

    @property
    def divergences(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.warning]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.warning]

    def to_json(self) -> dict[str, JsonValue]:
        """One instance's entry in ``wf replay --json``."""
        return {
            "id": self.instance_id,
            "workflow": self.workflow,
            "status": self.status,
            "compatible": self.compatible,
            "outcome": self.outcome,
            "steps_replayed": self.steps_replayed,
            "history_steps": self.history_steps,
            "findings": [finding.to_json() for finding in self.findings],
        }


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """Counts over many reports; ``warnings`` counts warning findings."""

    instances: int
    compatible: int
    divergent: int
    warnings: int

    @classmethod
    def of(cls, reports: Sequence[ReplayReport]) -> ReplaySummary:
        compatible = sum(report.compatible for report in reports)
        return cls(
            instances=len(reports),
            compatible=compatible,
            divergent=len(reports) - compatible,
            warnings=sum(len(report.warnings) for report in reports),
        )

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "instances": self.instances,
            "compatible": self.compatible,
            "divergent": self.divergent,
            "warnings": self.warnings,
        }


# --- a store and a lease that refuse every write ----------------------------------------


class _ReadOnlyLease(Lease):
    def __init__(self, store: JournalStore, instance_id: str, owner: Owner) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self._store = store

    def read(self) -> list[Record]:
        return self._store.read(self.instance_id)

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        raise ReplayWriteError("append to the journal of", self.instance_id)

    def pending(self) -> list[InboxMessage]:
        return self._store.pending(self.instance_id)

    def discard(self, message_ids: Sequence[str]) -> None:
        raise ReplayWriteError("discard inbox messages of", self.instance_id)

    def delete_instance(self) -> None:
        raise ReplayWriteError("delete", self.instance_id)

    def release(self) -> None:
        pass  # nothing was locked


class _ReadOnlyStore(JournalStore):
    """A store seen through replay: reads pass through, writes raise, no lock is taken."""

    def __init__(self, store: JournalStore) -> None:
        self._store = store
        self.durable = store.durable

    def location(self) -> str:
        return self._store.location()

    def create(self, record: Created) -> None:
        raise ReplayWriteError("create", record.instance_id)

    def read(self, instance_id: str) -> list[Record]:
        return self._store.read(instance_id)

    def instance_ids(self) -> list[str]:
        return self._store.instance_ids()

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        return _ReadOnlyLease(self._store, instance_id, owner)

    def holder(self, instance_id: str) -> Owner | None:
        return self._store.holder(instance_id)

    def post(self, instance_id: str, message: InboxMessage) -> None:
        raise ReplayWriteError(f"post a {message.action!r} message to", instance_id)

    def pending(self, instance_id: str) -> list[InboxMessage]:
        return self._store.pending(instance_id)


# --- the replay-only step engine ----------------------------------------------------------


class _Halt(RunSignal):
    """Stops a replay: at a divergence, or at the end of an in-flight history."""


def _describe(step: StepState) -> str:
    return f"{step.name!r} ({step.kind})"


def _shown(value: JsonValue) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SHOWN_JSON_CHARS else text[: _SHOWN_JSON_CHARS - 3] + "..."


def _canonical(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True)


def _shown_error(error: ErrorInfo) -> str:
    return f"error {error.name}: {error.message}"


class _ReplayRun(StepRun):
    """A :class:`StepRun` that serves every step from the history and checks the order.

    Calls are matched against the history in groups: one group per ``do``,
    ``sleep`` or ``wait_for_event``, and one per ``parallel`` call, whose
    branches the history may hold in any order. ``note_call`` collects a group's
    names; the group is matched when its first step is served.
    """

    def __init__(self, lease: Lease, state: InstanceState, client: WorkflowClient) -> None:
        super().__init__(lease, state, client.clock, client.settings, NullObserver())
        self.history = state.ordered_steps()
        self.index_of = {step.name: index for index, step in enumerate(self.history)}
        self.finished = state.status in ("complete", "errored")
        self.warned = {warning.step for warning in state.warnings}
        self.matched = 0
        self.group: list[tuple[str, StepKind]] = []
        self.findings: list[Finding] = []
        self.reported_duplicates: set[str] = set()
        self.halted = False
        self.end_of_history = False

    # findings -------------------------------------------------------------------------

    def _note(
        self,
        kind: FindingKind,
        step: str | None,
        position: int | None,
        expected: str,
        found: str,
        *,
        warning: bool = False,
    ) -> None:
        self.findings.append(
            Finding(self.state.instance_id, kind, step, position, expected, found, warning)
        )

    def _diverge(
        self, kind: FindingKind, step: str, position: int, expected: str, found: str
    ) -> _Halt:
        self._note(kind, step, position, expected, found)
        self.halted = True
        return _Halt()

    def _stop_at_end_of_history(self) -> _Halt:
        self.halted = True
        self.end_of_history = True
        return _Halt()

    def _expected_next(self) -> str:
        if self.matched < len(self.history):
            return _describe(self.history[self.matched])
        if self.finished:
            return f"the end of the run (the instance is {self.state.status})"
        return "the end of the history"

    # the step engine's entry points -------------------------------------------------------

    def checkpoint(self) -> None:
        """Replay applies no inbox and honours no cancel: nothing between steps."""

    def note_call(self, name: str, kind: StepKind) -> int:
        with self._mutex:
            if self.halted:
                raise _Halt
            count = self.calls.get(name, 0) + 1
            self.calls[name] = count
            if count == 1:
                self.group.append((name, kind))
            else:
                self._check_duplicate(name, kind)
            return count

    def _check_duplicate(self, name: str, kind: StepKind) -> None:
        if self.state.steps[name].kind != kind:
            # The engine refuses a name reused for another kind of step before it
            # writes anything; let it raise that error into the workflow as it would.
            super().note_call(name, kind)
        if name in self.reported_duplicates:
            return
        self.reported_duplicates.add(name)
        # The history had this duplicate too, or the code is past the end of an
        # in-flight history (where the run will do the same): only a warning.
        history_goes_on = self.matched < len(self.history) or self.finished
        warning = name in self.warned or not history_goes_on
        position = self.matched + 1
        expected = self._expected_next()
        found = (
            f"{name!r} called again, returning the result of its first call "
            f"at position {self.index_of[name] + 1}"
        )
        if warning:
            self._note("duplicate_step", name, position, expected, found, warning=True)
        else:
            raise self._diverge("duplicate_step", name, position, expected, found)

    def _match_group(self) -> None:
        """Match the calls collected since the last step against the history."""
        group, self.group = self.group, []
        start = self.matched
        window = self.history[start : start + len(group)]
        available = {step.name: step for step in window}
        unmatched: list[tuple[str, StepKind]] = []
        for name, kind in group:
            step = available.pop(name, None)
            if step is None:
                unmatched.append((name, kind))
            elif step.kind != kind:
                raise self._diverge(
                    "changed_kind",
                    name,
                    self.index_of[name] + 1,
                    f"{name!r} as a {step.kind} step",
                    f"{name!r} as a {kind} step",
                )
        if not unmatched:
            self.matched += len(group)
            return
        name, kind = unmatched[0]
        left = [step for step in window if step.name in available]
        if not left:  # the history ends inside this group
            if not self.finished:
                raise self._stop_at_end_of_history()
            raise self._diverge(
                "new_step", name, len(self.history) + 1, self._expected_next(), f"{name!r} ({kind})"
            )
        expected = left[0]
        position = self.index_of[expected.name] + 1
        recorded = self.index_of.get(name)
        if recorded is None:
            raise self._diverge(
                "new_step", name, position, _describe(expected), f"{name!r} ({kind})"
            )
        raise self._diverge(
            "out_of_order",
            name,
            position,
            _describe(expected),
            f"{name!r} ({kind}), recorded at position {recorded + 1}",
        )

    def _serve(self, name: str) -> None:
        """Check the call against the history; return if the step can be served from it."""
        with self._mutex:
            if self.group:
                self._match_group()
            if self.halted:
                raise _Halt
            if self.state.steps[name].status not in ("completed", "failed"):
                raise self._stop_at_end_of_history()  # a step in flight: history ends here

    def do(
        self,
        name: str,
        callback: Callback,
        *,
        policy: RetryPolicy,
        timeout: timedelta,
        count: int,
        runner: CallbackRunner,
    ) -> object:
        self._serve(name)
        return super().do(
            name, callback, policy=policy, timeout=timeout, count=count, runner=runner
        )

    def sleep(self, name: str, until: Callable[[], datetime]) -> None:
        self._serve(name)
        super().sleep(name, until)

    def wait_for_event(self, name: str, event_type: str, timeout: timedelta) -> ReceivedEvent:
        self._serve(name)
        return super().wait_for_event(name, event_type, timeout)

    # the end of the run ----------------------------------------------------------------

    def finish(self, output: JsonValue, error: ErrorInfo | None) -> None:
        """The code returned ``output`` or raised ``error``: check what history has left."""
        found = (
            "the run returned" if error is None else f"the run raised {error.name}: {error.message}"
        )
        unreached = self.history[self.matched :]
        for index, step in enumerate(unreached, start=self.matched + 1):
            self._note("unreached_step", step.name, index, _describe(step), found)
        if unreached or not self.finished:
            return
        recorded_error = self.state.error
        if self.state.status == "complete":
            expected = f"output {_shown(self.state.output)}"
        else:
            assert recorded_error is not None
            expected = _shown_error(recorded_error)
        if error is not None:
            if error != recorded_error:
                self._note("changed_outcome", None, None, expected, _shown_error(error))
        elif recorded_error is not None or _canonical(output) != _canonical(self.state.output):
            self._note("changed_outcome", None, None, expected, f"output {_shown(output)}")


# --- replaying instances --------------------------------------------------------------


class _Replayer:
    """Replays instances of one client's store with its workflows, writing nothing."""

    def __init__(self, client: WorkflowClient) -> None:
        # Workflows get bindings on a client that refuses writes, so a workflow
        # creating or signalling instances outside a step cannot change anything.
        self.client = WorkflowClient(
            _ReadOnlyStore(client.store),
            client.workflows,
            bindings=client.bindings,
            variables=client.variables,
            clock=client.clock,
            settings=client.settings,
        )

    def replay(self, state: InstanceState) -> ReplayReport:
        history_steps = len(state.steps)
        try:
            workflow = self.client.executor.resolve(state.workflow)
        except UnknownWorkflowError as error:
            finding = Finding(
                state.instance_id,
                "unknown_workflow",
                None,
                None,
                f"workflow {state.workflow!r}",
                f"no such workflow (known: {', '.join(error.known) or 'none'})",
            )
            return ReplayReport(
                state.instance_id,
                state.workflow,
                state.status,
                "divergence",
                0,
                history_steps,
                (finding,),
            )
        lease = self.client.store.acquire(state.instance_id, Owner.current())
        run = _ReplayRun(lease, state, self.client)
        event = WorkflowEvent(
            payload=freeze(state.params),
            timestamp=state.created,
            instance_id=state.instance_id,
            workflow_name=state.workflow,
        )
        output: JsonValue = None
        raised: ErrorInfo | None = None
        try:
            returned = workflow(self.client.executor.env()).run(event, WorkflowStep(run))
            output = json.loads(
                check_json(returned, "workflow output", run.settings.max_value_bytes)
            )
        except _Halt:
            pass  # run.halted says why
        except StepFailedError as error:  # the instance's error, as the executor records it
            raised = ErrorInfo(error.error_name, error.error_message)
        except Exception as error:
            raised = ErrorInfo.of(error)
        outcome: ReplayOutcome
        if run.halted:  # also when the code caught the signal itself
            outcome = "end_of_history" if run.end_of_history else "divergence"
        else:
            run.finish(output, raised)
            outcome = "returned" if raised is None else "raised"
        return ReplayReport(
            instance_id=state.instance_id,
            workflow=state.workflow,
            status=state.status,
            outcome=outcome,
            steps_replayed=run.matched,
            history_steps=history_steps,
            findings=tuple(run.findings),
        )


def replay_instance(client: WorkflowClient, instance_id: str) -> ReplayReport:
    """Replay one instance with the client's current workflow code.

    Raises :class:`~wfcli.errors.InstanceNotFoundError` or
    :class:`~wfcli.errors.JournalCorruptError`; a workflow that is no longer
    configured is reported as a divergence.
    """
    return _Replayer(client).replay(fold(client.store.read(validate_instance_id(instance_id))))


def replay_many(
    client: WorkflowClient,
    instance_ids: Iterable[str] | None = None,
    *,
    workflow: str | None = None,
    statuses: Iterable[str] = (),
) -> list[ReplayReport]:
    """Replay the given instances, or with ``instance_ids=None`` every instance
    (newest first), optionally only those of ``workflow`` and in ``statuses``."""
    replayer = _Replayer(client)
    if instance_ids is not None:
        return [
            replayer.replay(fold(client.store.read(validate_instance_id(instance_id))))
            for instance_id in instance_ids
        ]
    reader = replayer.client  # its store writes nothing, not even the listing index
    selected = reader.list_instances(workflow=workflow, statuses=statuses)
    return [replayer.replay(fold(reader.store.read(summary.id))) for summary in selected]
