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
from wfcli.core.state import InstanceState, fold
from wfcli.core.workflow import ReceivedEvent, WorkflowEvent, freeze
from wfcli.engine.callbacks import Callback, CallbackRunner
from wfcli.engine.history import Finding, FindingKind, HistoryMatcher
from wfcli.engine.signals import RunSignal
from wfcli.engine.step import NullObserver, StepRun, WorkflowStep
from wfcli.errors import StepFailedError, UnknownWorkflowError, WorkflowError
from wfcli.store.contract import JournalStore, Lease, LockOwner

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

ReplayOutcome = Literal["returned", "raised", "end_of_history", "divergence"]


class ReplayWriteError(WorkflowError):
    """Something tried to write during a replay (a workflow using ``self.env`` outside a step)."""

    def __init__(self, operation: str, instance_id: str) -> None:
        self.operation = operation
        self.instance_id = instance_id
        super().__init__(f"replay writes nothing: refused to {operation} instance {instance_id!r}")


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
    def __init__(self, store: JournalStore, instance_id: str, owner: LockOwner) -> None:
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

    def exists(self, instance_id: str) -> bool:
        return self._store.exists(instance_id)

    def read(self, instance_id: str) -> list[Record]:
        return self._store.read(instance_id)

    def instance_ids(self) -> list[str]:
        return self._store.instance_ids()

    def acquire(self, instance_id: str, owner: LockOwner) -> Lease:
        return _ReadOnlyLease(self._store, instance_id, owner)

    def holder(self, instance_id: str) -> LockOwner | None:
        return self._store.holder(instance_id)

    def post(self, instance_id: str, message: InboxMessage) -> None:
        raise ReplayWriteError(f"post a {message.action!r} message to", instance_id)

    def pending(self, instance_id: str) -> list[InboxMessage]:
        return self._store.pending(instance_id)

    def inbox_ids(self) -> set[str]:
        return self._store.inbox_ids()

    def journal_versions(self) -> dict[str, str]:
        return self._store.journal_versions()

    def load_cache(self, name: str) -> bytes | None:
        return self._store.load_cache(name)

    def save_cache(self, name: str, data: bytes) -> None:
        pass  # replay leaves the store as it found it; a cache only saves time


# --- the replay-only step engine ----------------------------------------------------------


class _Halt(RunSignal):
    """Stops a replay: at a divergence, or at the end of an in-flight history."""


class _ReplayRun(StepRun):
    """A :class:`StepRun` that serves every step from the history and halts where
    the :class:`HistoryMatcher` finds the code departs from it."""

    def __init__(self, lease: Lease, state: InstanceState, client: WorkflowClient) -> None:
        super().__init__(lease, state, client.clock, client.settings, NullObserver())
        self.matcher = HistoryMatcher(state)
        self.halted = False
        self.end_of_history = False

    def _halt(self, *, end_of_history: bool = False) -> _Halt:
        self.halted = True
        self.end_of_history = end_of_history
        return _Halt()

    # the step engine's entry points -------------------------------------------------------

    def checkpoint(self) -> None:
        """Replay applies no inbox and honours no cancel: nothing between steps."""

    def note_call(self, name: str, kind: StepKind) -> int:
        with self._mutex:
            if self.halted:
                raise _Halt
            count = self.calls.get(name, 0) + 1
            self.calls[name] = count
            if count > 1 and self.state.steps[name].kind != kind:
                # The engine refuses a name reused for another kind of step before it
                # writes anything; let it raise that error into the workflow as it would.
                super().note_call(name, kind)
            if not self.matcher.called(name, kind, count):
                raise self._halt()
            return count

    def _serve(self, name: str) -> None:
        """Check the call against the history; return if the step can be served from it."""
        with self._mutex:
            if self.halted:
                raise _Halt
            verdict = self.matcher.match()
            if verdict != "recorded":
                raise self._halt(end_of_history=verdict == "end_of_history")
            if self.state.steps[name].status not in ("completed", "failed"):
                raise self._halt(end_of_history=True)  # a step in flight: history ends here

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
        lease = self.client.store.acquire(state.instance_id, LockOwner.current())
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
            run.matcher.finish(output, raised)
            outcome = "returned" if raised is None else "raised"
        return ReplayReport(
            instance_id=state.instance_id,
            workflow=state.workflow,
            status=state.status,
            outcome=outcome,
            steps_replayed=run.matcher.matched,
            history_steps=history_steps,
            findings=tuple(run.matcher.findings),
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
