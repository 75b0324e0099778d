"""The state of an instance, folded from its journal records (pure, no I/O).

:meth:`InstanceState.apply` is the one place that says what each record means;
the executor, the client and ``wf status`` all read instances through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from wfcli.core.codec import (
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

    @property
    def shown_output(self) -> JsonValue:
        """Its output as views show it."""
        if not self.sensitive:
            return self.output
        return redacted_event(self.output) if self.kind == "event" else REDACTED


@dataclass(frozen=True, slots=True)
class WaitInfo:
    """What a waiting instance waits for and until when."""

    kind: Literal["sleep", "retry", "event"]
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

    def ordered_steps(self) -> list[StepState]:
        """Steps in the order they first appeared in the journal."""
        return sorted(self.steps.values(), key=lambda step: step.position)

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

    def apply(self, record: Record) -> None:
        """Fold one record into the state."""
        self.record_count += 1
        if isinstance(record, AttemptStarted):
            step = self._step(record.step, "do", record.at)
            step.status = "running"
            step.attempts = max(step.attempts, record.attempt)
            step.retry_at = None
        elif isinstance(record, StepCompleted):
            step = self._step(record.step, record.kind, record.at)
            step.status = "completed"
            step.attempts = max(step.attempts, record.attempt)
            step.output = record.output
            step.sensitive = bool(record.sensitive)
            step.error = None
            step.retry_at = None
            step.ended = record.at
            if record.kind == "event" and isinstance(record.output, dict):
                event_id = record.output.get("id")
                if isinstance(event_id, str):
                    self.consumed_events.add(event_id)
        elif isinstance(record, AttemptFailed):
            step = self._step(record.step, "do", record.at)
            step.status = "waiting" if record.retry_at is not None else "running"
            step.attempts = max(step.attempts, record.attempt)
            step.error = record.error
            step.retry_at = record.retry_at
            if record.error.name == LOST_ATTEMPT:
                step.lost_attempts += 1
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
        elif isinstance(record, Created):
            raise TypeError("a journal has one 'created' record, first")


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
        return [Terminated(at=now, message_id=message.message_id)]
    return []
