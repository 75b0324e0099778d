"""What a file store's claims look at between two full listings.

A full listing reads every journal's version (one ``stat`` each) and looks up the
lock of every unfinished instance; a worker that claimed that way did it once per
instance it ran, so draining a queue of n instances cost O(n^2) system calls. A
:class:`ClaimQueue` keeps, between full listings, the index's instances that may be
due (queued, running, waiting: the others are due only with mail) in admission
order, and looks again only where the store can have changed under it:

* the journals its own last claim leased (this process ran them: the index folds
  the records their leases left, :meth:`FileStore.left_by_lease`, reading nothing);
* journals created or removed since its last look (one ``listdir`` of names);
* every instance with an inbox folder (its mail makes it due);
* an entry made stale by another process that executed its instance is caught when
  the claim takes its lease (:meth:`FileStore.still_due`: one ``fstat`` against the
  version the entry was read from), read again and put in or out of the queue.

Not seen until the next full listing (the claim lists in full at least every
:data:`FULL_SCAN_SECONDS`, and whenever the queue does not fill a claim, so a claim
that comes back short has looked at everything): an instance another process left
due without mail (a ``wf resume`` that crashed), a journal removed and created again
between two looks.
"""

from __future__ import annotations

import bisect
import heapq
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from wfcli.core.admission import admission_key
from wfcli.core.ids import instance_ids_of_files
from wfcli.core.summary import InstanceSummary, JournalSummary
from wfcli.errors import JournalCorruptError, StoreFaultError

if TYPE_CHECKING:
    from datetime import datetime

    from wfcli.store.contract import Damage
    from wfcli.store.files.index import InstanceIndex
    from wfcli.store.files.store import FileStore

__all__ = ["FULL_SCAN_SECONDS", "ClaimQueue"]

FULL_SCAN_SECONDS = 1.0
_MAYBE_DUE = frozenset({"queued", "running", "waiting"})
_SETTLED_NS = 1_000_000_000  # far more than any file system's timestamp granularity


class ClaimQueue:
    """The index's instances that may be due, in admission order, as of the last full
    listing and what was looked at since (see the module's docstring)."""

    def __init__(self, store: FileStore, index: InstanceIndex, journals: str) -> None:
        self._store = store
        self._index = index
        self._journals = journals  # the folder
        self._queue: list[InstanceSummary] = []  # in admission order
        self._keys: dict[str, tuple[int, datetime, str]] = {}  # ID -> its place in _queue
        self._journal_files: frozenset[str] | None = None  # at the last look
        self._settled_stamp: tuple[int, int] | None = None  # the folder's, if settled then
        self._claimed: set[str] = set()
        self._expires = 0.0

    @property
    def current(self) -> bool:
        """Whether a claim may go by the queue instead of a full listing."""
        return time.monotonic() < self._expires

    def rebuild(self, claimed: set[str]) -> None:
        """Rebuild from the index, just brought up to date by a full listing, after a
        claim that leased ``claimed``."""
        maybe_due = [
            InstanceSummary.of(journal, None, ())
            for journal in self._index.indexed()
            if journal.status in _MAYBE_DUE
        ]
        self._queue = sorted(maybe_due, key=admission_key)
        self._keys = {summary.id: admission_key(summary) for summary in self._queue}
        self._journal_files = None
        self._claimed = claimed
        self._expires = time.monotonic() + FULL_SCAN_SECONDS

    def claimed(self, instance_ids: set[str]) -> None:
        """The last claim leased these: read again at the next look."""
        self._claimed = instance_ids

    def due(self, now: datetime, damaged: list[Damage]) -> Iterator[InstanceSummary]:
        """The instances due at ``now`` as far as the queue knows, in admission order,
        lazily (a claim stops at its limit); who holds them is not looked up: taking
        the lease tells. What cannot be read goes to ``damaged``."""
        store = self._store
        for instance_id in self._claimed | self._journals_added_or_removed():
            try:
                self.refresh(instance_id)
            except (JournalCorruptError, StoreFaultError) as error:
                damaged.append(error)
        self._claimed = set()
        mailed: list[InstanceSummary] = []
        for instance_id in store.inbox_ids() & self._index.ids():
            try:
                messages = store.pending(instance_id)
                journal = self._index.summary(instance_id)
            except (JournalCorruptError, StoreFaultError) as error:
                damaged.append(error)
                continue
            if messages and journal is not None:
                pending = tuple(message.action for message in messages)
                mailed.append(InstanceSummary.of(journal, None, pending))
        mailed.sort(key=admission_key)
        with_mail = {summary.id for summary in mailed}
        queue = [s for s in self._queue if s.id not in with_mail] if mailed else self._queue
        # Taking a lease may refresh an entry (and change the queue): go by a copy.
        for summary in heapq.merge(list(queue), mailed, key=admission_key):
            if summary.is_due(now):
                yield summary

    def refresh(self, instance_id: str) -> JournalSummary | None:
        """:meth:`InstanceIndex.refresh`, keeping the queue in step."""
        key = self._keys.pop(instance_id, None)
        if key is not None:
            index = bisect.bisect_left(self._queue, key, key=admission_key)
            del self._queue[index]
        journal = self._index.refresh(instance_id)
        if journal is not None:
            self._insert(journal)
        return journal

    def _insert(self, journal: JournalSummary) -> None:
        if journal.status in _MAYBE_DUE:
            summary = InstanceSummary.of(journal, None, ())
            self._keys[summary.id] = admission_key(summary)
            bisect.insort(self._queue, summary, key=admission_key)

    def _journals_added_or_removed(self) -> set[str]:
        """IDs of the journals created or removed since the last look (at the first
        look after a full listing: those the index does not match).

        The folder is not listed again while its inode and mtime stay as they were at
        a look made well after that mtime (``_SETTLED_NS``): a file created or removed
        since moves the mtime past it, whatever the clock's granularity."""
        folder = self._journals
        try:
            info = os.stat(folder)
            stamp = (info.st_ino, info.st_mtime_ns)
            if self._journal_files is not None and stamp == self._settled_stamp:
                return set()
            files = frozenset(os.listdir(folder))
        except FileNotFoundError:
            stamp, files = None, frozenset()
        except OSError as error:
            raise StoreFaultError.of("list", folder, error) from None
        settled = stamp is not None and stamp[1] < time.time_ns() - _SETTLED_NS
        self._settled_stamp = stamp if settled else None
        before, self._journal_files = self._journal_files, files
        if before is None:
            named = instance_ids_of_files(files, ".jsonl")
            return self._index.ids().symmetric_difference(named)
        changed = before.symmetric_difference(files)
        return set(instance_ids_of_files(changed, ".jsonl"))
