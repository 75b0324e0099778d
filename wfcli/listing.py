"""The instance index: what ``wf list`` and a worker's scan need of each instance.

Listing a store means knowing every instance's status, and only its journal
says that. Reading and folding every journal each time costs ~0.15 ms per
instance; the index keeps a summary of each journal in the store's cache with
the journal version it was folded from (:meth:`JournalStore.journal_versions`),
so a listing reads again only the journals that changed since the last one.

An entry whose version no longer matches is never used; an index that is
missing, damaged or written by another wfcli is ignored and rebuilt. It only
ever saves time: the journals stay the one source of truth.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from .codec import ErrorInfo, JsonValue, format_time, parse_time
from .errors import InstanceNotFoundError, JournalCorruptError
from .journal import JournalStore
from .state import STATUSES, InstanceState, Status, WaitInfo, fold

__all__ = ["INDEX_NAME", "InstanceIndex", "JournalSummary"]

INDEX_NAME = "instances-v1.json"
_WAIT_KINDS = ("sleep", "retry", "event")


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What an instance's journal says about it, without its steps."""

    instance_id: str
    workflow: str
    status: Status
    params: JsonValue
    output: JsonValue
    error: ErrorInfo | None
    created: datetime
    started: datetime | None
    ended: datetime | None
    waiting: WaitInfo | None
    warnings: tuple[str, ...]
    event_ready: bool
    """It waits for an event of a type that has one buffered already."""

    @classmethod
    def of(cls, state: InstanceState) -> JournalSummary:
        wait = state.waiting
        return cls(
            instance_id=state.instance_id,
            workflow=state.workflow,
            status=state.status,
            params=state.params,
            output=state.output,
            error=state.error,
            created=state.created,
            started=state.started,
            ended=state.ended,
            waiting=wait,
            warnings=tuple(warning.message for warning in state.warnings),
            event_ready=wait is not None
            and wait.event_type is not None
            and bool(state.buffered_events(wait.event_type)),
        )

    def to_json(self) -> dict[str, JsonValue]:
        """The summary as an index entry (``from_json`` reverses it)."""
        wait = self.waiting
        return {
            "workflow": self.workflow,
            "status": self.status,
            "params": self.params,
            "output": self.output,
            "error": None if self.error is None else self.error.to_json(),
            "created": format_time(self.created),
            "started": _optional_time_text(self.started),
            "ended": _optional_time_text(self.ended),
            "waiting": None
            if wait is None
            else [wait.kind, wait.step, format_time(wait.until), wait.event_type],
            "warnings": list(self.warnings),
            "event_ready": self.event_ready,
        }

    @classmethod
    def from_json(cls, instance_id: str, document: Any) -> JournalSummary:
        """Raises ValueError, TypeError or KeyError if ``document`` is not an index entry."""
        status = document["status"]
        if status not in STATUSES:
            raise ValueError(f"status {status!r}")
        error = document["error"]
        wait = document["waiting"]
        warnings = document["warnings"]
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise TypeError("warnings")
        return cls(
            instance_id=instance_id,
            workflow=_text(document["workflow"]),
            status=status,
            params=document["params"],
            output=document["output"],
            error=None
            if error is None
            else ErrorInfo(_text(error["name"]), _text(error["message"])),
            created=parse_time(_text(document["created"])),
            started=_optional_time(document["started"]),
            ended=_optional_time(document["ended"]),
            waiting=None if wait is None else _wait(*wait),
            warnings=tuple(warnings),
            event_ready=document["event_ready"] is True,
        )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _optional_time_text(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _optional_time(value: object) -> datetime | None:
    return None if value is None else parse_time(_text(value))


def _wait(kind: object, step: object, until: object, event_type: object) -> WaitInfo:
    if kind not in _WAIT_KINDS:
        raise ValueError(f"wait kind {kind!r}")
    return WaitInfo(
        cast(Any, kind),
        _text(step),
        parse_time(_text(until)),
        None if event_type is None else _text(event_type),
    )


_Entry = tuple[str, JournalSummary]  # the journal version it was folded from, and the summary


class InstanceIndex:
    """Summaries of a store's instances, brought up to date on each look."""

    def __init__(self, store: JournalStore) -> None:
        self._store = store
        self._entries: dict[str, _Entry] | None = None
        self._changed = False

    def summaries(self, damaged: list[JournalCorruptError] | None = None) -> list[JournalSummary]:
        """Every instance's summary; journals changed since the last look are read again.

        A damaged journal raises :class:`JournalCorruptError`, unless ``damaged``
        is given: then it is left out and its error appended there (damaged
        journals are never indexed, so they are reported on every look).
        """
        versions = self._store.journal_versions()
        known = self._known()
        current: dict[str, _Entry] = {}
        for instance_id in sorted(versions):
            version = versions[instance_id]
            entry = known.get(instance_id)
            if entry is None or entry[0] != version:
                # The version was taken before this read: if the journal grows in
                # between, the entry is newer than its version and is re-read next time.
                try:
                    entry = (version, JournalSummary.of(fold(self._store.read(instance_id))))
                except JournalCorruptError as error:
                    if damaged is None:
                        raise
                    damaged.append(error)
                    continue
                except InstanceNotFoundError:
                    continue  # deleted since the versions were taken
                self._changed = True
            current[instance_id] = entry
        if current.keys() != known.keys():
            self._changed = True
        self._entries = current
        return [summary for _, summary in current.values()]

    def save(self) -> None:
        """Keep the index in the store's cache, if it changed since it was loaded.

        A store that cannot take it (read-only, full) still lists, only slower.
        """
        if not self._changed or self._entries is None:
            return
        document = {
            "instances": {
                instance_id: [version, summary.to_json()]
                for instance_id, (version, summary) in self._entries.items()
            }
        }
        data = json.dumps(document, separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            self._store.save_cache(INDEX_NAME, data)
            self._changed = False

    def _known(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, _Entry]:
        try:
            data = self._store.load_cache(INDEX_NAME)
        except OSError:
            return {}  # unreadable: listed from the journals, as if there were none
        if data is None:
            return {}
        try:
            document = json.loads(data)
            return {
                instance_id: (_text(version), JournalSummary.from_json(instance_id, summary))
                for instance_id, (version, summary) in document["instances"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return {}  # damaged or foreign: rebuilt from the journals
