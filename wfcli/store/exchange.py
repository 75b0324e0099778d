"""The exchange format of ``wf export`` / ``wf import``: instances as JSON lines.

Each instance is a header line, then its journal lines exactly as a store keeps them
(``encode_record(record, n)``), then its unapplied inbox messages::

    {"wfcli_export":1,"instance":"order-1","lines":4,"messages":0}
    {"v":1,"type":"created",...,"n":1}
    ...

A file holds any number of instances, one after another. Reading checks every journal
line with the shared journal rules (:mod:`wfcli.store.validation`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from wfcli.core.codec import InboxMessage, Record, RecordError, encode_record
from wfcli.errors import JournalCorruptError
from wfcli.store.validation import JournalRules, decode_journal_line

__all__ = ["EXPORT_VERSION", "ExportedInstance", "decode_export", "encode_export"]

EXPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ExportedInstance:
    """One instance as exported: its whole journal and its unapplied messages."""

    instance_id: str
    records: Sequence[Record]
    messages: Sequence[InboxMessage]


def encode_export(instance: ExportedInstance) -> str:
    """The instance's lines, each ending in a newline."""
    header = {
        "wfcli_export": EXPORT_VERSION,
        "instance": instance.instance_id,
        "lines": len(instance.records),
        "messages": len(instance.messages),
    }
    lines = [json.dumps(header, separators=(",", ":"), ensure_ascii=False)]
    lines += [encode_record(record, n) for n, record in enumerate(instance.records, start=1)]
    lines += [message.encode() for message in instance.messages]
    return "".join(line + "\n" for line in lines)


def decode_export(text: str, where: str) -> Iterator[ExportedInstance]:
    """The instances of an export document; raises :class:`JournalCorruptError` naming
    the line of ``where`` (the file) that is wrong."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    position = 0
    while position < len(lines):
        header_line = position + 1
        instance_id, count, message_count = _header(lines[position], where, header_line)
        body = lines[position + 1 : position + 1 + count + message_count]
        if len(body) < count + message_count:
            raise JournalCorruptError(where, header_line, "the document ends inside an instance")
        rules = JournalRules(instance_id, where)
        records = []
        for n, line in enumerate(body[:count], start=1):
            try:
                records.append(decode_journal_line(line.encode(), n, rules))
            except JournalCorruptError as error:
                raise JournalCorruptError(where, header_line + n, error.reason) from None
        messages = []
        for offset, line in enumerate(body[count:], start=header_line + count + 1):
            try:
                messages.append(InboxMessage.decode(line))
            except RecordError as error:
                raise JournalCorruptError(where, offset, error.reason) from None
        yield ExportedInstance(instance_id, records, messages)
        position += 1 + count + message_count


def _header(line: str, where: str, line_no: int) -> tuple[str, int, int]:
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("wfcli_export") != EXPORT_VERSION:
        raise JournalCorruptError(
            where, line_no, f"not a wfcli export header (version {EXPORT_VERSION})"
        )
    instance_id, count, messages = (
        header.get("instance"),
        header.get("lines"),
        header.get("messages"),
    )
    if (
        not isinstance(instance_id, str)
        or not isinstance(count, int)
        or not isinstance(messages, int)
        or count < 1
        or messages < 0
    ):
        raise JournalCorruptError(where, line_no, "a header needs instance, lines >= 1, messages")
    return instance_id, count, messages
