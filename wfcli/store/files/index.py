"""The file store's instance index: what ``wf list`` and a worker's scan need of each instance.

Listing a store means knowing every instance's status, and only its journal
says that. Reading and folding every journal each time costs ~0.15 ms per
instance; the index keeps a summary of each journal in the store's cache with
the journal version it was folded from (:meth:`FileStore.journal_versions`),
so a listing reads again only the journals that changed since the last one, and
in a worker not even those that its own leases changed last (their records are
folded as the lease left them).

An entry whose version no longer matches is never used; an index that is
missing, fails its checksum or was written by another wfcli is ignored and
rebuilt. It only ever saves time: the journals stay the one source of truth.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from typing import TYPE_CHECKING, Any

from wfcli.core.codec import JsonValue, format_time, parse_time
from wfcli.core.state import STATUSES, WaitInfo, fold
from wfcli.core.summary import SHOWN_KEYS, JournalSummary
from wfcli.errors import InstanceNotFoundError, JournalCorruptError, StoreFaultError

if TYPE_CHECKING:
    from wfcli.store.contract import Damage
    from wfcli.store.files.store import FileStore

__all__ = ["INDEX_NAME", "InstanceIndex"]

INDEX_NAME = "instances-v1.json"
_WAIT_KINDS = ("sleep", "retry", "event", "instance")


_ENTRY_KEYS = frozenset({"workflow", "status", "waiting", "event_ready", *SHOWN_KEYS})


def _entry(summary: JournalSummary) -> dict[str, JsonValue]:
    """A summary as an index entry (:func:`_summary` reverses it)."""
    wait = summary.waiting
    return {
        "workflow": summary.workflow,
        "status": summary.status,
        "waiting": None
        if wait is None
        else [wait.kind, wait.step, format_time(wait.until), wait.event_type],
        "event_ready": summary.event_ready,
        **{key: summary.shown[key] for key in SHOWN_KEYS},
    }


def _summary(instance_id: str, document: Any) -> JournalSummary:
    """Raises ValueError, TypeError or KeyError if ``document`` is not an index entry.

    The index file's checksum vouches for the entry's content, so only its
    shape is checked here.
    """
    if not document.keys() >= _ENTRY_KEYS:
        raise KeyError(sorted(_ENTRY_KEYS - document.keys())[0])
    status = document["status"]
    if status not in STATUSES:
        raise ValueError(f"status {status!r}")
    wait = document["waiting"]
    return JournalSummary(
        instance_id=instance_id,
        workflow=document["workflow"],
        status=status,
        created=parse_time(document["created"]),
        waiting=None if wait is None else _wait(*wait),
        event_ready=document["event_ready"] is True,
        shown=document,  # has more keys than SHOWN_KEYS: only those are read
    )


def _wait(kind: Any, step: str, until: str, event_type: str | None) -> WaitInfo:
    if kind not in _WAIT_KINDS:
        raise ValueError(f"wait kind {kind!r}")
    return WaitInfo(kind, step, parse_time(until), event_type)


def _checksum(payload: bytes) -> bytes:
    # Against damage, not tampering (the store is private to its owner), and it
    # loads no crypto library at start-up as hashlib would.
    return b"%08x" % zlib.crc32(payload)


_Entry = tuple[str, JournalSummary]  # the journal version it was folded from, and the summary


class InstanceIndex:
    """Summaries of a store's instances, brought up to date on each look."""

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self._entries: dict[str, _Entry] | None = None
        self._changed = False

    def summaries(self, damaged: list[Damage] | None = None) -> list[JournalSummary]:
        """Every instance's summary; journals changed since the last look are read again.

        A damaged journal raises :class:`JournalCorruptError`, unless ``damaged``
        is given: then it is left out and its error appended there (damaged
        journals are never indexed, so they are reported on every look).
        """
        versions = self._store.journal_versions()
        known = self._known()
        current: dict[str, _Entry] = {}
        for instance_id in sorted(versions):
            try:
                entry = self._fresh(instance_id, versions[instance_id], known.get(instance_id))
            except (JournalCorruptError, StoreFaultError) as error:
                if damaged is None:
                    raise
                damaged.append(error)
                continue
            if entry is not None:
                current[instance_id] = entry
        if current.keys() != known.keys():
            self._changed = True
        self._entries = current
        self._store.forget_leases()
        return [summary for _, summary in current.values()]

    def indexed(self) -> list[JournalSummary]:
        """The summaries as the last look left them, none read again (they may be stale)."""
        return [summary for _, summary in self._known().values()]

    def ids(self) -> set[str]:
        """The IDs of the instances indexed."""
        return set(self._known())

    def summary(self, instance_id: str) -> JournalSummary | None:
        """The instance's summary as the last look left it, None if it is not indexed."""
        entry = self._known().get(instance_id)
        return None if entry is None else entry[1]

    def refresh(self, instance_id: str) -> JournalSummary | None:
        """One instance's summary, read again if its journal changed since it was indexed;
        None (and no entry) if the journal is gone. Raises as :meth:`FileStore.read` (the
        entry is dropped: damaged journals are never indexed)."""
        known = self._known()
        previous = known.pop(instance_id, None)
        version = self._store.journal_version(instance_id)
        entry = None if version is None else self._fresh(instance_id, version, previous)
        if entry is None:
            self._changed = True
            return None
        known[instance_id] = entry
        return entry[1]

    def version(self, instance_id: str) -> str | None:
        """The journal version the instance's summary was last folded from, None if none was."""
        entry = self._known().get(instance_id)
        return None if entry is None else entry[0]

    def _fresh(self, instance_id: str, version: str, entry: _Entry | None) -> _Entry | None:
        """``entry`` if it was folded from ``version``, else the journal folded again, as a
        lease of this process left it at ``version`` or as read now; None if it was
        deleted meanwhile."""
        if entry is not None and entry[0] == version:
            return entry
        records = self._store.left_by_lease(instance_id, version)
        try:
            if records is None:
                # The version was taken before this read: if the journal grows in
                # between, the entry is newer than its version and is read again next time.
                records = self._store.read(instance_id)
        except InstanceNotFoundError:
            return None
        entry = (version, JournalSummary.of(fold(records)))
        self._changed = True
        return entry

    def save(self) -> None:
        """Keep the index in the store's cache, if it changed since it was loaded.

        A store that cannot take it (read-only, full) still lists, only slower.
        """
        if not self._changed or self._entries is None:
            return
        document = {
            "instances": {
                instance_id: [version, _entry(summary)]
                for instance_id, (version, summary) in self._entries.items()
            }
        }
        payload = json.dumps(document, separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            self._store.save_cache(INDEX_NAME, _checksum(payload) + b"\n" + payload)
            self._changed = False

    def _known(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, _Entry]:
        """The saved index; empty if there is none or it is not whole (checksum) or not ours."""
        try:
            data = self._store.load_cache(INDEX_NAME)
        except OSError:
            return {}  # unreadable: listed from the journals, as if there were none
        if data is None:
            return {}
        checksum, _, payload = data.partition(b"\n")
        if checksum != _checksum(payload):
            return {}
        try:
            document = json.loads(payload)
            return {
                instance_id: (version, _summary(instance_id, summary))
                for instance_id, (version, summary) in document["instances"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return {}  # not an index this wfcli wrote: rebuilt from the journals
