"""The file store: one JSON-lines journal per instance in a folder.

Layout and format in ``docs/journal-format.md``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wfcli.core.codec import (
    Created,
    InboxMessage,
    JsonValue,
    Record,
    RecordError,
    encode_record,
)
from wfcli.core.ids import instance_id_of_file, instance_ids_of_files, validate_instance_id
from wfcli.core.state import TERMINAL_STATUSES
from wfcli.core.summary import InstanceSummary, JournalSummary
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
    StoreFaultError,
    StoreLocationError,
)
from wfcli.store.contract import (
    Claim,
    Damage,
    JournalStore,
    Lease,
    Listing,
    ListQuery,
    Owner,
)
from wfcli.store.validation import JournalRules, decode_journal, decode_new_lines

if TYPE_CHECKING:
    from wfcli.core.admission import ConcurrencyLimit
    from wfcli.store.files.claims import ClaimQueue
    from wfcli.store.files.index import InstanceIndex
    from wfcli.store.health import StoreReport

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


def _sync_data(fd: int) -> None:
    """``fdatasync`` where there is one (Linux), else ``fsync``: the data, not the times."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part)."""
    written = os.write(fd, data)
    if written == len(data):  # nearly always: a regular file takes a short line whole
        return
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]


def _read_inbox(
    folder: str, max_bytes: int, files: dict[str, str] | None = None
) -> list[InboxMessage]:
    """The messages in an inbox folder, in posting order; each at most ``max_bytes``
    long (a message becomes one journal line), so a hostile file cannot exhaust
    memory. ``files`` is filled with each message's file."""
    try:
        names = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise _unreadable(folder, error) from None
    messages = []
    for name in names:
        path = f"{folder}/{name}"
        try:
            fd = _open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # applied and discarded by the lease holder meanwhile
        except OSError as error:
            raise _unreadable(path, error) from None
        try:
            size = os.fstat(fd).st_size  # in place, a message file never changes
            if size > max_bytes:
                raise JournalCorruptError(path, 1, f"message longer than {max_bytes} bytes")
            text = _read_to_end(fd, size).decode("utf-8")
        except UnicodeDecodeError:
            raise JournalCorruptError(path, 1, "not UTF-8") from None
        except OSError as error:
            raise _unreadable(path, error) from None
        finally:
            os.close(fd)
        try:
            message = InboxMessage.decode(text)
        except RecordError as error:
            raise JournalCorruptError(path, 1, error.reason) from None
        messages.append(message)
        if files is not None:
            files[message.message_id] = path
    return messages


_FOLDERS = ("journals", "locks", "inbox", "tmp", "cache", "workers")
_MADE_FOLDERS = ("", "journals", "locks", "inbox", "tmp")  # "": the store's own; by _prepare
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _unsafe_folder(info: os.stat_result) -> str | None:
    """Why a store folder with this ``lstat`` is not safe to use, or None."""
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link, not a folder (no link is followed)"
    if not stat.S_ISDIR(info.st_mode):
        return "not a folder"
    if info.st_uid != os.geteuid():
        return f"owned by another user (uid {info.st_uid}; you are uid {os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "make it private with chmod 700"
        )
    return None


def _highest_number(folder: str) -> int:
    """The highest message number in an inbox folder, 0 if it has none."""
    numbers = [
        int(name[:20]) for name in os.listdir(folder) if name[:20].isdigit() and name[20:21] == "-"
    ]
    return max(numbers, default=0)


# What another user or a hand can do to one file: it is that instance's damage. Any
# other error (EIO, ENOSPC, ...) is a fault of the store.
_DAMAGE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ELOOP, errno.EISDIR, errno.ENXIO})


def _open(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symbolic link (``ELOOP`` if ``path`` is one)."""
    return os.open(path, flags | _NOFOLLOW, mode)


def _unreadable(path: str, error: OSError) -> JournalCorruptError | StoreFaultError:
    """The error for a store file that could not be opened or read."""
    if error.errno == errno.ELOOP:
        return JournalCorruptError(path, 1, "a symbolic link: refused (no link is followed)")
    if error.errno in _DAMAGE_ERRNOS:
        return JournalCorruptError(path, 1, f"cannot read it: {error.strerror}")
    return StoreFaultError.of("read", path, error)


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


def _read_to_end(fd: int, size: int) -> bytes:
    """Everything from ``fd``'s offset to its end; ``size``, what a ``stat`` said, sizes
    the first read (the file may have grown since)."""
    chunks = [os.read(fd, size + 1)]
    while chunks[-1]:
        chunks.append(os.read(fd, _READ_CHUNK_BYTES))
    return chunks[0] if len(chunks) <= 2 else b"".join(chunks)


def _journal_version(info: os.stat_result) -> str:
    """A token that changes whenever a journal does: journals only grow (or lose a torn
    tail), and every write moves the mtime, so inode, size and mtime together tell a
    changed journal from an unchanged one."""
    return f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def _cache_name(name: str) -> str:
    if not name.replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"bad cache name {name!r}")
    return name


class _FileLease(Lease):
    """The lock on ``locks/ID.lock`` and the journal opened for appending.

    An append that fails (a write or a sync) cuts the journal back to its last good
    length and gives the lease up: after a failed sync nothing this process wrote
    since its last good sync can be trusted to be on disk, so the next holder reads
    the journal afresh instead of this process carrying on from memory.
    """

    def __init__(self, store: FileStore, instance_id: str, owner: Owner, lock_fd: int) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self._store = store
        self._lock_fd: int | None = lock_fd
        self._journal_path = store._journal_file(instance_id)
        self._inbox = store._inbox_folder(instance_id)  # looked at between every two steps
        self._inbox_made = False
        """Whether the inbox folder was there at a look (made by the first message posted)."""
        self._fd = _open(self._journal_path, os.O_WRONLY | os.O_APPEND)
        self._length: int | None = None
        """The byte length of the journal's complete, written lines (None: not read)."""
        self._record_count = 0
        self._tail_checked = False
        self._fault: StoreFaultError | None = None
        self._message_files: dict[str, str] = {}  # message ID -> its file, from pending()
        self._mutex = threading.Lock()  # parallel steps append from several threads
        self._rules = JournalRules(instance_id, self._journal_path)
        self._journal: list[Record] | None = None
        """The journal's records as this lease read and appended them, kept in a worker
        (a store with a claim queue), to tell its index at release
        (:meth:`FileStore.left_by_lease`)."""
        self._read_count = 0

    def read(self) -> list[Record]:
        records, self._length = self._store.read_with_length(self.instance_id, self._rules)
        self._record_count = len(records)
        self._read_count = len(records)
        if self._store._claims is not None:  # a worker's, which takes them at its next claim
            self._journal = list(records)
        return records

    def journal_version(self) -> str:
        """The journal's version now (:meth:`FileStore.journal_versions`), by one ``fstat``."""
        return _journal_version(os.fstat(self._fd))

    def _check_held(self) -> None:
        if self._fault is not None:
            raise LeaseLostError(
                self.instance_id, f"given up after a store fault ({self._fault.reason})"
            )
        if self._lock_fd is None:
            raise LeaseLostError(self.instance_id, "it was released")

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        with self._mutex:
            if self._fault is not None or self._lock_fd is None:
                self._check_held()
            if not self._tail_checked:
                self._cut_torn_tail()
            first = self._record_count + 1
            rules = self._rules
            if len(records) == 1:  # most appends (a step's two records go one at a time)
                record = records[0]
                rules.check(record, first)
                data = (encode_record(record, first, rules.version) + "\n").encode()
            else:
                for line_no, record in enumerate(records, start=first):
                    rules.check(record, line_no)
                data = "".join(
                    encode_record(record, number, rules.version) + "\n"
                    for number, record in enumerate(records, start=first)
                ).encode()
            try:
                _write_all(self._fd, data)
                if sync and self._store.durable:
                    _sync_data(self._fd)
            except OSError as error:
                raise self._give_up("append to", error) from None
            self._record_count += len(records)
            assert self._length is not None
            self._length += len(data)
            if self._journal is not None:
                self._journal.extend(records)

    def _give_up(self, operation: str, error: OSError) -> StoreFaultError:
        """After a failed write or sync: cut the journal back to its last good length
        (a partial line never stays), release the lock, and say what failed."""
        fault = StoreFaultError.of(operation, self._journal_path, error)
        if self._length is not None:
            with contextlib.suppress(OSError):  # if even this fails, the torn tail stays
                os.ftruncate(self._fd, self._length)
        self._fault = fault
        self._unlock()
        return fault

    def _cut_torn_tail(self) -> None:
        """Before the lease's first append, drop a torn last line left by a crash."""
        if self._tail_checked:
            return
        if self._length is None:
            self.read()
        assert self._length is not None
        try:
            if os.fstat(self._fd).st_size > self._length:
                os.ftruncate(self._fd, self._length)
        except OSError as error:
            raise self._give_up("cut the torn last line of", error) from None
        self._tail_checked = True

    def pending(self) -> list[InboxMessage]:
        # Until a message is posted there is no folder: access() says so without the
        # exception that listing a missing folder raises, which costs more than the look.
        if not self._inbox_made:
            if not os.access(self._inbox, os.F_OK):
                return []
            self._inbox_made = True
        return _read_inbox(self._inbox, self._store.max_line_bytes, self._message_files)

    def discard(self, message_ids: Sequence[str]) -> None:
        self._check_held()
        unknown = [m for m in message_ids if m not in self._message_files]
        if unknown:  # not seen through pending(): find their files
            _read_inbox(self._inbox, self._store.max_line_bytes, self._message_files)
        for message_id in message_ids:
            path = self._message_files.pop(message_id, None)
            if path is None:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise StoreFaultError.of("remove the applied message", path, error) from None

    def delete_instance(self) -> None:
        self._check_held()
        self._journal = None  # nothing to tell the index of a journal that goes
        inbox = self._inbox
        try:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(inbox):
                    os.unlink(entry.path)
                os.rmdir(inbox)
            os.unlink(self._journal_path)
            _fsync_dir(os.path.dirname(self._journal_path))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._store._lock_file(self.instance_id))
        except OSError as error:
            raise StoreFaultError.of("delete", self._journal_path, error) from None
        finally:
            self.release()

    def release(self) -> None:
        with self._mutex:
            journal, self._journal = self._journal, None
            held = self._lock_fd is not None and self._fault is None
            if held and journal is not None and len(journal) > self._read_count:
                with contextlib.suppress(OSError):  # only the index's shortcut is lost
                    self._store._left_by_leases[self.instance_id] = (
                        self.journal_version(),
                        journal,
                    )
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            os.close(self._fd)
            with contextlib.suppress(OSError):  # a stale owner record is harmless: unlocked
                os.ftruncate(lock_fd, 0)
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(lock_fd)


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
        self._ready = False
        self._verified = False
        self._complete = False  # whether verify found every folder that _prepare makes
        self._index: InstanceIndex | None = None
        # Per instance, the journal as this process's last lease on it left it: its
        # version and records (set by the leases' threads, taken by the index's).
        self._left_by_leases: dict[str, tuple[str, list[Record]]] = {}
        self._claims: ClaimQueue | None = None
        # For read_after: per followed journal, the records read, their bytes, its rules.
        self._followed: dict[str, tuple[int, int, JournalRules]] = {}

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

    def verify(self) -> None:
        """Refuse a store whose folders another user could change (once per store object).

        As ssh refuses a key file with loose modes: every folder of the store must be
        a real folder (not a link), owned by this user and writable by nobody else.
        A store that does not exist yet passes (it is made private when written).
        """
        if self._verified:
            return
        complete = True
        for name in ("", *_FOLDERS):
            folder = f"{self.root}/{name}" if name else str(self.root)
            try:
                info = os.lstat(folder)
            except FileNotFoundError:
                complete = complete and name not in _MADE_FOLDERS
                continue
            except OSError as error:
                raise StoreFaultError.of("look at", folder, error) from None
            if name == "cache" and stat.S_ISREG(info.st_mode):
                continue  # no index can be kept: listings read the journals
            reason = _unsafe_folder(info)
            if reason is not None:
                raise StoreLocationError(folder, f"{reason}: refused")
        self._verified = True
        self._complete = complete

    def _prepare(self) -> None:
        if self._ready:
            return
        self._verified = False
        self.verify()  # looked at afresh: folders made or removed since an earlier look
        if self._complete:  # as every store but a new one: nothing to make
            self._ready = True
            return
        try:
            # mkdir's mode is for the folder it makes, not for parents made on the way.
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for folder in _MADE_FOLDERS[1:]:
                (self.root / folder).mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise StoreFaultError.of("make the folders of", str(self.root), error) from None
        self._verified = False
        self.verify()  # what was there already, or made under us, is checked too
        self._ready = True

    def _write_new_file(self, folder: str, data: bytes, *, sync: bool = True) -> str:
        """Write ``data`` to a fresh private file in ``folder`` (fsynced if ``sync`` and
        the store is durable); a failed write leaves no file behind."""
        path = f"{folder}/.tmp-{uuid.uuid4().hex}"
        fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            try:
                _write_all(fd, data)
                if sync and self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
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
        target = self._journal_file(record.instance_id)
        rules = JournalRules(record.instance_id, target)
        for line_no, each in enumerate(records, start=1):
            rules.check(each, line_no)
        self._prepare()
        data = "".join(encode_record(each, n) + "\n" for n, each in enumerate(records, start=1))
        try:
            temporary = self._write_new_file(f"{self.root}/tmp", data.encode())
            try:
                os.link(temporary, target)  # atomic, and never replaces an existing journal
            except FileExistsError:
                raise InstanceExistsError(record.instance_id) from None
            finally:
                os.unlink(temporary)
            if self.durable:
                _fsync_dir(self._journals)
        except OSError as error:
            raise StoreFaultError.of("create", target, error) from None

    def _exists(self, instance_id: str) -> bool:
        return os.path.lexists(self._journal_file(instance_id))

    def read(self, instance_id: str) -> list[Record]:
        return self.read_with_length(instance_id)[0]

    def read_with_length(
        self, instance_id: str, rules: JournalRules | None = None
    ) -> tuple[list[Record], int]:
        """Records plus the byte length of the journal's complete lines; ``rules`` (a
        lease's) learn the journal's format version."""
        self.verify()
        path = self._journal_file(instance_id)
        try:
            fd = _open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise InstanceNotFoundError(instance_id) from None
        except OSError as error:
            raise _unreadable(path, error) from None
        try:
            data = self._read_journal(path, fd)
        except OSError as error:
            raise _unreadable(path, error) from None
        finally:
            os.close(fd)
        return decode_journal(data, rules or JournalRules(instance_id, path))

    def read_after(self, instance_id: str, known: int) -> list[Record]:
        """Only the lines after those of the last call for this journal, if it was
        called with as many records as that call ended with; else the whole journal."""
        followed = self._followed.get(instance_id)
        path = self._journal_file(instance_id)
        if followed is not None and followed[0] == known:
            count, offset, rules = followed
            try:
                fd = _open(path, os.O_RDONLY)
                try:
                    size = os.fstat(fd).st_size
                    data = None  # cut shorter than what was read: read it all again
                    if size >= offset:
                        os.lseek(fd, offset, os.SEEK_SET)
                        data = _read_to_end(fd, size - offset)
                finally:
                    os.close(fd)
                if data is not None:
                    self._check_line_lengths(path, data)
                    records, end = decode_new_lines(data, count + 1, rules)
                    self._followed[instance_id] = (count + len(records), offset + end, rules)
                    return records
            except FileNotFoundError:
                self._followed.pop(instance_id, None)
                raise InstanceNotFoundError(instance_id) from None
            except OSError as error:
                raise _unreadable(path, error) from None
        rules = JournalRules(instance_id, path)
        records, length = self.read_with_length(instance_id, rules)
        self._followed[instance_id] = (len(records), length, rules)
        return records[known:]

    def _read_journal(self, path: str, fd: int) -> bytes:
        """The bytes of the journal open as ``fd``, read with ``os.read`` (a buffered file
        object costs five more system calls per journal); a line over ``max_line_bytes``
        raises before the rest is read, so a hostile file (one endless line) cannot
        exhaust memory."""
        size = os.fstat(fd).st_size
        if size <= self.max_line_bytes:
            data = _read_to_end(fd, size)
            self._check_line_lengths(path, data)  # in case it grew since
            return data
        chunks: list[bytes] = []
        line_no, line_length = 1, 0
        while chunk := os.read(fd, _READ_CHUNK_BYTES):
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
        self.verify()
        try:
            names = os.listdir(self._journals)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreFaultError.of("list", self._journals, error) from None
        # A file whose name is not an ID is not a journal (wf doctor names it).
        return sorted(instance_ids_of_files(names, ".jsonl"))

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._prepare()
        path = self._lock_file(instance_id)
        try:
            fd = _open(path, os.O_RDWR | os.O_CREAT)
        except OSError as error:
            raise _unreadable(path, error) from None
        try:
            self._take(fd, instance_id, owner)
            return _FileLease(self, instance_id, owner, fd)
        except BaseException as error:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)  # nothing leaks the lock: a failed acquire holds nothing
            if isinstance(error, OSError):
                raise StoreFaultError.of("take the lock of", path, error) from None
            raise

    def _take(self, fd: int, instance_id: str, owner: Owner) -> None:
        """Lock lock file ``fd`` for ``owner`` and write its owner record.

        A lease holding the lock makes the instance busy at once (a claim moves on to
        the next instance instead of waiting); only a status probe's shared lock
        (:func:`_held_by`, microseconds) or a holder writing or clearing its record
        is waited out, for up to ``_BUSY_RETRY_SECONDS``.
        """
        deadline = time.monotonic() + _BUSY_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held exclusively: by a lease
                holder = _read_owner(fd)
                if holder is not None or time.monotonic() >= deadline:
                    raise InstanceBusyError(
                        instance_id,
                        holder.pid if holder else None,
                        holder.host if holder else None,
                    ) from None
            else:  # only probes hold it
                fcntl.flock(fd, fcntl.LOCK_UN)
                if time.monotonic() >= deadline:
                    raise InstanceBusyError(instance_id, None, None) from None
            time.sleep(0.002)
        if not self._exists(instance_id):  # deleted while we waited for the lock
            raise InstanceNotFoundError(instance_id)
        os.pwrite(fd, _owner_record(owner), 0)

    def holder(self, instance_id: str) -> Owner | None:
        self.verify()
        path = self._lock_file(instance_id)
        try:
            fd = _open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _unreadable(path, error) from None
        try:
            return _held_by(fd, path)
        finally:
            os.close(fd)

    def post(self, instance_id: str, message: InboxMessage) -> None:
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._prepare()
        folder = self._inbox_folder(instance_id)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
            reason = _unsafe_folder(os.lstat(folder))
            if reason is not None:
                raise JournalCorruptError(folder, 1, f"{reason}: refused")
            temporary = self._write_new_file(folder, message.encode().encode())
            try:
                self._deliver(folder, temporary, message.message_id)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as error:
            raise StoreFaultError.of("post a message to", folder, error) from None

    def _deliver(self, folder: str, temporary: str, message_id: str) -> None:
        """Rename a written message into place under the inbox's next sequence number.

        The number comes from ``.sequence`` in the inbox, taken under its lock, so
        messages are applied in the order they were posted, whatever the senders'
        clocks. A missing counter starts after the highest number there is (inboxes
        written by older wfcli are numbered by the senders' clocks).
        """
        counter = _open(f"{folder}/.sequence", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(counter, fcntl.LOCK_EX)
            text = os.pread(counter, 64, 0).strip()
            last = int(text) if text.isdigit() else _highest_number(folder)
            number = last + 1
            os.pwrite(counter, b"%020d\n" % number, 0)
            if self.durable:
                os.fsync(counter)
            os.rename(temporary, f"{folder}/{number:020d}-{message_id}.json")
            if self.durable:
                _fsync_dir(folder)
        finally:
            os.close(counter)  # and with it the lock

    def pending(self, instance_id: str) -> list[InboxMessage]:
        self.verify()
        return _read_inbox(self._inbox_folder(instance_id), self.max_line_bytes)

    def list_instances(self, query: ListQuery) -> Listing:
        """From the instance index (:mod:`wfcli.store.files.index`): only journals
        changed since the last listing are read. A worker's scans (``due_at``) keep the
        index in memory; other listings save it in ``cache/``."""
        damaged: list[Damage] = []
        journals = self._indexed(damaged, save=query.due_at is None)
        inbox = self.inbox_ids()
        if query.due_at is not None:  # a finished instance without mail is not due
            journals = [
                journal
                for journal in journals
                if journal.status not in TERMINAL_STATUSES or journal.instance_id in inbox
            ]
        return self.listing(query, journals, damaged, inbox.__contains__)

    def scan(self, now: datetime, limits: Mapping[str, ConcurrencyLimit]) -> Listing:
        """From the index kept in memory, as a worker's due scan is; a finished
        instance without mail is listed without looking up its lock (nobody executes
        a finished instance, and it is not due), which is most of a long-lived store."""
        damaged: list[Damage] = []
        journals = self._indexed(damaged, save=False)
        inbox = self.inbox_ids()
        settled = [
            InstanceSummary.of(journal, None, ())
            for journal in journals
            if journal.status in TERMINAL_STATUSES and journal.instance_id not in inbox
        ]
        active = [
            journal
            for journal in journals
            if journal.status not in TERMINAL_STATUSES or journal.instance_id in inbox
        ]
        listing = self.listing(ListQuery(), active, damaged, inbox.__contains__)
        return Listing(listing.instances + settled, listing.damaged)

    def claim_due(
        self,
        now: datetime,
        owner: Owner,
        limit: int,
        *,
        skip: Collection[str] = (),
        limits: Mapping[str, ConcurrencyLimit] | None = None,
    ) -> Claim:
        """Without limits, by the claim queue (:mod:`wfcli.store.files.claims`), which
        costs no system call per finished or queued instance; the contract's claim,
        which lists every journal, for what that does not fill of ``limit`` (so a claim
        that comes back short has looked at everything) and whenever the queue is due
        to be rebuilt. With limits, the contract's claim under the admission lock."""
        taken: list[Lease] = []
        queue = self._claims
        if not limits and queue is not None and queue.current:
            damaged: list[Damage] = []
            due = queue.due(now, damaged)
            quick = self._acquire_in_order(due, owner, limit, skip, damaged, now=now)
            taken = quick.leases
            if len(taken) == limit:
                queue.claimed({lease.instance_id for lease in taken})
                return quick
        skipped = {*skip, *(lease.instance_id for lease in taken)}
        try:
            rest = super().claim_due(now, owner, limit - len(taken), skip=skipped, limits=limits)
        except BaseException:
            for lease in taken:
                lease.release()
            raise
        leases = [*taken, *rest.leases]
        if not limits:
            if queue is None:
                from wfcli.store.files.claims import ClaimQueue  # workers only

                assert self._index is not None  # the claim listed through it
                queue = self._claims = ClaimQueue(self, self._index, self._journals)
            queue.rebuild({lease.instance_id for lease in leases})
        return Claim(leases, rest.damaged)

    def still_due(self, lease: Lease, listed: InstanceSummary, now: datetime) -> bool:
        """Due as listed if the journal is still the version the index read (one
        ``fstat``: a process that executed the instance since has changed it, and the
        inbox of an unchanged journal can only have gained messages); else its index
        entry is read again and judged."""
        index = self._index
        if index is None or not isinstance(lease, _FileLease):
            return super().still_due(lease, listed, now)
        if index.version(listed.id) == lease.journal_version():
            return True
        refresh = index.refresh if self._claims is None else self._claims.refresh
        journal = refresh(listed.id)
        if journal is None:
            return False
        pending = tuple(message.action for message in lease.pending())
        return InstanceSummary.of(journal, None, pending).is_due(now)

    def _indexed(self, damaged: list[Damage], *, save: bool) -> list[JournalSummary]:
        self.verify()
        if self._index is None:
            from wfcli.store.files.index import InstanceIndex  # listings only

            self._index = InstanceIndex(self)
        journals = self._index.summaries(damaged)
        if save:
            self._index.save()
        return journals

    @contextlib.contextmanager
    def admission_lock(self) -> Iterator[None]:
        """``flock`` on ``workers/admission.lock``: released by the kernel if its holder dies."""
        with self._workers_lock("admission.lock"):
            yield

    @contextlib.contextmanager
    def _workers_lock(self, name: str) -> Iterator[None]:
        self._prepare()
        path = f"{self.root}/workers/{name}"
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(f"{self.root}/workers", 0o700)
            fd = _open(path, os.O_RDWR | os.O_CREAT)
        except OSError as error:
            raise StoreFaultError.of("open the lock", path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def schedule_states(self) -> dict[str, JsonValue]:
        """From ``workers/schedules.json`` (written whole, then renamed into place)."""
        self.verify()
        path = f"{self.root}/workers/schedules.json"
        try:
            fd = _open(path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise _unreadable(path, error) from None
        try:
            with open(fd, "rb") as file:
                document = json.loads(file.read())
        except (OSError, ValueError) as error:
            raise JournalCorruptError(path, 1, f"unreadable schedule states: {error}") from None
        if not isinstance(document, dict):
            raise JournalCorruptError(path, 1, "unreadable schedule states: not an object")
        return document

    def update_schedule_state(
        self, key: str, change: Callable[[JsonValue], JsonValue]
    ) -> JsonValue:
        """Under ``flock`` on ``workers/schedules.lock``; the file is replaced by rename."""
        with self._workers_lock("schedules.lock"):
            states = self.schedule_states()
            states[key] = change(states.get(key))
            folder = f"{self.root}/workers"
            data = json.dumps(states, sort_keys=True, separators=(",", ":")).encode()
            try:
                temporary = self._write_new_file(folder, data)
                try:
                    os.replace(temporary, f"{folder}/schedules.json")
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)
                    raise
                if self.durable:
                    _fsync_dir(folder)
            except OSError as error:
                raise StoreFaultError.of("save the schedule states in", folder, error) from None
            return states[key]

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
        except OSError as error:
            raise StoreFaultError.of("list", self._inboxes, error) from None

    def left_by_lease(self, instance_id: str, version: str) -> list[Record] | None:
        """The journal's records if a lease of this process left it at ``version``
        and nobody changed it since, so that the index need not read it again; None
        otherwise. Each lease's records are handed out once."""
        left = self._left_by_leases.pop(instance_id, None)
        return left[1] if left is not None and left[0] == version else None

    def forget_leases(self) -> None:
        """Drop what the leases left that nobody took (:meth:`left_by_lease`): after a
        full listing, only instances deleted since by another process are among them."""
        self._left_by_leases.clear()

    def journal_version(self, instance_id: str) -> str | None:
        """One journal's version (as :meth:`journal_versions` gives it), None if it is gone."""
        try:
            return _journal_version(os.stat(self._journal_file(instance_id)))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _unreadable(self._journal_file(instance_id), error) from None

    def journal_versions(self) -> dict[str, str]:
        """Every journal's ID with a token that changes whenever the journal does,
        without reading any journal (the instance index keys its entries by it)."""
        versions: dict[str, str] = {}
        try:
            entries = os.scandir(self._journals)
        except FileNotFoundError:
            return versions
        except OSError as error:
            raise StoreFaultError.of("list", self._journals, error) from None
        with entries:
            for entry in entries:
                instance_id = instance_id_of_file(entry.name, ".jsonl")
                if instance_id is None:
                    continue
                try:
                    info = entry.stat()
                except OSError:
                    continue  # deleted since the listing, or unreadable: read, and reported
                versions[instance_id] = _journal_version(info)
        return versions

    def load_cache(self, name: str) -> bytes | None:
        """Data kept by :meth:`save_cache`, or None; it may be stale or damaged, so
        whoever saved it checks it."""
        try:
            fd = _open(f"{self.root}/cache/{_cache_name(name)}", os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        with open(fd, "rb") as cache:
            return cache.read()

    def save_cache(self, name: str, data: bytes) -> None:
        """Keep derived data (an index) in ``cache/``; not durable, not journaled."""
        _cache_name(name)
        self._prepare()
        folder = f"{self.root}/cache"
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        temporary = self._write_new_file(folder, data, sync=False)
        try:
            os.replace(temporary, f"{folder}/{name}")  # readers see the old file or the new
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
