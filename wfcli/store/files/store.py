"""The file store: one JSON-lines journal per instance in a folder.

Layout and format in ``docs/journal-format.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from wfcli.core.codec import (
    Created,
    InboxMessage,
    Record,
    RecordError,
    encode_record,
)
from wfcli.core.ids import instance_id_of_file, validate_instance_id
from wfcli.core.summary import InstanceSummary
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
)
from wfcli.store.contract import JournalStore, Lease, Listing, ListQuery, Owner
from wfcli.store.files.index import InstanceIndex
from wfcli.store.health import StoreReport
from wfcli.store.validation import JournalRules, decode_journal

__all__ = ["DEFAULT_MAX_LINE_BYTES", "FileStore"]

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
_BUSY_RETRY_SECONDS = 0.1  # rides out a status probe holding the lock for microseconds


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sync_data = getattr(os, "fdatasync", os.fsync)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_inbox(folder: str, max_bytes: int) -> list[InboxMessage]:
    """The messages in an inbox folder, oldest first; each at most ``max_bytes`` long
    (a message becomes one journal line), so a hostile file cannot exhaust memory."""
    try:
        names = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except FileNotFoundError:
        return []
    messages = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as message:  # in place, a message file never changes
                if os.fstat(message.fileno()).st_size > max_bytes:
                    raise JournalCorruptError(path, 1, f"message longer than {max_bytes} bytes")
                text = message.read().decode("utf-8")
        except FileNotFoundError:
            continue  # applied and discarded by the lease holder meanwhile
        except UnicodeDecodeError:
            raise JournalCorruptError(path, 1, "not UTF-8") from None
        try:
            messages.append(InboxMessage.decode(text))
        except RecordError as error:
            raise JournalCorruptError(path, 1, error.reason) from None
    return messages


# A lock file holds its owner as one JSON line padded to a fixed size, so that a new
# owner's record replaces all of the old one in a single write.
_OWNER_RECORD_BYTES = 512
_OWNER_READ_TRIES = 50  # 2 ms apart: the holder writes its record right after locking


def _owner_record(owner: Owner) -> bytes:
    document = {"worker": owner.worker_id, "pid": owner.pid, "host": owner.host}
    return json.dumps(document).encode().ljust(_OWNER_RECORD_BYTES - 1) + b"\n"


def _read_owner(fd: int) -> Owner | None:
    """The owner a lock file names, or None while it names nobody (being written)."""
    try:
        document = json.loads(os.pread(fd, _OWNER_RECORD_BYTES, 0) or b"null")
        pid, host = int(document["pid"]), str(document["host"])
        # A lock taken by wfcli before worker IDs: pid and host are all it says.
        worker = str(document.get("worker") or f"{pid}@{host}")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return Owner(worker_id=worker, pid=pid, host=host)


def _held_by(fd: int, path: str) -> Owner | None:
    """Who holds the lock of lock file ``fd``, None if nobody; raises
    :class:`JournalCorruptError` if it stays held by someone its file never names
    (damaged by hand)."""
    for _ in range(_OWNER_READ_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            if owner is not None:
                return owner
            time.sleep(0.002)  # taken or given up this moment: its record is being written
            continue
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    raise JournalCorruptError(path, 1, "the lock is held but its file does not say by whom")


def _cache_name(name: str) -> str:
    if not name.replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"bad cache name {name!r}")
    return name


class _FileLease(Lease):
    def __init__(self, store: FileStore, instance_id: str, owner: Owner, lock_fd: int) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self._store = store
        self._lock_fd: int | None = lock_fd
        self._journal_path = store._journal_file(instance_id)
        self._inbox = store._inbox_folder(instance_id)  # looked at between every two steps
        self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND)
        self._valid_length: int | None = None
        self._record_count = 0
        self._tail_checked = False
        self._mutex = threading.Lock()  # parallel steps append from several threads
        self._rules = JournalRules(instance_id, self._journal_path)

    def read(self) -> list[Record]:
        records, self._valid_length = self._store.read_with_length(self.instance_id)
        self._record_count = len(records)
        return records

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        with self._mutex:
            if self._lock_fd is None:
                raise LeaseLostError(self.instance_id, "it was released")
            self._cut_torn_tail()
            first = self._record_count + 1
            for line_no, record in enumerate(records, start=first):
                self._rules.check(record, line_no)
            data = "".join(
                encode_record(record, number) + "\n"
                for number, record in enumerate(records, start=first)
            ).encode()
            self._record_count += len(records)
            _write_all(self._fd, data)
            if sync and self._store.durable:
                _sync_data(self._fd)

    def _cut_torn_tail(self) -> None:
        """Before the lease's first append, drop a torn last line left by a crash."""
        if self._tail_checked:
            return
        if self._valid_length is None:
            self.read()
        assert self._valid_length is not None
        if os.fstat(self._fd).st_size > self._valid_length:
            os.truncate(self._journal_path, self._valid_length)
        self._tail_checked = True

    def pending(self) -> list[InboxMessage]:
        return _read_inbox(self._inbox, self._store.max_line_bytes)

    def discard(self, message_ids: Sequence[str]) -> None:
        if self._lock_fd is None:
            raise LeaseLostError(self.instance_id, "it was released")
        wanted = {f"{message_id}.json" for message_id in message_ids}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._inbox):
                if entry.name.partition("-")[2] in wanted:
                    os.unlink(entry.path)

    def delete_instance(self) -> None:
        inbox = self._store.inbox_path(self.instance_id)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(inbox):
                os.unlink(entry.path)
            os.rmdir(inbox)
        os.unlink(self._journal_path)
        _fsync_dir(os.path.dirname(self._journal_path))
        self.release()

    def release(self) -> None:
        with self._mutex:
            if self._lock_fd is None:
                return
            os.close(self._fd)
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


class FileStore(JournalStore):
    """JSON-lines journals in a folder (see ``docs/journal-format.md``).

    Layout: ``journals/ID.jsonl``, ``locks/ID.lock`` (``flock`` target holding
    the owner's pid and host), ``inbox/ID/*.json`` (one file per message, written
    to a temporary name and renamed into place), ``cache/`` (indexes that only
    save time, see :meth:`save_cache`). Files are private to the owner.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        durable: bool = True,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.root = Path(root)
        # Paths as text: every status, list and step builds some, and pathlib is slow at it.
        self._journals = str(self.root / "journals")
        self._locks = str(self.root / "locks")
        self._inboxes = str(self.root / "inbox")
        self.durable = durable
        self.max_line_bytes = max_line_bytes
        self._last_order = 0
        self._order_mutex = threading.Lock()
        self._ready = False
        self._index: InstanceIndex | None = None

    def location(self) -> str:
        return str(self.root)

    # paths ------------------------------------------------------------------------

    def journal_path(self, instance_id: str) -> Path:
        return self.root / "journals" / f"{validate_instance_id(instance_id)}.jsonl"

    def lock_path(self, instance_id: str) -> Path:
        return self.root / "locks" / f"{validate_instance_id(instance_id)}.lock"

    def inbox_path(self, instance_id: str) -> Path:
        return self.root / "inbox" / validate_instance_id(instance_id)

    def _journal_file(self, instance_id: str) -> str:
        """:meth:`journal_path` as text."""
        return f"{self._journals}/{validate_instance_id(instance_id)}.jsonl"

    def _lock_file(self, instance_id: str) -> str:
        """:meth:`lock_path` as text."""
        return f"{self._locks}/{validate_instance_id(instance_id)}.lock"

    def _inbox_folder(self, instance_id: str) -> str:
        """:meth:`inbox_path` as text."""
        return f"{self._inboxes}/{validate_instance_id(instance_id)}"

    def _prepare(self) -> None:
        if self._ready:
            return
        # mkdir's mode is for the folder it makes, not for parents made on the way.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in ("journals", "locks", "inbox", "tmp"):
            (self.root / folder).mkdir(mode=0o700, exist_ok=True)
        self._ready = True

    def _write_new_file(self, folder: Path, data: bytes, *, sync: bool = True) -> Path:
        """Write ``data`` to a fresh private file in ``folder`` (fsynced if ``sync`` and
        the store is durable); a failed write leaves no file behind."""
        path = folder / f".tmp-{uuid.uuid4().hex}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                _write_all(fd, data)
                if sync and self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return path

    # contract -----------------------------------------------------------------------

    def create(self, record: Created) -> None:
        self.import_journal([record])

    def import_journal(self, records: Sequence[Record]) -> None:
        """The whole journal written to a temporary file, then linked into place."""
        record = records[0] if records else None
        if not isinstance(record, Created):
            raise JournalCorruptError(str(self.root), 1, "first record is not 'created'")
        target = self.journal_path(record.instance_id)
        rules = JournalRules(record.instance_id, str(target))
        for line_no, each in enumerate(records, start=1):
            rules.check(each, line_no)
        self._prepare()
        data = "".join(encode_record(each, n) + "\n" for n, each in enumerate(records, start=1))
        temporary = self._write_new_file(self.root / "tmp", data.encode())
        try:
            os.link(temporary, target)  # atomic, and never replaces an existing journal
        except FileExistsError:
            raise InstanceExistsError(record.instance_id) from None
        finally:
            os.unlink(temporary)
        if self.durable:
            _fsync_dir(target.parent)

    def _exists(self, instance_id: str) -> bool:
        return os.path.exists(self._journal_file(instance_id))

    def read(self, instance_id: str) -> list[Record]:
        return self.read_with_length(instance_id)[0]

    def read_with_length(self, instance_id: str) -> tuple[list[Record], int]:
        """Records plus the byte length of the journal's complete lines."""
        path = self._journal_file(instance_id)
        try:
            with open(path, "rb") as journal:
                data = self._read_journal(path, journal)
        except FileNotFoundError:
            raise InstanceNotFoundError(instance_id) from None
        return decode_journal(data, instance_id, path)

    def _read_journal(self, path: str, journal: BinaryIO) -> bytes:
        """The journal's bytes; a line over ``max_line_bytes`` raises before the rest is read,
        so a hostile file (one endless line) cannot exhaust memory."""
        if os.fstat(journal.fileno()).st_size <= self.max_line_bytes:
            data = journal.read()
            self._check_line_lengths(path, data)  # in case it grew since
            return data
        chunks: list[bytes] = []
        line_no, line_length = 1, 0
        while chunk := journal.read(_READ_CHUNK_BYTES):
            chunks.append(chunk)
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                line_length += (len(chunk) if end < 0 else end) - start
                if line_length > self.max_line_bytes:
                    raise JournalCorruptError(
                        path, line_no, f"line longer than {self.max_line_bytes} bytes"
                    )
                if end < 0:
                    break
                line_no, line_length, start = line_no + 1, 0, end + 1
        return b"".join(chunks)

    def _check_line_lengths(self, path: str, data: bytes) -> None:
        if len(data) <= self.max_line_bytes:
            return
        start = 0
        for line_no in itertools.count(1):
            end = data.find(b"\n", start)
            if end - start > self.max_line_bytes or (
                end < 0 and len(data) - start > self.max_line_bytes
            ):
                raise JournalCorruptError(
                    path, line_no, f"line longer than {self.max_line_bytes} bytes"
                )
            if end < 0:
                return
            start = end + 1

    def instance_ids(self) -> list[str]:
        try:
            names = os.listdir(self._journals)
        except FileNotFoundError:
            return []
        # A file whose name is not an ID is not a journal (wf doctor names it).
        return sorted(filter(None, (instance_id_of_file(name, ".jsonl") for name in names)))

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._prepare()
        fd = os.open(self._lock_file(instance_id), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + _BUSY_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_owner(fd)
                    os.close(fd)
                    raise InstanceBusyError(
                        instance_id,
                        holder.pid if holder else None,
                        holder.host if holder else None,
                    ) from None
                time.sleep(0.005)
        if not self._exists(instance_id):  # deleted while we waited for the lock
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise InstanceNotFoundError(instance_id)
        os.pwrite(fd, _owner_record(owner), 0)
        return _FileLease(self, instance_id, owner, fd)

    def holder(self, instance_id: str) -> Owner | None:
        path = self._lock_file(instance_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _held_by(fd, path)
        finally:
            os.close(fd)

    def post(self, instance_id: str, message: InboxMessage) -> None:
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._prepare()
        folder = self.inbox_path(instance_id)
        folder.mkdir(mode=0o700, exist_ok=True)
        temporary = self._write_new_file(folder, message.encode().encode())
        # The name orders messages across processes by wall-clock nanoseconds (kept
        # strictly increasing within this process); the message ID makes it unique.
        with self._order_mutex:
            order = self._last_order = max(time.time_ns(), self._last_order + 1)
        os.rename(temporary, folder / f"{order:020d}-{message.message_id}.json")
        if self.durable:
            _fsync_dir(folder)

    def pending(self, instance_id: str) -> list[InboxMessage]:
        return _read_inbox(self._inbox_folder(instance_id), self.max_line_bytes)

    def list_instances(self, query: ListQuery) -> Listing:
        """From the instance index (:mod:`wfcli.store.files.index`): only journals
        changed since the last listing are read. A worker's scans (``due_at``) keep the
        index in memory; other listings save it in ``cache/``."""
        damaged: list[JournalCorruptError] = []
        if self._index is None:
            self._index = InstanceIndex(self)
        journals = self._index.summaries(damaged)
        if query.due_at is None:
            self._index.save()
        with_inbox = self.inbox_ids()
        summaries: list[InstanceSummary] = []
        for journal in journals:
            instance_id = journal.instance_id
            if query.workflow is not None and journal.workflow != query.workflow:
                continue
            try:
                holder = self.holder(instance_id)
                messages = self.pending(instance_id) if instance_id in with_inbox else []
            except JournalCorruptError as error:
                damaged.append(error)
                continue
            pending = tuple(message.action for message in messages)
            summaries.append(InstanceSummary.of(journal, holder, pending))
        return Listing(query.select(summaries), damaged)

    def check(self) -> StoreReport:
        from wfcli.store.files.doctor import check_folder

        return check_folder(self)

    def inbox_ids(self) -> set[str]:
        """IDs whose inbox may hold messages (every ID ever posted to): a listing
        skips :meth:`pending` for the rest."""
        try:
            return set(os.listdir(self._inboxes))  # a folder per instance ever posted to
        except FileNotFoundError:
            return set()

    def journal_versions(self) -> dict[str, str]:
        """Every journal's ID with a token that changes whenever the journal does,
        without reading any journal (the instance index keys its entries by it)."""
        # Journals only grow (or lose a torn tail), and every write moves the mtime:
        # inode, size and mtime together tell a changed journal from an unchanged one.
        versions: dict[str, str] = {}
        try:
            entries = os.scandir(self._journals)
        except FileNotFoundError:
            return versions
        with entries:
            for entry in entries:
                instance_id = instance_id_of_file(entry.name, ".jsonl")
                if instance_id is None:
                    continue
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue  # deleted since the listing
                versions[instance_id] = f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"
        return versions

    def load_cache(self, name: str) -> bytes | None:
        """Data kept by :meth:`save_cache`, or None; it may be stale or damaged, so
        whoever saved it checks it."""
        try:
            with open(self.root / "cache" / _cache_name(name), "rb") as cache:
                return cache.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def save_cache(self, name: str, data: bytes) -> None:
        """Keep derived data (an index) in ``cache/``; not durable, not journaled."""
        _cache_name(name)
        self._prepare()
        folder = self.root / "cache"
        folder.mkdir(mode=0o700, exist_ok=True)
        temporary = self._write_new_file(folder, data, sync=False)
        try:
            os.replace(temporary, folder / name)  # readers see the old file or the new, whole
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
