"""``wf doctor``: check a whole file store, read-only, and say what is wrong with it.

:func:`check_store` looks at every journal, inbox message, lock file and
temporary file (layout in ``docs/journal-format.md``) and returns a
:class:`StoreReport`. It writes nothing and takes no lock: the only way it
touches a lock file is the shared-lock probe every status read makes.

Findings are *problems* (damage: a command that reads it fails, or wfcli would
misbehave) or *notes* (leftovers of a crash that wfcli handles by itself, and
instances to resume). :func:`journal_order_problems` is the pure part: the
order rules a journal written by one writer always keeps, which catch some
lines deleted or duplicated by hand.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    Errored,
    EventReceived,
    Finished,
    InboxMessage,
    Paused,
    Record,
    RecordError,
    Restarted,
    Resumed,
    RunStarted,
    StepCompleted,
    StepFailed,
    Suspended,
    Terminated,
    WaitStarted,
    Warned,
)
from wfcli.core.ids import instance_id_of_file
from wfcli.core.state import fold
from wfcli.errors import InstanceNotFoundError, JournalCorruptError, WorkflowInputError
from wfcli.store.files.store import FileStore

__all__ = ["Finding", "Severity", "StoreReport", "check_store", "journal_order_problems"]

Severity = Literal["problem", "note"]
_STORE_FOLDERS = ("journals", "locks", "inbox", "tmp", "cache")
_MESSAGE_NAME = re.compile(r"\d{20}-(?P<message_id>.+)\.json")
_STEP_RECORDS = (AttemptStarted, StepCompleted, AttemptFailed, StepFailed, WaitStarted, Suspended)
_MESSAGE_RECORDS = (EventReceived, Paused, Resumed, Terminated, Restarted)
_ENDINGS = (Finished, Errored, Terminated)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found in a store: where (file, line), what, and how serious."""

    severity: Severity
    kind: str
    path: str
    message: str
    line: int | None = None
    instance_id: str | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{self.severity}: {where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "instance_id": self.instance_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class StoreReport:
    """What :func:`check_store` checked and found."""

    store: str
    journals: int
    inbox_messages: int
    lock_files: int
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "note"]

    @property
    def healthy(self) -> bool:
        """True when nothing needs a person: notes only, or nothing at all."""
        return not self.problems

    def summary(self) -> str:
        counts = (
            f"{self.journals} journal{_plural(self.journals)}, "
            f"{self.inbox_messages} inbox message{_plural(self.inbox_messages)}, "
            f"{self.lock_files} lock file{_plural(self.lock_files)}"
        )
        problems, notes = len(self.problems), len(self.notes)
        verdict = "healthy" if self.healthy else f"{problems} problem{_plural(problems)}"
        if notes:
            verdict += f", {notes} note{_plural(notes)}"
        return f"store {self.store}: checked {counts}: {verdict}"

    def to_json(self) -> dict[str, object]:
        """The document of ``wf doctor --json`` (schema in ``docs/reliability.md``)."""
        return {
            "store": self.store,
            "healthy": self.healthy,
            "checked": {
                "journals": self.journals,
                "inbox_messages": self.inbox_messages,
                "lock_files": self.lock_files,
            },
            "problems": len(self.problems),
            "notes": len(self.notes),
            "findings": [finding.to_json() for finding in self.findings],
        }


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


# --- the pure part: order rules of a journal ------------------------------------------------


def journal_order_problems(records: Sequence[Record]) -> list[tuple[int, str]]:
    """``(line, reason)`` for every record out of the order one writer always keeps.

    ``records`` is a whole journal, line 1 first, each record already valid on
    its own. The rules: step records come after a ``run_started``; a ``do``
    attempt's outcome after its ``attempt_started``; a sleep's or event's end
    after its ``wait_started``; a step's result, an ending and each applied
    message appear once (until a ``restarted``); after an ending only late
    events, warnings and a ``restarted`` follow.
    """
    problems: list[tuple[int, str]] = []
    started: set[tuple[str, int]] = set()
    waits: set[str] = set()
    results: set[str] = set()
    messages: set[str] = set()
    running = False
    ended = False
    for line, record in enumerate(records, start=1):
        reason = None
        if isinstance(record, Restarted):
            results.clear()
            ended = False
        elif ended and not isinstance(record, (EventReceived, Warned)):
            reason = f"a {record.TYPE} record after the instance ended"
        elif isinstance(record, RunStarted):
            running = True
        elif isinstance(record, _STEP_RECORDS) and not running:
            reason = f"a {record.TYPE} record before any run_started"
        if reason is None:
            reason = _step_order(record, started, waits, results)
        if reason is None and isinstance(record, _MESSAGE_RECORDS):
            if record.message_id in messages:
                reason = f"message {record.message_id} applied a second time"
            messages.add(record.message_id)
        if isinstance(record, _ENDINGS):
            ended = True
        if reason is not None:
            problems.append((line, reason))
    return problems


def _step_order(
    record: Record, started: set[tuple[str, int]], waits: set[str], results: set[str]
) -> str | None:
    if isinstance(record, AttemptStarted):
        started.add((record.step, record.attempt))
    elif isinstance(record, WaitStarted):
        waits.add(record.step)
    elif isinstance(record, AttemptFailed) and (record.step, record.attempt) not in started:
        return f"attempt {record.attempt} of step {record.step!r} failed but never started"
    elif isinstance(record, (StepCompleted, StepFailed)):
        if record.step in results:
            return f"a second result for step {record.step!r}"
        results.add(record.step)
        if isinstance(record, StepCompleted) and record.kind == "do":
            if (record.step, record.attempt) not in started:
                return f"attempt {record.attempt} of step {record.step!r} ended but never started"
        elif record.kind != "do" and record.step not in waits:
            return f"step {record.step!r} ended a wait that never started"
    return None


# --- the store --------------------------------------------------------------------------------


class _Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = FileStore(root)
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
        for line, reason in journal_order_problems(records):
            self.add(
                "problem",
                "damaged-journal",
                path,
                f"out of order: {reason}",
                line=line,
                instance_id=instance_id,
            )
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
        if state.status == "running" and self.store.holder(instance_id) is None:
            self.add(
                "note",
                "interrupted",
                path,
                f"interrupted (no process runs it): continue it with `wf resume {instance_id}`",
                instance_id=instance_id,
            )
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


def check_store(root: Path | str) -> StoreReport:
    """Check the store at ``root``, read-only.

    Raises :class:`WorkflowInputError` if there is no store there.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise WorkflowInputError("store", f"no store at {folder}")
    return _Checker(folder).run()
