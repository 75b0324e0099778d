"""``wf doctor`` for the file store: check the whole folder, read-only.

:func:`check_folder` looks at every journal, inbox message, lock file and temporary
file (layout in ``docs/journal-format.md``) and returns a
:class:`~wfcli.store.health.StoreReport`. It writes nothing and takes no lock: the
only way it touches a lock file is the shared-lock probe every status read makes.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from wfcli.core.codec import InboxMessage, RecordError
from wfcli.core.ids import instance_id_of_file
from wfcli.core.state import fold
from wfcli.errors import InstanceNotFoundError, JournalCorruptError, StoreLocationError
from wfcli.store.files.store import FileStore
from wfcli.store.health import Finding, Severity, StoreReport, interrupted_finding, order_findings

__all__ = ["check_folder"]

_STORE_FOLDERS = ("journals", "locks", "inbox", "tmp", "cache", "workers")
_MESSAGE_NAME = re.compile(r"\d{20}-(?P<message_id>.+)\.json")


# --- the store --------------------------------------------------------------------------------


class _Checker:
    def __init__(self, store: FileStore) -> None:
        self.root = store.root
        self.store = store
        self.findings: list[Finding] = []
        self.journal_ids: set[str] = set()
        self.applied: dict[str, set[str]] = {}  # instance ID -> IDs of journaled messages
        self.journals = 0
        self.messages = 0
        self.locks = 0

    def add(
        self,
        severity: Severity,
        kind: str,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.findings.append(Finding(severity, kind, str(path), message, line, instance_id))

    def run(self) -> StoreReport:
        self.check_layout()
        self.check_journals()
        self.check_inboxes()
        self.check_locks()
        self.check_temporary_files()
        return StoreReport(
            str(self.root), self.journals, self.messages, self.locks, tuple(self.findings)
        )

    def check_layout(self) -> None:
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name not in _STORE_FOLDERS:
                self.add("note", "unknown-entry", entry.path, "not part of a wfcli store")
            elif not entry.is_dir(follow_symlinks=False):
                self.add("problem", "unknown-entry", entry.path, "should be a folder")
        self.check_private(self.root)

    def check_private(self, path: Path | str) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return  # removed while we looked (a live store)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            self.add(
                "note",
                "permissions",
                path,
                f"mode {stat.S_IMODE(mode):04o}: other users may read it (wfcli makes "
                "folders 0700 and files 0600)",
            )

    def entries(self, folder: str) -> list[os.DirEntry[str]]:
        try:
            return sorted(os.scandir(self.root / folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def check_journals(self) -> None:
        for entry in self.entries("journals"):
            instance_id = instance_id_of_file(entry.name, ".jsonl")
            if entry.name.startswith("."):
                self.add("note", "temporary-file", entry.path, "stray temporary file")
                continue
            if instance_id is None or not entry.is_file(follow_symlinks=False):
                self.add(
                    "problem",
                    "unknown-entry",
                    entry.path,
                    "not a journal: journals are regular files named ID.jsonl",
                )
                continue
            self.journals += 1
            self.journal_ids.add(instance_id)
            self.check_private(entry.path)
            self.check_journal(Path(entry.path), instance_id)

    def check_journal(self, path: Path, instance_id: str) -> None:
        try:
            records, length = self.store.read_with_length(instance_id)
        except JournalCorruptError as error:
            self.add(
                "problem",
                "damaged-journal",
                error.path,
                error.reason,
                line=error.line,
                instance_id=instance_id,
            )
            return
        except InstanceNotFoundError:
            self.journals -= 1  # deleted while we looked
            self.journal_ids.discard(instance_id)
            return
        try:
            held = self.store.holder(instance_id) is not None
        except JournalCorruptError as error:
            self.add("problem", "damaged-lock", error.path, error.reason, instance_id=instance_id)
            held = True  # someone holds it: it is not interrupted
        self.findings += order_findings(instance_id, str(path), records)
        size = os.stat(path).st_size
        if size > length:
            self.add(
                "note",
                "torn-tail",
                path,
                f"torn last line ({size - length} bytes, a crash mid-write); the next run "
                "cuts it off",
                line=len(records) + 1,
                instance_id=instance_id,
            )
        state = fold(records)
        interrupted = interrupted_finding(instance_id, str(path), state.status, held)
        if interrupted is not None:
            self.findings.append(interrupted)
        self.applied[instance_id] = state.applied_messages

    def check_inboxes(self) -> None:
        for folder in self.entries("inbox"):
            instance_id = instance_id_of_file(folder.name, "")
            if instance_id is None or not folder.is_dir(follow_symlinks=False):
                self.add("problem", "unknown-entry", folder.path, "not an instance's inbox folder")
                continue
            if instance_id not in self.journal_ids:
                self.add(
                    "note",
                    "orphan-inbox",
                    folder.path,
                    "inbox of an instance that does not exist (deleted); nothing reads it",
                    instance_id=instance_id,
                )
            applied = self.applied.get(instance_id, set())
            try:
                entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
            except FileNotFoundError:
                continue  # the instance was deleted while we looked
            for entry in entries:
                self.check_message(Path(entry.path), instance_id, applied)

    def check_message(self, path: Path, instance_id: str, applied: set[str]) -> None:
        if path.name == ".sequence":  # the inbox's message counter
            return
        if path.name.startswith("."):
            self.add(
                "note",
                "temporary-file",
                path,
                "stray temporary file (a sender stopped before its message was sent)",
                instance_id=instance_id,
            )
            return
        limit = self.store.max_line_bytes
        try:
            data = None if path.stat().st_size > limit else path.read_bytes()
        except FileNotFoundError:
            return  # applied and discarded while we looked
        self.messages += 1
        self.check_private(path)
        if data is None:
            reason = f"message longer than {limit} bytes"
            self.add("problem", "damaged-inbox", path, reason, line=1, instance_id=instance_id)
            return
        match = _MESSAGE_NAME.fullmatch(path.name)
        try:
            message = InboxMessage.decode(data.decode("utf-8"))
        except UnicodeDecodeError:
            self.add("problem", "damaged-inbox", path, "not UTF-8", line=1, instance_id=instance_id)
            return
        except RecordError as error:
            self.add(
                "problem", "damaged-inbox", path, error.reason, line=1, instance_id=instance_id
            )
            return
        if match is None or match["message_id"] != message.message_id:
            self.add(
                "problem",
                "damaged-inbox",
                path,
                f"file name does not match its message_id {message.message_id!r} "
                "(it could never be discarded)",
                instance_id=instance_id,
            )
        elif message.message_id in applied:
            self.add(
                "note",
                "applied-message",
                path,
                "already applied, not yet discarded (a crash in between); the next run discards it",
                instance_id=instance_id,
            )

    def check_locks(self) -> None:
        for entry in self.entries("locks"):
            if entry.name.startswith("."):
                self.add("note", "temporary-file", entry.path, "stray temporary file")
                continue
            if instance_id_of_file(entry.name, ".lock") is None:
                self.add("problem", "unknown-entry", entry.path, "not a lock file")
                continue
            self.locks += 1
            self.check_private(entry.path)

    def check_temporary_files(self) -> None:
        for entry in self.entries("tmp"):
            self.add(
                "note",
                "temporary-file",
                entry.path,
                "stray temporary file (a create that stopped before the journal was linked)",
            )


def check_folder(store: FileStore) -> StoreReport:
    """Check the folder of ``store``, read-only.

    Raises :class:`StoreLocationError` if there is no store there.
    """
    if not store.root.is_dir():
        raise StoreLocationError(str(store.root), "no store there")
    try:
        store.verify()
    except StoreLocationError as error:  # another user could change it: read nothing more
        finding = Finding("problem", "unsafe-store", error.location, error.reason)
        return StoreReport(str(store.root), 0, 0, 0, (finding,))
    return _Checker(store).run()
