"""The store contract: what every journal store (memory, files, PostgreSQL) provides.

A store keeps, per instance, a *journal* (its records, in order), an *inbox* (messages
from other processes: events, pause, resume, terminate, restart) and a *lease* (who
executes it now). The rules that make wfcli durable:

* Only the holder of an instance's :class:`Lease` appends to its journal, so a
  journal never has two writers. Other processes talk to the instance through its
  inbox (:meth:`JournalStore.post`); the lease holder moves messages into the
  journal and then discards them.
* A record counts once the store has it whole. A record cut short by a crash is
  ignored on read and dropped before the next append; damage anywhere else raises
  :class:`JournalCorruptError` and nothing is written. Every store checks journals
  with the same rules (:mod:`wfcli.store.validation`).
* A lease can be lost (a database store's lease expires when its holder stops
  renewing it). A lost lease never writes again: every call on it raises
  :class:`LeaseLostError` and changes nothing, and the engine stops the run at once.

Every method may be called from several processes, and from several threads of one
process, at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Union

from wfcli.core.codec import Created, InboxMessage, JsonValue, Record
from wfcli.core.owner import Owner
from wfcli.core.state import STATUSES, fold
from wfcli.core.summary import InstanceSummary, JournalSummary
from wfcli.errors import (
    InstanceBusyError,
    InstanceNotFoundError,
    JournalCorruptError,
    StoreFaultError,
    WorkflowInputError,
)

if TYPE_CHECKING:
    from wfcli.core.admission import Budget, ConcurrencyLimit
    from wfcli.store.health import StoreReport

__all__ = ["Claim", "Damage", "JournalStore", "Lease", "ListQuery", "Listing", "Owner"]

_PROCESS_ADMISSION = threading.Lock()
_BRIEF_LEASE_SECONDS = 0.5  # what acquire_patiently waits out: a poster applying its message
_BUSY_RETRY_INTERVAL_SECONDS = 0.005

Damage = Union[JournalCorruptError, StoreFaultError]  # noqa: UP007 (evaluated at runtime)
"""Why one instance could not be listed: its files are damaged, or could not be read."""


class Lease(ABC):
    """The exclusive right to write one instance's journal, held by :attr:`owner`.

    Calls may come from several threads at once (parallel steps append from their
    own threads): the lease serialises them. Once :meth:`release` was called, or the
    lease was lost, :meth:`append` and :meth:`discard` raise and write nothing.
    """

    instance_id: str
    owner: Owner

    @abstractmethod
    def read(self) -> list[Record]:
        """All complete records of the journal, in order (the holder's view)."""

    @abstractmethod
    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        """Append ``records`` at the end of the journal, after every earlier append.

        Atomic per call: either all of ``records`` become the journal's next records,
        in order, or none does. With ``sync`` (and a durable store) they are on
        stable storage when this returns. Records appended without ``sync`` may be
        lost in a crash, but never reordered after a later synced record.
        Raises :class:`LeaseLostError` if the lease is no longer this owner's.
        """

    @abstractmethod
    def pending(self) -> list[InboxMessage]:
        """Inbox messages not yet discarded, in the order they were posted."""

    @abstractmethod
    def discard(self, message_ids: Sequence[str]) -> None:
        """Remove messages from the inbox (after their effect is journaled); IDs that
        are not there are ignored."""

    @abstractmethod
    def delete_instance(self) -> None:
        """Remove the instance's journal and inbox; the lease is released."""

    @abstractmethod
    def release(self) -> None:
        """Give up the lease; idempotent. :meth:`JournalStore.holder` says None from then on."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Which instances :meth:`JournalStore.list_instances` returns.

    ``workflow`` and ``statuses`` (shown statuses, as ``wf list`` prints them, so
    ``waitingForPause`` too) narrow the listing; ``due_at`` keeps only instances a
    worker should execute at that time (:meth:`InstanceSummary.is_due`) and lists
    them oldest first, where every other listing is newest first (by creation time,
    then ID); ``limit`` keeps the first that many.
    """

    workflow: str | None = None
    statuses: frozenset[str] = frozenset()
    due_at: datetime | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        unknown = self.statuses - set(STATUSES)
        if unknown:
            raise WorkflowInputError(
                "status", f"{sorted(unknown)[0]!r} is not one of {', '.join(STATUSES)}"
            )
        if self.limit is not None and self.limit < 1:
            raise WorkflowInputError("limit", f"must be at least 1, got {self.limit}")

    def matches(self, summary: InstanceSummary) -> bool:
        """Whether ``summary`` belongs in the listing (before ordering and the limit)."""
        if self.workflow is not None and summary.workflow != self.workflow:
            return False
        if self.statuses and summary.status not in self.statuses:
            return False
        return self.due_at is None or summary.is_due(self.due_at)

    def select(self, summaries: Iterable[InstanceSummary]) -> list[InstanceSummary]:
        """The matching summaries, in the query's order, cut at its limit."""
        found = [summary for summary in summaries if self.matches(summary)]
        found.sort(key=lambda s: (s.created, s.id), reverse=self.due_at is None)
        return found[: self.limit] if self.limit is not None else found


@dataclass(frozen=True, slots=True)
class Listing:
    """What :meth:`JournalStore.list_instances` found: the instances, and those it could
    not read (left out of ``instances``, reported on every listing)."""

    instances: list[InstanceSummary]
    damaged: list[Damage]


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`JournalStore.claim_due` took: leases to execute, oldest first, and the
    instances it could not read while looking (a store that claims without reading
    journals reports none)."""

    leases: list[Lease]
    damaged: list[Damage]


class JournalStore(ABC):
    """Where the journals, inboxes and leases of instances are kept.

    Subclasses implement the abstract methods; :meth:`list_instances` has a default
    that reads and folds every journal, which a store overrides when it can answer
    from an index or a query.
    """

    durable: bool
    """Whether a synced append survives a crash of the machine (fsync, a commit)."""

    @abstractmethod
    def location(self) -> str:
        """Where the store is, for people (a folder, a URL without its password)."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release what the store holds open (a database store's connections); a lease
        still held expires. Nothing else may be called afterwards. This default has
        nothing to release."""

    @abstractmethod
    def create(self, record: Created) -> None:
        """Atomically create a journal whose first record is ``record``.

        Raises :class:`InstanceExistsError` (and writes nothing) if the ID is taken;
        of many concurrent creators of one ID exactly one succeeds.
        """

    @abstractmethod
    def read(self, instance_id: str) -> list[Record]:
        """The complete records of a journal, without taking its lease.

        A reader racing an append sees the journal before or after each appended
        call's records, never part of one. Raises :class:`InstanceNotFoundError`
        or :class:`JournalCorruptError`.
        """

    def read_after(self, instance_id: str, known: int) -> list[Record]:
        """The records after the first ``known`` of the journal: ``read(instance_id)[known:]``.

        For a reader that follows a journal as it grows (``wf timeline --follow``), called
        with the number of records it has so far. This default reads the whole journal; a
        store overrides it to read only the lines after those. Raises as :meth:`read`.
        """
        return self.read(instance_id)[known:]

    @abstractmethod
    def instance_ids(self) -> list[str]:
        """The IDs of every instance, sorted."""

    @abstractmethod
    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        """Take the instance's lease without waiting for a holder to finish.

        Raises :class:`InstanceBusyError` naming the holder, or
        :class:`InstanceNotFoundError`.
        """

    def acquire_patiently(self, instance_id: str, owner: Owner) -> Lease:
        """:meth:`acquire`, trying again for a moment while the instance is busy.

        For an operator's own command: a process that posts a message applies it
        under a lease held for milliseconds, which must not make ``wf resume`` or
        ``wf delete`` at that moment fail as busy. Claims use :meth:`acquire` (a
        busy instance is passed over at once). Raises as :meth:`acquire`.
        """
        deadline = time.monotonic() + _BRIEF_LEASE_SECONDS
        while True:
            try:
                return self.acquire(instance_id, owner)
            except InstanceBusyError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(_BUSY_RETRY_INTERVAL_SECONDS)

    @abstractmethod
    def holder(self, instance_id: str) -> Owner | None:
        """Who holds the lease now, or None.

        None as soon as the holder released it *or died*: an instance whose journal
        says ``running`` while nobody holds it is shown as interrupted and recovered
        by a worker, so a dead holder must not keep it (a file lock dies with its
        process; a database lease expires). Raises :class:`JournalCorruptError` if
        the lease is held but the store cannot say by whom.
        """

    @abstractmethod
    def post(self, instance_id: str, message: InboxMessage) -> None:
        """Durably add a message to the inbox, after every message posted before it.

        Raises :class:`InstanceNotFoundError`.
        """

    @abstractmethod
    def pending(self, instance_id: str) -> list[InboxMessage]:
        """Inbox messages not yet applied, in the order they were posted (read-only,
        no lease); an unknown instance has none."""

    def list_instances(self, query: ListQuery) -> Listing:
        """The instances ``query`` selects, as summaries with their holder and inbox.

        A journal that cannot be read is left out and its error put in
        :attr:`Listing.damaged`. This default reads and folds every journal.
        """
        journals: list[JournalSummary] = []
        damaged: list[Damage] = []
        for instance_id in self.instance_ids():
            try:
                journals.append(JournalSummary.of(fold(self.read(instance_id))))
            except (JournalCorruptError, StoreFaultError) as error:
                damaged.append(error)
            except InstanceNotFoundError:
                continue  # deleted since the IDs were listed
        return self.listing(query, journals, damaged)

    def listing(
        self,
        query: ListQuery,
        journals: Iterable[JournalSummary],
        damaged: list[Damage],
        has_inbox: Callable[[str], bool] | None = None,
    ) -> Listing:
        """The :class:`Listing` of ``journals`` for ``query``: each of its workflow with
        its holder and inbox looked up (one whose lease or inbox cannot be read joins
        ``damaged``). ``has_inbox`` lets a store that knows which instances have no
        message skip asking the others'."""
        summaries: list[InstanceSummary] = []
        for journal in journals:
            if query.workflow is not None and journal.workflow != query.workflow:
                continue
            instance_id = journal.instance_id
            try:
                holder = self.holder(instance_id)
                asked = has_inbox is None or has_inbox(instance_id)
                messages = self.pending(instance_id) if asked else []
            except (JournalCorruptError, StoreFaultError) as error:
                damaged.append(error)
                continue
            pending = tuple(message.action for message in messages)
            summaries.append(InstanceSummary.of(journal, holder, pending))
        return Listing(query.select(summaries), damaged)

    def claim_due(
        self,
        now: datetime,
        owner: Owner,
        limit: int,
        *,
        skip: Collection[str] = (),
        limits: Mapping[str, ConcurrencyLimit] | None = None,
    ) -> Claim:
        """Leases for ``owner`` on up to ``limit`` instances due at ``now``, leaving out
        the IDs in ``skip``: higher priority first, then oldest first.

        What a worker calls for work: an instance another worker claims first is left
        out, never waited for. ``limits`` are the workflows' concurrency and rate
        limits (:mod:`wfcli.core.admission`): an instance over one is left ``queued``,
        and the limits hold across every process that claims with them, because the
        whole claim runs under :meth:`admission_lock`. This default lists what is due
        (reporting what it could not read in :attr:`Claim.damaged`) and acquires each
        in turn; a database store claims without limits in one statement.
        """
        # Only claims need admission, not reads: imported here.
        from wfcli.core.admission import Budget, admission_order

        if not limits:
            listing = self.list_instances(ListQuery(due_at=now))
            return self._acquire_in_order(
                admission_order(listing.instances), owner, limit, skip, listing.damaged, now=now
            )
        with self.admission_lock():
            listing = self.scan(now, limits)
            budget = Budget(limits, listing.instances, now)
            due = admission_order(s for s in listing.instances if s.is_due(now))
            return self._acquire_in_order(
                due, owner, limit, skip, listing.damaged, now=now, budget=budget
            )

    def _acquire_in_order(
        self,
        due: Iterable[InstanceSummary],
        owner: Owner,
        limit: int,
        skip: Collection[str],
        damaged: list[Damage],
        *,
        now: datetime,
        budget: Budget | None = None,
    ) -> Claim:
        """Leases on the first ``limit`` of ``due`` (in admission order) that can be taken."""
        leases: list[Lease] = []
        for summary in due:
            if len(leases) == limit:
                break
            if summary.id in skip or (budget is not None and budget.blocked(summary)):
                continue
            lease = self._claim_one(summary, now, owner, damaged)
            if lease is None:
                continue
            leases.append(lease)
            if budget is not None:
                budget.take(summary)
        return Claim(leases, damaged)

    def _claim_one(
        self, summary: InstanceSummary, now: datetime, owner: Owner, damaged: list[Damage]
    ) -> Lease | None:
        """A lease on ``summary``'s instance, if nobody holds it and it is still due; a
        lock or journal that cannot be read goes to ``damaged``."""
        try:
            lease = self.acquire(summary.id, owner)
        except (InstanceBusyError, InstanceNotFoundError):
            return None
        except (JournalCorruptError, StoreFaultError) as error:
            damaged.append(error)
            return None
        keep = False
        try:
            keep = self.still_due(lease, summary, now)
        except (JournalCorruptError, StoreFaultError) as error:
            damaged.append(error)
        finally:
            if not keep:
                lease.release()
        return lease if keep else None

    def still_due(self, lease: Lease, listed: InstanceSummary, now: datetime) -> bool:
        """Whether an instance a claim just took ``lease`` on is still due at ``now``.

        ``listed`` is its summary in the listing the claim went by, which another
        process may have made stale by executing the instance in between (it is then
        finished, or waits): the claim gives such a lease back instead of handing out
        an instance with nothing to do. This default reads the journal and the inbox
        again; a store that can tell cheaply that neither changed since ``listed`` was
        read overrides it. Raises as :meth:`read`.
        """
        journal = JournalSummary.of(fold(lease.read()))
        pending = tuple(message.action for message in lease.pending())
        return InstanceSummary.of(journal, None, pending).is_due(now)

    def scan(self, now: datetime, limits: Mapping[str, ConcurrencyLimit]) -> Listing:
        """The instances a worker's claim at ``now`` under ``limits`` looks at: at least every
        unfinished one, every one with mail, and the finished ones of workflows with a
        rate (they may count as starts). This default lists everything; a store may
        leave out the rest, and keeps nothing for later listings (the file store does
        not save its index at every claim)."""
        return self.list_instances(ListQuery())

    @contextlib.contextmanager
    def admission_lock(self) -> Iterator[None]:
        """Held while a claim with limits counts slots and takes leases: one claim at a
        time across every process using the store. This default serialises the threads
        of this process only, which is all a store in one process's memory has; stores
        shared between processes override it (a lock file, an advisory lock). A holder
        that dies must not keep it."""
        with _PROCESS_ADMISSION:
            yield

    @abstractmethod
    def schedule_states(self) -> dict[str, JsonValue]:
        """What :meth:`update_schedule_state` keeps, by schedule key (read-only)."""

    @abstractmethod
    def update_schedule_state(
        self, key: str, change: Callable[[JsonValue], JsonValue]
    ) -> JsonValue:
        """Replace a schedule's state (None at first) by ``change(state)``, atomically
        across every process using the store: one change at a time per store, so
        ``change`` may create the fire's instances knowing that no other worker
        evaluates a schedule meanwhile. Returns the new state. If ``change`` raises,
        the state stays as it was. The state only saves work: the fire IDs are the
        truth."""

    def import_journal(self, records: Sequence[Record]) -> None:
        """Create an instance whose journal is ``records`` (``created`` first), as
        ``wf import`` does; raises :class:`InstanceExistsError` and writes nothing if
        the ID is taken. This default creates, then appends the rest under a lease, so
        a crash between the two leaves a shorter journal; stores override it to write
        the whole journal at once."""
        first = records[0] if records else None
        if not isinstance(first, Created):
            raise JournalCorruptError(self.location(), 1, "first record is not 'created'")
        self.create(first)
        if len(records) > 1:
            with self.acquire(first.instance_id, Owner.current()) as lease:
                lease.append(records[1:])

    def check(self) -> StoreReport:
        """What ``wf doctor`` reports, read-only: damaged journals and what else the
        store can see. This default reads every journal and inbox."""
        from wfcli.store.health import check_journals  # only wf doctor needs it

        return check_journals(self)
