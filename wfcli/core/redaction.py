"""What views show of sensitive values: ``"[REDACTED]"`` (pure, no I/O).

A value is sensitive only where it was marked so, never by guessing: a step run with
``sensitive=True`` (its result), an event sent as sensitive (its payload), and the
parts of an instance's params named by JSON Pointers (RFC 6901) in its ``created``
record. The journal keeps the real values for the workflow and for replay; every view
(status, list, history, timeline, replay, their ``--json``) goes through here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

from wfcli.core.codec import Created, EventReceived, JsonValue, Record, StepCompleted

__all__ = ["REDACTED", "param_pointers", "redact", "redacted_event", "shown_record"]

REDACTED = "[REDACTED]"


def param_pointers(keys: Sequence[str]) -> list[str]:
    """The JSON Pointers of top-level params ``keys`` (``card`` -> ``/card``)."""
    return ["/" + key.replace("~", "~0").replace("/", "~1") for key in keys]


def _parts(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def redact(value: JsonValue, pointers: Sequence[str]) -> JsonValue:
    """``value`` with what each pointer names replaced by :data:`REDACTED` (a copy;
    a pointer to nothing changes nothing, ``""`` names the whole value)."""
    if not pointers:
        return value
    if "" in pointers:
        return REDACTED
    shown = copy.deepcopy(value)
    for pointer in pointers:
        *path, last = _parts(pointer)
        parent: JsonValue = shown
        for part in path:
            parent = _child(parent, part)
        if isinstance(parent, dict) and last in parent:
            parent[last] = REDACTED
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            parent[int(last)] = REDACTED
    return shown


def _child(value: JsonValue, part: str) -> JsonValue:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and part.isdigit() and int(part) < len(value):
        return value[int(part)]
    return None


def redacted_event(output: JsonValue) -> JsonValue:
    """An event step's result ``{"id", "type", "payload", "timestamp"}`` with its payload
    redacted."""
    if isinstance(output, dict):
        return {**output, "payload": REDACTED}
    return REDACTED


def shown_record(record: Record) -> Record:
    """``record`` as views show it: its sensitive values redacted."""
    if isinstance(record, Created) and record.sensitive_params:
        return replace(record, params=redact(record.params, record.sensitive_params))
    if isinstance(record, StepCompleted) and record.sensitive:
        shown = redacted_event(record.output) if record.kind == "event" else REDACTED
        return replace(record, output=shown)
    if isinstance(record, EventReceived) and record.sensitive:
        return replace(record, payload=REDACTED)
    return record
