"""Views of instances: :class:`InstanceSummary` (``wf list``) and :class:`InstanceStatus`
(``wf status``), the journal's word with what the lock and the inbox add."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from wfcli.core.codec import (
    ErrorInfo,
    JsonValue,
    format_optional_time,
    format_time,
    parse_time,
)
from wfcli.core.state import TERMINAL_STATUSES, InstanceState, StepState, WaitInfo
from wfcli.store.contract import JournalStore, LockOwner
from wfcli.store.files.index import JournalSummary

if TYPE_CHECKING:  # the executor and the step engine load when something executes
    pass


__all__ = ["InstanceStatus", "InstanceSummary"]


def _error(error: ErrorInfo | None) -> dict[str, JsonValue] | None:
    return None if error is None else error.to_json()


def _step_json(step: StepState) -> dict[str, JsonValue]:
    return {
        "name": step.name,
        "type": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "started": format_optional_time(step.started),
        "ended": format_optional_time(step.ended),
        "output": step.output,
        "error": _error(step.error),
        "retry_at": format_optional_time(step.retry_at),
        "until": format_optional_time(step.until),
        "event_type": step.event_type,
    }


@dataclass(frozen=True, slots=True)
class _Live:
    """What the lock and the inbox add to a journal's status."""

    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @classmethod
    def look(
        cls,
        store: JournalStore,
        instance_id: str,
        journal_status: str,
        inbox_ids: set[str] | None = None,
    ) -> _Live:
        """Ask the store; ``inbox_ids`` (:meth:`JournalStore.inbox_ids`) saves asking
        instances without an inbox for their messages."""
        holder = store.holder(instance_id)
        has_inbox = inbox_ids is None or instance_id in inbox_ids
        pending = store.pending(instance_id) if has_inbox else []
        status = journal_status
        if status == "running" and any(m.action == "pause" for m in pending):
            status = "waitingForPause"
        return cls(
            status=status,
            interrupted=journal_status == "running" and holder is None,
            holder=holder,
            pending_messages=tuple(m.action for m in pending),
        )


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """An instance as ``wf list`` shows it: its status without the steps.

    ``status`` is one of Cloudflare's statuses. ``interrupted`` is true when the
    journal says ``running`` but no process holds the instance (it crashed);
    ``wf resume`` recovers it. A pause requested while a step is in flight
    shows as ``waitingForPause``.
    """

    journal: JournalSummary
    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @classmethod
    def _of(cls, journal: JournalSummary, live: _Live) -> InstanceSummary:
        return cls(journal, live.status, live.interrupted, live.holder, live.pending_messages)

    @property
    def id(self) -> str:
        return self.journal.instance_id

    @property
    def workflow(self) -> str:
        return self.journal.workflow

    @property
    def created(self) -> datetime:
        return self.journal.created

    @property
    def started(self) -> datetime | None:
        return self._time_shown("started")

    @property
    def ended(self) -> datetime | None:
        return self._time_shown("ended")

    def _time_shown(self, key: str) -> datetime | None:
        text = self.journal.shown[key]
        return None if text is None else parse_time(cast(str, text))

    @property
    def output(self) -> JsonValue:
        return self.journal.shown["output"]

    @property
    def error(self) -> ErrorInfo | None:
        error = self.journal.shown["error"]
        return None if not isinstance(error, dict) else ErrorInfo(**cast(dict[str, str], error))

    @property
    def waiting(self) -> WaitInfo | None:
        return self.journal.waiting if self.status == "waiting" else None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, JsonValue]:
        """The document of ``wf list --json`` (schema in ``docs/cli-json.md``)."""
        shown = self.journal.shown
        wait = self.waiting
        return {
            "id": self.journal.instance_id,
            "workflow": self.journal.workflow,
            "status": self.status,
            "interrupted": self.interrupted,
            "params": shown["params"],
            "output": shown["output"],
            "error": shown["error"],
            "created": shown["created"],
            "started": shown["started"],
            "ended": shown["ended"],
            "waiting": None
            if wait is None
            else {
                "kind": wait.kind,
                "step": wait.step,
                "until": format_time(wait.until),
                "event_type": wait.event_type,
            },
            "holder": None
            if self.holder is None
            else {"pid": self.holder.pid, "host": self.holder.host},
            "pending": list(self.pending_messages),
            "warnings": list(cast(list[str], shown["warnings"])),
        }


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """A snapshot of an instance as ``wf status`` shows it: its summary and its steps.

    ``status``, ``interrupted``, ``holder`` and ``pending_messages`` mean what
    they mean in :class:`InstanceSummary`.
    """

    state: InstanceState
    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.state.instance_id

    @property
    def workflow(self) -> str:
        return self.state.workflow

    @property
    def output(self) -> JsonValue:
        return self.state.output

    @property
    def error(self) -> ErrorInfo | None:
        return self.state.error

    @property
    def waiting(self) -> WaitInfo | None:
        return self.state.waiting if self.status == "waiting" else None

    @property
    def steps(self) -> list[StepState]:
        return self.state.ordered_steps()

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def summary(self) -> InstanceSummary:
        """The same snapshot without the steps."""
        return InstanceSummary(
            JournalSummary.of(self.state),
            self.status,
            self.interrupted,
            self.holder,
            self.pending_messages,
        )

    def to_json(self, *, steps: bool = True) -> dict[str, JsonValue]:
        """The document of ``wf status --json`` (schema in ``docs/cli-json.md``):
        :meth:`InstanceSummary.to_json` plus the steps."""
        document = self.summary().to_json()
        if steps:
            document["steps"] = [_step_json(step) for step in self.steps]
        return document
