"""The journal's integrity rules, the same for every store.

A journal is a sequence of records, line 1 first. :class:`JournalRules` checks each
record's place as it is read or appended: the first record is ``created`` for this
very instance, no other record is, an event step's result has the event's shape, and
a numbered line (``"n"``) carries its own line number, so a line missing, duplicated
or moved is found; every line has the format version of the first (a version 2 line
carries a checksum of its bytes, :func:`wfcli.core.codec.decode_line` checks it).
:func:`decode_journal` applies them to a journal's text, as the file store keeps it
and the PostgreSQL store keeps it line by line.
"""

from __future__ import annotations

from wfcli.core.codec import (
    FORMAT_VERSION,
    ROLLBACK_RECORDS,
    AttemptFailed,
    AttemptStarted,
    Created,
    Diverged,
    Errored,
    EventReceived,
    Finished,
    FormatVersion,
    PatchMarked,
    Paused,
    Record,
    RecordError,
    Restarted,
    Resumed,
    RollbackStarted,
    RunStarted,
    StepCompleted,
    StepFailed,
    Stopped,
    Suspended,
    Terminated,
    WaitStarted,
    Warned,
    check_event_output,
    checksum_matches,
    decode_line,
)
from wfcli.errors import JournalCorruptError

__all__ = ["JournalRules", "decode_journal", "decode_journal_line", "decode_new_lines"]


class JournalRules:
    """Checks records of one instance's journal in order; ``where`` names it in errors.

    ``version`` is the journal's format version: that of its line 1 once read
    (:func:`decode_journal_line` sets it), which is what a writer appends in.
    """

    def __init__(self, instance_id: str, where: str) -> None:
        self.instance_id = instance_id
        self.where = where
        self.version: FormatVersion = FORMAT_VERSION
        self._rollback_plan: frozenset[str] | None = None
        self._from_line_one = False

    def check(self, record: Record, line_no: int) -> None:
        """Raise :class:`JournalCorruptError` if ``record`` may not stand at ``line_no``.

        The rules that depend on earlier records (a rollback's) apply only when these
        rules have seen the journal from line 1: not to an append checked on its own.
        """
        if line_no == 1:
            self._from_line_one = True
        elif type(record) in _PLACED_ANYWHERE or (
            type(record) is StepCompleted and record.kind != "event"
        ):
            return  # most of a journal: nothing below applies to them after line 1
        if isinstance(record, ROLLBACK_RECORDS) and self._from_line_one:
            self._check_rollback(record, line_no)
        elif isinstance(record, Restarted):
            self._rollback_plan = None
        if isinstance(record, StepCompleted) and record.kind == "event":
            try:
                check_event_output(record.output)  # replay hands it back as the event
            except RecordError as error:
                raise JournalCorruptError(self.where, line_no, error.reason) from None
        if (line_no == 1) != isinstance(record, Created):
            reason = (
                "first record is not 'created'" if line_no == 1 else "a second 'created' record"
            )
            raise JournalCorruptError(self.where, line_no, reason)
        if isinstance(record, Created) and record.instance_id != self.instance_id:
            raise JournalCorruptError(
                self.where, line_no, f"journal is for instance {record.instance_id!r}"
            )

    def _check_rollback(self, record: Record, line_no: int) -> None:
        """A rollback's records follow its ``rollback_started`` and name steps of its plan."""
        if isinstance(record, RollbackStarted):
            if self._rollback_plan is not None:
                raise JournalCorruptError(self.where, line_no, "a second 'rollback_started'")
            self._rollback_plan = frozenset(record.plan)
            return
        if self._rollback_plan is None:
            raise JournalCorruptError(
                self.where, line_no, f"a {record.TYPE!r} record before 'rollback_started'"
            )
        step = getattr(record, "step", None)
        if step is not None and step not in self._rollback_plan:
            raise JournalCorruptError(
                self.where, line_no, f"a {record.TYPE!r} record for step {step!r}, not in the plan"
            )


_PLACED_ANYWHERE = frozenset(
    {
        AttemptStarted,
        AttemptFailed,
        StepFailed,
        RunStarted,
        WaitStarted,
        Suspended,
        EventReceived,
        Paused,
        Resumed,
        Terminated,
        Stopped,
        Finished,
        Errored,
        Warned,
        PatchMarked,
        Diverged,
    }
)
"""The record types (exactly these: not subclasses) that no rule of :meth:`JournalRules.check`
concerns but that they are not line 1."""


def decode_journal_line(raw: bytes, line_no: int, rules: JournalRules) -> Record:
    """One complete journal line (without its newline) as a record, checked against
    ``rules``; raises :class:`JournalCorruptError` naming the line."""
    try:
        record, version, number = decode_line(raw)
    except RecordError as error:
        raise JournalCorruptError(rules.where, line_no, error.reason) from None
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else "not JSON"
        raise JournalCorruptError(rules.where, line_no, reason) from None
    if line_no == 1:
        rules.version = version
    elif version != rules.version:
        raise JournalCorruptError(
            rules.where,
            line_no,
            f"a version {version} line in a version {rules.version} journal "
            "(a journal never mixes versions)",
        )
    rules.check(record, line_no)
    if number != line_no:
        raise JournalCorruptError(
            rules.where,
            line_no,
            f"record number {number!r} where {line_no} belongs: "
            "a line is missing, duplicated or out of place",
        )
    return record


def decode_journal(data: bytes, rules: JournalRules) -> tuple[list[Record], int]:
    """Decode a journal's bytes; returns the records and the length of its complete lines.

    Everything after the last newline is a torn tail (a crash mid-write) and is not
    a record, unless it is a line with a matching checksum and one more byte: a write
    puts a newline there, so that byte is a damaged newline. Damage raises
    :class:`JournalCorruptError`.
    """
    where = rules.where
    if not data:
        raise JournalCorruptError(where, 1, "empty journal (no created record)")
    records, end = decode_new_lines(data, 1, rules)
    if len(data) > end + 1 and checksum_matches(data[end:-1]):
        raise JournalCorruptError(
            where,
            len(records) + 1,
            f"the newline ending this line was changed (to byte 0x{data[-1]:02x}); the "
            "line itself is whole: put the newline back",
        )
    if not records:
        raise JournalCorruptError(where, 1, "no complete record (torn first line)")
    return records, end


def decode_new_lines(
    data: bytes, first_line_no: int, rules: JournalRules
) -> tuple[list[Record], int]:
    """Decode the complete lines of ``data``, the bytes of a journal from its line
    ``first_line_no`` on (``rules`` know its version); returns the records and the length
    of those lines. A torn last line is left for a later read to find whole."""
    end = data.rfind(b"\n") + 1
    records = [
        decode_journal_line(raw, line_no, rules)
        for line_no, raw in enumerate(data[:end].split(b"\n")[:-1], start=first_line_no)
    ]
    return records, end
