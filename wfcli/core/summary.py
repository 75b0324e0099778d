"""Summaries of instances: what a journal says (:class:`JournalSummary`) and what the
lease and the inbox add (:class:`InstanceSummary`), as ``wf list`` shows them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from wfcli.core.codec import (
    Diverged,
    ErrorInfo,
    JsonValue,
    format_optional_time,
    format_time,
    parse_time,
)
from wfcli.core.owner import Owner
from wfcli.core.state import TERMINAL_STATUSES, InstanceState, Status, WaitInfo

__all__ = ["SHOWN_KEYS", "InstanceSummary", "JournalSummary", "divergence_json", "shown_status"]


def divergence_json(record: Diverged) -> dict[str, JsonValue]:
    """Why an instance is paused as diverged, as ``--json`` shows it."""
    return {
        "kind": record.kind,
        "step": record.step,
        "position": record.position,
        "expected": record.expected,
        "found": record.found,
        "at": format_time(record.at),
    }


# The keys of ``JournalSummary.shown``, in the order `wf list --json` prints them; the
# last five only where they apply (a version recorded, patches decided, a divergence,
# a priority, a schedule that started it).
SHOWN_KEYS = (
    "params",
    "output",
    "error",
    "created",
    "started",
    "ended",
    "warnings",
    "version",
    "patches",
    "divergence",
    "priority",
    "schedule",
)


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What an instance's journal says about it, without its steps.

    ``shown`` holds the rest as ``wf list --json`` prints it (times as text), so a
    listing from the index neither parses nor formats them; only its
    :data:`SHOWN_KEYS` are read.
    """

    instance_id: str
    workflow: str
    status: Status
    created: datetime
    waiting: WaitInfo | None
    event_ready: bool
    """It waits for an event of a type that has one buffered already."""
    shown: dict[str, JsonValue]

    @classmethod
    def of(cls, state: InstanceState) -> JournalSummary:
        wait = state.waiting
        return cls(
            instance_id=state.instance_id,
            workflow=state.workflow,
            status=state.status,
            created=state.created,
            waiting=wait,
            event_ready=wait is not None
            and wait.event_type is not None
            and bool(state.buffered_events(wait.event_type)),
            shown={
                "params": state.shown_params,
                "output": state.output,
                "error": None if state.error is None else state.error.to_json(),
                "created": format_time(state.created),
                "started": format_optional_time(state.started),
                "ended": format_optional_time(state.ended),
                "warnings": [warning.message for warning in state.warnings],
                "version": state.version,
                "patches": {name: patch.applied for name, patch in state.patches.items()},
                "divergence": None
                if state.divergence is None
                else divergence_json(state.divergence),
                "priority": state.priority,
                "schedule": state.schedule,
            },
        )


def shown_status(journal_status: Status, holder: Owner | None, pending: Iterable[str]) -> str:
    """The status people see: a pause requested of a running instance shows as
    ``waitingForPause``; otherwise the journal's."""
    if journal_status == "running" and "pause" in pending:
        return "waitingForPause"
    return journal_status


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
    holder: Owner | None
    pending_messages: tuple[str, ...]

    @classmethod
    def of(
        cls, journal: JournalSummary, holder: Owner | None, pending: tuple[str, ...]
    ) -> InstanceSummary:
        """The summary of a journal whose lease ``holder`` (None: nobody) and inbox
        (``pending``: the actions of its unapplied messages, oldest first) were looked up."""
        return cls(
            journal,
            shown_status(journal.status, holder, pending),
            journal.status == "running" and holder is None,
            holder,
            pending,
        )

    def is_due(self, now: datetime) -> bool:
        """Whether a worker should execute it at ``now``: nobody holds it and it is
        queued, interrupted, has unapplied messages, or its wait is over (its time has
        come or the event it waits for is buffered)."""
        if self.holder is not None:
            return False
        journal = self.journal
        if self.pending_messages or journal.status == "queued" or self.interrupted:
            return True
        wait = journal.waiting
        if journal.status != "waiting" or wait is None:
            return False
        return wait.until <= now or journal.event_ready

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
    def version(self) -> str | None:
        """The workflow's ``version`` when the instance was created, if it had one."""
        return cast("str | None", self.journal.shown["version"])

    @property
    def priority(self) -> int:
        """``wf run --priority``: workers admit higher numbers first."""
        # A summary saved by a wfcli from before priorities has none.
        return cast(int, self.journal.shown.get("priority") or 0)

    @property
    def schedule(self) -> JsonValue:
        """For an instance a schedule started: its schedule, cron and scheduled time."""
        return self.journal.shown.get("schedule")

    @property
    def patches(self) -> dict[str, bool]:
        """Each patch the instance decided, and whether it took the new branch."""
        return cast(dict[str, bool], self.journal.shown["patches"])

    @property
    def divergence(self) -> dict[str, JsonValue] | None:
        """Why the instance is paused, when its code no longer fit its history."""
        return cast("dict[str, JsonValue] | None", self.journal.shown["divergence"])

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, JsonValue]:
        """The document of ``wf list --json`` (schema in ``docs/cli-json.md``)."""
        shown = self.journal.shown
        wait = self.waiting
        document: dict[str, JsonValue] = {
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
            "waiting": None if wait is None else wait.to_json(),
            "holder": None
            if self.holder is None
            else {"pid": self.holder.pid, "host": self.holder.host},
            "pending": list(self.pending_messages),
            "warnings": list(cast(list[str], shown["warnings"])),
        }
        if self.version is not None:
            document["version"] = self.version
        if self.patches:
            document["patches"] = dict(self.patches)
        if self.divergence is not None:
            document["divergence"] = dict(self.divergence)
        if self.priority:
            document["priority"] = self.priority
        if self.schedule is not None:
            document["schedule"] = self.schedule
        return document
