"""The store contract: what every journal store (memory, files, PostgreSQL) provides.

:class:`JournalStore` is the contract every backend meets. The rules that make
wfcli durable live here:

* Only the holder of an instance's :class:`Lease` appends to its journal, so a
  journal never has two writers. Other processes talk to the instance through
  its *inbox* (:meth:`JournalStore.post`); the lease holder moves messages into
  the journal and then discards them.
* A record counts once its line, newline included, is in the journal. A torn
  last line (a crash mid-write) is ignored on read and cut off before the next
  append; damage anywhere else raises :class:`JournalCorruptError` and nothing
  is written.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from wfcli.core.codec import (
    Created,
    InboxMessage,
    Record,
)

__all__ = ["JournalStore", "Lease", "LockOwner"]


@dataclass(frozen=True, slots=True)
class LockOwner:
    """Who executes an instance: a process on a host."""

    pid: int
    host: str

    @classmethod
    def current(cls) -> LockOwner:
        return cls(pid=os.getpid(), host=os.uname().nodename)  # gethostname, without socket


class Lease(ABC):
    """Exclusive right to write one instance's journal; release it when done."""

    instance_id: str
    owner: LockOwner

    @abstractmethod
    def read(self) -> list[Record]:
        """All complete records of the journal, in order."""

    @abstractmethod
    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        """Append ``records`` at the end; with ``sync`` (and a durable store) they
        are on disk when this returns. Records appended without ``sync`` may be
        lost in a crash, but never reordered after a later synced record."""

    @abstractmethod
    def pending(self) -> list[InboxMessage]:
        """Inbox messages not yet discarded, oldest first."""

    @abstractmethod
    def discard(self, message_ids: Sequence[str]) -> None:
        """Remove messages from the inbox (after their effect is journaled)."""

    @abstractmethod
    def delete_instance(self) -> None:
        """Remove the instance's journal and inbox; the lease is released."""

    @abstractmethod
    def release(self) -> None:
        """Give up the lease; idempotent."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class JournalStore(ABC):
    """Where journals, locks and inboxes of instances are kept.

    Every method is safe to call from several processes (and threads) at once.
    """

    durable: bool

    @abstractmethod
    def location(self) -> str:
        """Where the store is, for people (a folder, a URL)."""

    @abstractmethod
    def create(self, record: Created) -> None:
        """Atomically create a journal whose first line is ``record``.

        Raises :class:`InstanceExistsError` (and writes nothing) if the ID is taken;
        of many concurrent creators of one ID exactly one succeeds.
        """

    @abstractmethod
    def exists(self, instance_id: str) -> bool:
        """Whether a journal with this ID exists."""

    @abstractmethod
    def read(self, instance_id: str) -> list[Record]:
        """The complete records of a journal, without taking its lock.

        Raises :class:`InstanceNotFoundError` or :class:`JournalCorruptError`.
        """

    @abstractmethod
    def instance_ids(self) -> list[str]:
        """IDs of every instance, sorted."""

    @abstractmethod
    def acquire(self, instance_id: str, owner: LockOwner) -> Lease:
        """Take the instance's lock without waiting for a holder to finish.

        Raises :class:`InstanceBusyError` naming the holder, or
        :class:`InstanceNotFoundError`.
        """

    @abstractmethod
    def holder(self, instance_id: str) -> LockOwner | None:
        """Who holds the lock now, or None."""

    @abstractmethod
    def post(self, instance_id: str, message: InboxMessage) -> None:
        """Durably add a message to the inbox; messages keep the order they were posted in."""

    @abstractmethod
    def pending(self, instance_id: str) -> list[InboxMessage]:
        """Inbox messages not yet applied, oldest first (read-only, no lock)."""

    @abstractmethod
    def inbox_ids(self) -> set[str]:
        """IDs whose inbox may hold messages: every ID with a pending message, maybe more.

        Lets a scan of many instances skip :meth:`pending` for the rest.
        """

    @abstractmethod
    def journal_versions(self) -> dict[str, str]:
        """Every instance's ID with a token that changes whenever its journal does.

        Reads no journal, so it costs far less than :meth:`read` of each.
        """

    @abstractmethod
    def load_cache(self, name: str) -> bytes | None:
        """Data kept by :meth:`save_cache`, or None. It may be stale or damaged:
        whoever saved it must be able to check it (see :meth:`journal_versions`)."""

    @abstractmethod
    def save_cache(self, name: str, data: bytes) -> None:
        """Keep derived data (an index) under ``name``, replacing what was there.

        Not durable and not journaled: losing it only costs time.
        """


def _check_cache_name(name: str) -> str:
    if not name.replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"bad cache name {name!r}")
    return name
