"""The journal's integrity rules, the same for every store.

A journal is a sequence of records, line 1 first. :class:`JournalRules` checks each
record's place as it is read or appended: the first record is ``created`` for this
very instance, no other record is, an event step's result has the event's shape, and
a numbered line (``"n"``) carries its own line number, so a line missing, duplicated
or moved is found. :func:`decode_journal` applies them to a journal's text, as the
file store keeps it and the PostgreSQL store keeps it line by line.
"""

from __future__ import annotations

from wfcli.core.codec import (
    Created,
    Record,
    RecordError,
    StepCompleted,
    check_event_output,
    decode_record,
    parse_line,
)
from wfcli.errors import JournalCorruptError

__all__ = ["JournalRules", "decode_journal", "decode_journal_line"]


class JournalRules:
    """Checks records of one instance's journal in order; ``where`` names it in errors."""

    def __init__(self, instance_id: str, where: str) -> None:
        self.instance_id = instance_id
        self.where = where

    def check(self, record: Record, line_no: int) -> None:
        """Raise :class:`JournalCorruptError` if ``record`` may not stand at ``line_no``."""
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


def decode_journal_line(raw: bytes, line_no: int, rules: JournalRules) -> Record:
    """One complete journal line (without its newline) as a record, checked against
    ``rules``; raises :class:`JournalCorruptError` naming the line."""
    try:
        document = parse_line(raw)
        record = decode_record(document)
    except RecordError as error:
        raise JournalCorruptError(rules.where, line_no, error.reason) from None
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else "not JSON"
        raise JournalCorruptError(rules.where, line_no, reason) from None
    rules.check(record, line_no)
    # decode_record took it, so it is an object; the check narrows the type
    number = document.get("n") if isinstance(document, dict) else None
    if number != line_no:
        raise JournalCorruptError(
            rules.where,
            line_no,
            f"record number {number!r} where {line_no} belongs: "
            "a line is missing, duplicated or out of place",
        )
    return record


def decode_journal(data: bytes, instance_id: str, where: str) -> tuple[list[Record], int]:
    """Decode a journal's bytes; returns the records and the length of its complete lines.

    Everything after the last newline is a torn tail (a crash mid-write) and is not
    a record; damage anywhere else raises :class:`JournalCorruptError`.
    """
    if not data:
        raise JournalCorruptError(where, 1, "empty journal (no created record)")
    rules = JournalRules(instance_id, where)
    end = data.rfind(b"\n") + 1
    records = [
        decode_journal_line(raw, line_no, rules)
        for line_no, raw in enumerate(data[:end].split(b"\n")[:-1], start=1)
    ]
    if not records:
        raise JournalCorruptError(where, 1, "no complete record (torn first line)")
    return records, end
