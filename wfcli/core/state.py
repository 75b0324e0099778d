"""The state of an instance, folded from its journal records (pure, no I/O).

:meth:`InstanceState.apply` is the one place that says what each record means;
the executor, the client and ``wf status`` all read instances through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Literal

from wfcli.core.codec import (
    ROLLBACK_RECORDS,
    AttemptFailed,
    AttemptStarted,
    Created,
    Diverged,
    Errored,
    ErrorInfo,
    EventReceived,
    Finished,
    Forked,
    InboxMessage,
    JsonValue,
    PatchMarked,
    Paused,
    Record,
    Restarted,
    Resumed,
    RollbackAttemptFailed,
    RollbackAttemptStarted,
    RollbackCompleted,
    RollbackFailed,
    RollbackFinished,
    RollbackReason,
    RollbackStarted,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepKind,
    Stopped,
    Suspended,
    Terminated,
    WaitStarted,
    Warned,
    format_time,
)
from wfcli.core.redaction import REDACTED, redact, redacted_event

__all__ = [
    "LOST_ATTEMPT",
    "STATUSES",
    "TERMINAL_STATUSES",
    "BufferedEvent",
    "InstanceState",
    "PatchDecision",
    "RollbackState",
    "RollbackStepState",
    "Status",
    "StepState",
    "WaitInfo",
    "fold",
    "fork_journal",
    "records_for_message",
    "steps_before",
]

Status = Literal[
    "queued", "running", "paused", "waitingForPause", "waiting", "errored", "terminated", "complete"
]
STATUSES: tuple[Status, ...] = (
    "queued",
    "running",
    "paused",
    "waitingForPause",
    "waiting",
    "errored",
    "terminated",
    "complete",
)
LOST_ATTEMPT = "AttemptLostError"
"""The error name journaled for an attempt whose process died."""
TERMINAL_STATUSES: frozenset[str] = frozenset({"errored", "terminated", "complete"})
StepStatus = Literal["running", "waiting", "completed", "failed"]
_position = attrgetter("position")  # a sort key every resume uses on every step


@dataclass(slots=True)
class StepState:
    """What the journal says about one named step."""

    name: str
    kind: StepKind
    position: int
    status: StepStatus = "running"
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    output: JsonValue = None
    error: ErrorInfo | None = None
    retry_at: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None
    lost_attempts: int = 0
    """Attempts that never finished because their process died (``AttemptLostError``)."""
    sensitive: bool = False
    """Views show its output redacted (an event step's: its payload)."""
    has_rollback: bool = False
    """It was started with a rollback, so a rollback of the instance undoes it."""
    instance_id: str | None = None
    """The instance a ``wait_for_instance`` step waits for."""

    @property
    def shown_output(self) -> JsonValue:
        """Its output as views show it."""
        if not self.sensitive:
            return self.output
        return redacted_event(self.output) if self.kind == "event" else REDACTED


@dataclass(slots=True)
class RollbackStepState:
    """What the journal says about the rollback of one step."""

    step: str
    status: Literal["pending", "running", "waiting", "completed", "failed"] = "pending"
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    error: ErrorInfo | None = None
    retry_at: datetime | None = None
    lost_attempts: int = 0


def _attempt_failed(
    step: StepState | RollbackStepState, record: AttemptFailed | RollbackAttemptFailed
) -> None:
    """Fold a failed attempt of a step or of its rollback: waiting for its retry, or
    running until the record that ends it."""
    step.status = "waiting" if record.retry_at is not None else "running"
    step.attempts = max(step.attempts, record.attempt)
    step.error = record.error
    step.retry_at = record.retry_at
    if record.error.name == LOST_ATTEMPT:
        step.lost_attempts += 1


@dataclass(slots=True)
class RollbackState:
    """A rollback of the instance: its plan (steps, in the order they roll back) and
    how far it got; ``status`` is ``running`` until ``rollback_finished``."""

    reason: RollbackReason
    error: ErrorInfo | None
    message_id: str | None
    started: datetime
    steps: dict[str, RollbackStepState]
    status: Literal["running", "complete", "failed"] = "running"
    ended: datetime | None = None

    @property
    def plan(self) -> list[str]:
        return list(self.steps)

    @property
    def completed(self) -> int:
        return sum(1 for step in self.steps.values() if step.status == "completed")

    @property
    def failed_step(self) -> RollbackStepState | None:
        return next((step for step in self.steps.values() if step.status == "failed"), None)

    def to_json(self) -> dict[str, JsonValue]:
        """The ``rollback`` object of ``wf status --json``."""
        failed = self.failed_step
        return {
            "status": self.status,
            "reason": self.reason,
            "completed": self.completed,
            "total": len(self.steps),
            "failed_step": None if failed is None else failed.step,
            "error": None if failed is None or failed.error is None else failed.error.to_json(),
            "started": format_time(self.started),
            "ended": None if self.ended is None else format_time(self.ended),
            "steps": [
                {
                    "name": step.step,
                    "status": step.status,
                    "attempts": step.attempts,
                    "started": None if step.started is None else format_time(step.started),
                    "ended": None if step.ended is None else format_time(step.ended),
                    "error": None if step.error is None else step.error.to_json(),
                }
                for step in self.steps.values()
            ],
        }


@dataclass(frozen=True, slots=True)
class WaitInfo:
    """What a waiting instance waits for and until when."""

    kind: Literal["sleep", "retry", "event", "instance"]
    step: str
    until: datetime
    event_type: str | None

    def to_json(self) -> dict[str, JsonValue]:
        """The ``waiting`` object of ``wf status --json`` and ``wf list --json``."""
        return {
            "kind": self.kind,
            "step": self.step,
            "until": format_time(self.until),
            "event_type": self.event_type,
        }


@dataclass(frozen=True, slots=True)
class BufferedEvent:
    """An event received and not yet consumed by a ``wait_for_event``."""

    message_id: str
    event_type: str
    payload: JsonValue
    received: datetime
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class PatchDecision:
    """How an instance answered ``step.patched(name)``: ``applied`` (the new branch),
    decided once ``steps_before`` of its steps had been reached."""

    applied: bool
    steps_before: int


@dataclass(slots=True)
class InstanceState:
    """Everything the journal says about an instance, folded record by record."""

    instance_id: str
    workflow: str
    params: JsonValue
    created: datetime
    status: Status = "queued"
    started: datetime | None = None
    ended: datetime | None = None
    output: JsonValue = None
    error: ErrorInfo | None = None
    waiting: WaitInfo | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    events: list[BufferedEvent] = field(default_factory=list)
    consumed_events: set[str] = field(default_factory=set)
    applied_messages: set[str] = field(default_factory=set)
    warnings: list[Warned] = field(default_factory=list)
    version: str | None = None
    patches: dict[str, PatchDecision] = field(default_factory=dict)
    divergence: Diverged | None = None
    """Why the instance is paused, when the code no longer fit its history."""
    priority: int = 0
    """``wf run --priority``: workers admit higher numbers first."""
    schedule: JsonValue = None
    """For an instance a schedule started: its schedule, cron and scheduled time."""
    stopped: Stopped | None = None
    """The worker that last ran it was stopped between its steps (cleared by the next run)."""
    sensitive_params: tuple[str, ...] = ()
    """JSON Pointers of the parts of ``params`` views redact."""
    forked_from: tuple[str, str] | None = None
    """``(source instance, step)`` when the instance is a fork (a ``forked`` record)."""
    deadline: datetime | None = None
    """When the instance times out (``timeout`` of its workflow, ``wf run --timeout``)."""
    parent: str | None = None
    """The instance whose step created this one."""
    rollback: RollbackState | None = None
    runs: int = 0
    runner: tuple[int, str] | None = None
    record_count: int = 0
    _next_position: int = 0

    @classmethod
    def from_created(cls, record: Created) -> InstanceState:
        return cls(
            instance_id=record.instance_id,
            workflow=record.workflow,
            params=record.params,
            created=record.at,
            version=record.version,
            priority=record.priority or 0,
            schedule=record.schedule,
            sensitive_params=tuple(record.sensitive_params or ()),
            deadline=record.deadline,
            parent=record.parent,
            record_count=1,
        )

    @property
    def shown_params(self) -> JsonValue:
        """Its params as views show them."""
        return redact(self.params, self.sensitive_params)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def buffered_events(self, event_type: str) -> list[BufferedEvent]:
        """Unconsumed events of ``event_type``, oldest first."""
        return [
            event
            for event in self.events
            if event.event_type == event_type and event.message_id not in self.consumed_events
        ]

    @property
    def timed_out(self) -> bool:
        """Whether it errored because it passed its deadline."""
        return (
            self.status == "errored"
            and self.deadline is not None
            and self.ended is not None
            and self.ended >= self.deadline
            and self.error is not None
            and self.error.name == "WorkflowTimeoutError"
        )

    @property
    def rolling_back(self) -> bool:
        """Whether a rollback is under way (started and not finished)."""
        return self.rollback is not None and self.rollback.status == "running"

    def rollback_plan(self) -> list[str]:
        """The steps a rollback starting now undoes: every started step with a
        rollback, the last started first."""
        started = [step for step in self.steps.values() if step.has_rollback]
        return [step.name for step in sorted(started, key=_position, reverse=True)]

    def ordered_steps(self) -> list[StepState]:
        """Steps in the order they first appeared in the journal."""
        return sorted(self.steps.values(), key=_position)

    def _step(self, name: str, kind: StepKind, at: datetime) -> StepState:
        step = self.steps.get(name)
        if step is None:
            step = self.steps[name] = StepState(
                name=name, kind=kind, position=self._next_position, started=at
            )
            self._next_position += 1
        return step

    def _start_over(self, kept_steps: Iterable[str]) -> None:
        """A restart or a fork: queued again, only ``kept_steps`` keep their results."""
        kept = set(kept_steps)
        self.steps = {name: step for name, step in self.steps.items() if name in kept}
        self.patches = {
            name: patch
            for name, patch in self.patches.items()
            if kept and patch.steps_before <= len(kept)
        }
        self.divergence = None
        self.stopped = None
        self.status = "queued"
        self.output = None
        self.error = None
        self.ended = None
        self.waiting = None
        self.warnings = []
        self.rollback = None

    def apply(self, record: Record) -> None:
        """Fold one record into the state."""
        self.record_count += 1
        # The two records of every step look their step up inline: a resume folds them all.
        if isinstance(record, AttemptStarted):
            step = self.steps.get(record.step)
            if step is None:
                step = self._step(record.step, "do", record.at)
            step.status = "running"
            step.attempts = max(step.attempts, record.attempt)
            step.retry_at = None
            if record.rollback:
                step.has_rollback = True
        elif isinstance(record, StepCompleted):
            step = self.steps.get(record.step)
            if step is None:
                step = self._step(record.step, record.kind, record.at)
            step.status = "completed"
            step.attempts = max(step.attempts, record.attempt)
            step.output = record.output
            step.sensitive = record.sensitive is True
            step.error = None
            step.retry_at = None
            step.ended = record.at
            if record.kind == "event" and isinstance(record.output, dict):
                event_id = record.output.get("id")
                if isinstance(event_id, str):
                    self.consumed_events.add(event_id)
        elif isinstance(record, AttemptFailed):
            _attempt_failed(self._step(record.step, "do", record.at), record)
        elif isinstance(record, StepFailed):
            step = self._step(record.step, record.kind, record.at)
            step.status = "failed"
            step.attempts = max(step.attempts, record.attempts)
            step.error = record.error
            step.retry_at = None
            step.ended = record.at
        elif isinstance(record, WaitStarted):
            step = self._step(record.step, record.kind, record.at)
            step.status = "waiting"
            step.until = record.until
            step.event_type = record.event_type
            step.instance_id = record.instance_id
        elif isinstance(record, RunStarted):
            self.status = "running"
            self.runs += 1
            self.started = self.started or record.at
            self.runner = (record.pid, record.host)
            self.waiting = None
            self.divergence = None
            self.stopped = None
        elif isinstance(record, Stopped):
            self.status = "queued"
            self.stopped = record
        elif isinstance(record, Suspended):
            self.status = "waiting"
            self.waiting = WaitInfo(record.wait, record.step, record.until, record.event_type)
        elif isinstance(record, EventReceived):
            self.applied_messages.add(record.message_id)
            self.events.append(
                BufferedEvent(
                    record.message_id,
                    record.event_type,
                    record.payload,
                    record.at,
                    bool(record.sensitive),
                )
            )
        elif isinstance(record, Paused):
            self.applied_messages.add(record.message_id)
            self.status = "paused"
        elif isinstance(record, Resumed):
            self.applied_messages.add(record.message_id)
            self.divergence = None
            if self.status == "paused":  # back to the wait it was paused in, if any
                self.status = "waiting" if self.waiting is not None else "queued"
        elif isinstance(record, Terminated):
            self.applied_messages.add(record.message_id)
            self.status = "terminated"
            self.ended = record.at
            self.waiting = None
            self.divergence = None
        elif isinstance(record, Restarted):
            self.applied_messages.add(record.message_id)
            self._start_over(record.kept_steps)
        elif isinstance(record, Forked):
            self.forked_from = (record.source, record.from_step)
            self.started = None  # the copy's own runs start it
            self._start_over(record.kept_steps)
        elif isinstance(record, Finished):
            self.status = "complete"
            self.output = record.output
            self.ended = record.at
            self.waiting = None
        elif isinstance(record, Errored):
            self.status = "errored"
            self.error = record.error
            self.ended = record.at
            self.waiting = None
        elif isinstance(record, Warned):
            self.warnings.append(record)
        elif isinstance(record, PatchMarked):
            self.patches.setdefault(
                record.patch, PatchDecision(record.applied, record.steps_before)
            )
        elif isinstance(record, Diverged):
            self.status = "paused"
            self.divergence = record
        elif isinstance(record, ROLLBACK_RECORDS):
            self._apply_rollback(record)
        elif isinstance(record, Created):
            raise TypeError("a journal has one 'created' record, first")

    def _apply_rollback(
        self,
        record: RollbackStarted
        | RollbackAttemptStarted
        | RollbackAttemptFailed
        | RollbackCompleted
        | RollbackFailed
        | RollbackFinished,
    ) -> None:
        if isinstance(record, RollbackStarted):
            if record.message_id is not None:
                self.applied_messages.add(record.message_id)
            self.rollback = RollbackState(
                reason=record.reason,
                error=record.error,
                message_id=record.message_id,
                started=record.at,
                steps={name: RollbackStepState(name) for name in record.plan},
            )
            if self.status != "running":  # asked for while idle: due, for whoever runs it
                self.status = "queued"
                self.waiting = None
            return
        rollback = self.rollback
        if rollback is None:
            raise TypeError(f"a {record.TYPE!r} record before 'rollback_started'")
        if isinstance(record, RollbackFinished):
            rollback.status = record.status
            rollback.ended = record.at
            return
        step = rollback.steps.get(record.step)
        if step is None:
            raise TypeError(f"a {record.TYPE!r} record for step {record.step!r}, not in the plan")
        if isinstance(record, RollbackAttemptStarted):
            step.status = "running"
            step.attempts = max(step.attempts, record.attempt)
            step.started = step.started or record.at
            step.retry_at = None
        elif isinstance(record, RollbackAttemptFailed):
            _attempt_failed(step, record)
        elif isinstance(record, RollbackCompleted):
            step.status = "completed"
            step.attempts = max(step.attempts, record.attempt)
            step.error = None
            step.ended = record.at
        else:
            step.status = "failed"
            step.attempts = max(step.attempts, record.attempts)
            step.error = record.error
            step.ended = record.at


def fold(records: Iterable[Record]) -> InstanceState:
    """The state of an instance from its complete journal (first record ``created``)."""
    iterator = iter(records)
    first = next(iterator)
    if not isinstance(first, Created):
        raise TypeError("a journal starts with a 'created' record")
    state = InstanceState.from_created(first)
    for record in iterator:
        state.apply(record)
    return state


def steps_before(state: InstanceState, step: str) -> list[str]:
    """The names of the steps that first ran before ``step`` (none if it never ran):
    what a restart or a fork from ``step`` keeps."""
    if step not in state.steps:
        return []
    cutoff = state.steps[step].position
    return [s.name for s in state.ordered_steps() if s.position < cutoff]


def fork_journal(
    records: Sequence[Record], new_id: str, from_step: str, now: datetime
) -> list[Record]:
    """The journal of a fork of the instance whose journal is ``records``: its own
    ``created`` (``new_id``, made ``now``), the source's other records as they are,
    then a ``forked`` record keeping the steps before ``from_step``."""
    source = records[0]
    assert isinstance(source, Created)
    created = Created(
        at=now,
        instance_id=new_id,
        workflow=source.workflow,
        params=source.params,
        version=source.version,
        priority=source.priority,
        sensitive_params=source.sensitive_params,
    )
    kept = steps_before(fold(records), from_step)
    forked = Forked(at=now, source=source.instance_id, from_step=from_step, kept_steps=kept)
    return [created, *records[1:], forked]


def records_for_message(state: InstanceState, message: InboxMessage, now: datetime) -> list[Record]:
    """The records that apply ``message`` to ``state`` (empty when it changes nothing).

    Pure: the caller, holding the instance's lease, appends them and folds them in.
    A message already applied (its ID is journaled) yields nothing, so applying
    the inbox again after a crash is harmless.
    """
    if message.message_id in state.applied_messages:
        return []
    action = message.action
    if action == "event":
        assert message.event_type is not None
        return [
            EventReceived(
                at=now,
                message_id=message.message_id,
                event_type=message.event_type,
                payload=message.payload,
                sensitive=message.sensitive,
            )
        ]
    if action == "restart":
        kept = [] if message.from_step is None else steps_before(state, message.from_step)
        return [
            Restarted(
                at=now, message_id=message.message_id, from_step=message.from_step, kept_steps=kept
            )
        ]
    if state.terminal:
        return []
    if action == "pause" and state.status != "paused":
        return [Paused(at=now, message_id=message.message_id)]
    if action == "resume" and state.status == "paused":
        return [Resumed(at=now, message_id=message.message_id)]
    if action == "terminate":
        plan = state.rollback_plan() if message.rollback and state.rollback is None else []
        if plan:
            return [
                RollbackStarted(
                    at=now,
                    reason="terminated",
                    plan=plan,
                    error=None,
                    message_id=message.message_id,
                )
            ]
        return [Terminated(at=now, message_id=message.message_id)]
    if action == "wake":
        return []  # a child finished: the run that follows looks at it
    return []
