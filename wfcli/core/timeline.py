"""An instance's history as spans of time per step, for ``wf timeline`` (pure, no I/O).

:class:`Timeline` reads the journal records in order (the fold keeps only each step's
latest state, a timeline needs every attempt) and keeps one :class:`StepRow` per step
name, in the order the steps first appeared. Each row holds :class:`Span` objects:
attempts, the retry delays between them, sleeps, event waits and waits for a child
instance; a step's rollback has a row of its own (``rollback NAME``) with its attempts
and their retry delays. A span still open
(the instance is running or waiting) has no ``end``; its ``until`` says when a wait is
due to end. ``docs/cli-json.md`` section 12 documents the spans' JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    Created,
    Errored,
    Finished,
    JsonValue,
    Record,
    Restarted,
    RollbackAttemptFailed,
    RollbackAttemptStarted,
    RollbackCompleted,
    RunStarted,
    StepCompleted,
    StepFailed,
    Suspended,
    Terminated,
    WaitStarted,
    format_optional_time,
    format_time,
)
from wfcli.core.state import LOST_ATTEMPT, InstanceState, WaitInfo

__all__ = ["SPAN_KINDS", "Span", "SpanKind", "SpanOutcome", "StepRow", "Timeline"]

SpanKind = Literal["attempt", "retry_delay", "sleep", "event_wait", "child_wait", "rollback"]
SPAN_KINDS: tuple[SpanKind, ...] = (
    "attempt",
    "retry_delay",
    "sleep",
    "event_wait",
    "child_wait",
    "rollback",
)
SpanOutcome = Literal["ok", "failed", "lost", "open", "cancelled"]
"""``ok`` and ``failed`` as the step said; ``lost`` an attempt whose process died;
``open`` not over yet; ``cancelled`` cut short by a restart or by the instance ending."""


@dataclass(frozen=True, slots=True)
class Span:
    """One stretch of a step's time: an attempt, a retry delay, a sleep or an event wait."""

    kind: SpanKind
    start: datetime
    end: datetime | None
    """None while it is open."""
    outcome: SpanOutcome
    attempt: int | None = None
    """The attempt's number (attempts and the retry delays after them)."""
    until: datetime | None = None
    """When a wait was due to end: wake time, retry time, or event deadline."""
    detail: str | None = None
    """A failed attempt's error, or the event type waited for."""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "kind": self.kind,
            "start": format_time(self.start),
            "end": format_optional_time(self.end),
            "outcome": self.outcome,
            "attempt": self.attempt,
            "until": format_optional_time(self.until),
            "detail": self.detail,
        }


@dataclass(slots=True)
class StepRow:
    """The spans of one step name, oldest first."""

    name: str
    kind: str
    spans: list[Span] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return sum(1 for span in self.spans if span.kind in ("attempt", "rollback"))

    def to_json(self) -> dict[str, JsonValue]:
        return {"name": self.name, "type": self.kind, "spans": [s.to_json() for s in self.spans]}


_WAIT_KINDS: dict[str, SpanKind] = {
    "sleep": "sleep",
    "event": "event_wait",
    "instance": "child_wait",
}


def _error_text(name: str, message: str) -> str:
    return f"{name}: {message}" if message else name


@dataclass(slots=True)
class Timeline:
    """The spans of an instance, built record by record (:meth:`apply`)."""

    state: InstanceState
    rows: dict[str, StepRow] = field(default_factory=dict)
    latest: datetime | None = None
    """The time of the latest record."""

    @classmethod
    def of(cls, records: Iterable[Record]) -> Timeline:
        """The timeline of a complete journal (first record ``created``)."""
        iterator = iter(records)
        first = next(iterator)
        if not isinstance(first, Created):
            raise TypeError("a journal starts with a 'created' record")
        timeline = cls(InstanceState.from_created(first))
        timeline.extend(iterator)
        return timeline

    def extend(self, records: Iterable[Record]) -> None:
        """Add records that follow those read so far (``wf timeline --follow``)."""
        for record in records:
            self.apply(record)

    @property
    def start(self) -> datetime:
        return self.state.created

    def end(self, now: datetime) -> datetime:
        """Where the time axis ends: when the instance ended, else ``now`` (or the latest
        record's time, should a clock have been set back since)."""
        if self.state.terminal and self.state.ended is not None:
            return self.state.ended
        return max(now, self.latest or self.start)

    @property
    def waiting(self) -> WaitInfo | None:
        return self.state.waiting if self.state.status == "waiting" else None

    def _row(self, name: str, kind: str) -> StepRow:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = StepRow(name, kind)
        return row

    def _attempt_failed(
        self,
        name: str,
        kind: str,
        attempt_kind: SpanKind,
        outcome: SpanOutcome,
        record: AttemptFailed | RollbackAttemptFailed,
    ) -> None:
        """Close row ``name``'s attempt span with ``outcome`` and open the retry delay
        after it, if the attempt is retried."""
        error = _error_text(record.error.name, record.error.message)
        self._close(name, record.at, outcome, error, only=attempt_kind)
        if record.retry_at is not None:
            self._row(name, kind).spans.append(
                Span(
                    "retry_delay",
                    record.at,
                    None,
                    "open",
                    attempt=record.attempt,
                    until=record.retry_at,
                )
            )

    def _close(
        self,
        name: str,
        at: datetime,
        outcome: SpanOutcome,
        detail: str | None = None,
        only: SpanKind | None = None,
    ) -> None:
        """Close the step's open span (of kind ``only``, if given), if it has one."""
        row = self.rows.get(name)
        if row is None or not row.spans:
            return
        last = row.spans[-1]
        if last.end is None and (only is None or last.kind == only):
            row.spans[-1] = replace(last, end=at, outcome=outcome, detail=detail or last.detail)

    def _close_all(self, at: datetime) -> None:
        for name in self.rows:
            self._close(name, at, "cancelled")

    def apply(self, record: Record) -> None:
        """Fold one record into the spans (and the instance's state)."""
        self.state.apply(record)
        at = record.at
        self.latest = at if self.latest is None else max(self.latest, at)
        if isinstance(record, AttemptStarted):
            self._close(record.step, at, "ok", only="retry_delay")
            self._row(record.step, "do").spans.append(
                Span("attempt", at, None, "open", attempt=record.attempt)
            )
        elif isinstance(record, AttemptFailed):
            lost = record.error.name == LOST_ATTEMPT
            self._attempt_failed(record.step, "do", "attempt", "lost" if lost else "failed", record)
        elif isinstance(record, StepCompleted):
            self._close(record.step, at, "ok")
        elif isinstance(record, StepFailed):
            if record.kind == "event":
                self._close(record.step, at, "failed", record.error.name)
        elif isinstance(record, WaitStarted):
            kind: SpanKind = _WAIT_KINDS[record.kind]
            detail = record.event_type if record.instance_id is None else record.instance_id
            self._row(record.step, record.kind).spans.append(
                Span(kind, at, None, "open", until=record.until, detail=detail)
            )
        elif isinstance(record, RollbackAttemptStarted):
            name = f"rollback {record.step}"
            self._close(name, at, "ok", only="retry_delay")
            self._row(name, "rollback").spans.append(
                Span("rollback", at, None, "open", attempt=record.attempt)
            )
        elif isinstance(record, RollbackAttemptFailed):
            name = f"rollback {record.step}"
            self._attempt_failed(name, "rollback", "rollback", "failed", record)
        elif isinstance(record, RollbackCompleted):
            self._close(f"rollback {record.step}", at, "ok", only="rollback")
        elif isinstance(record, (Restarted, Terminated, Finished, Errored)):
            self._close_all(at)
        elif isinstance(record, (RunStarted, Suspended)):
            pass  # a run's start and stop leave the steps' spans as they are

    def to_json(self, now: datetime) -> dict[str, JsonValue]:
        """The document of ``wf timeline --json`` (``docs/cli-json.md`` section 12)."""
        wait = self.waiting
        return {
            "id": self.state.instance_id,
            "workflow": self.state.workflow,
            "status": self.state.status,
            "start": format_time(self.start),
            "end": format_optional_time(self.state.ended),
            "now": format_time(now),
            "waiting": None if wait is None else wait.to_json(),
            "steps": [row.to_json() for row in self.rows.values()],
        }
