"""The health of a store: findings, the report ``wf doctor`` prints, and the checks
every store shares.

Findings are *problems* (damage: a command that reads it fails, or wfcli would
misbehave) or *notes* (leftovers of a crash that wfcli handles by itself, and
instances to resume). :func:`journal_order_problems` is the pure part: the order
rules a journal written by one writer always keeps, which catch some lines deleted
or duplicated by hand. :func:`check_journals` reads every journal of any store with
them; a store adds what only it can see (files, locks, leases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    Errored,
    EventReceived,
    Finished,
    Forked,
    Paused,
    Record,
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
from wfcli.core.state import fold
from wfcli.errors import InstanceNotFoundError, JournalCorruptError

if TYPE_CHECKING:
    from wfcli.store.contract import JournalStore

__all__ = [
    "Finding",
    "Severity",
    "StoreReport",
    "check_journals",
    "interrupted_finding",
    "journal_order_problems",
    "order_findings",
]

Severity = Literal["problem", "note"]
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
        if isinstance(record, (Restarted, Forked)):
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


def order_findings(instance_id: str, where: str, records: Sequence[Record]) -> list[Finding]:
    """:func:`journal_order_problems` of a readable journal, as findings."""
    return [
        Finding("problem", "damaged-journal", where, f"out of order: {reason}", line, instance_id)
        for line, reason in journal_order_problems(records)
    ]


def interrupted_finding(instance_id: str, where: str, status: str, held: bool) -> Finding | None:
    """A note if the journal's ``status`` is ``running`` while nobody ``held`` its lease."""
    if status != "running" or held:
        return None
    return Finding(
        "note",
        "interrupted",
        where,
        f"interrupted (no process runs it): continue it with `wf resume {instance_id}`",
        None,
        instance_id,
    )


def check_journals(store: JournalStore) -> StoreReport:
    """Read every journal and inbox of ``store``, changing nothing (the default
    :meth:`~wfcli.store.contract.JournalStore.check`)."""
    findings: list[Finding] = []
    journals = messages = 0
    for instance_id in store.instance_ids():
        where = f"{store.location()} {instance_id}"
        try:
            records = store.read(instance_id)
            held = store.holder(instance_id) is not None
            messages += len(store.pending(instance_id))
        except JournalCorruptError as error:
            findings.append(
                Finding(
                    "problem", "damaged-journal", error.path, error.reason, error.line, instance_id
                )
            )
            journals += 1
            continue
        except InstanceNotFoundError:
            continue  # deleted while we looked
        journals += 1
        findings += order_findings(instance_id, where, records)
        interrupted = interrupted_finding(instance_id, where, fold(records).status, held)
        if interrupted is not None:
            findings.append(interrupted)
    return StoreReport(store.location(), journals, messages, 0, tuple(findings))
