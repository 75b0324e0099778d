"""JSON values and journal records, and their one-line JSON encoding.

Every journal line is one JSON object ``{"v": 1, "type": ..., "at": ..., ...}``;
``docs/journal-format.md`` documents each type. Decoding validates every field,
so a damaged or hostile journal fails with a :class:`RecordError` instead of
handing odd types to the executor. Nothing here evaluates or unpickles content.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, TypeAlias, Union

from .errors import NonRetryableError, ValueTooLargeError, WorkflowInputError

__all__ = [
    "FORMAT_VERSION",
    "MAX_ERROR_MESSAGE",
    "MAX_NESTING",
    "AttemptFailed",
    "AttemptStarted",
    "Created",
    "ErrorInfo",
    "Errored",
    "EventReceived",
    "Finished",
    "InboxMessage",
    "JsonValue",
    "MessageAction",
    "Paused",
    "Record",
    "RecordError",
    "Restarted",
    "Resumed",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "StepKind",
    "Suspended",
    "Terminated",
    "WaitStarted",
    "Warned",
    "check_event_output",
    "check_json",
    "decode_record",
    "encode_record",
    "format_time",
    "parse_time",
    "record_to_json",
]

FORMAT_VERSION = 1
MAX_NESTING = 256
MAX_ERROR_MESSAGE = 64 * 1024  # characters of an error message kept in the journal

# Spelled with Union because the alias is evaluated at runtime on Python 3.10.
JsonValue: TypeAlias = Union[  # noqa: UP007
    bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"], None
]
StepKind = Literal["do", "sleep", "event"]
_STEP_KINDS = ("do", "sleep", "event")
_WAIT_KINDS = ("sleep", "retry", "event")
_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class RecordError(ValueError):
    """A journal line is not a valid record; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- JSON values ------------------------------------------------------------


def check_json(value: object, what: str, limit: int | None = None) -> str:
    """Return ``value`` encoded as compact JSON, or raise naming ``what``.

    Only None, bool, int, finite float, str, list/tuple and dict with str keys
    are JSON; anything else raises :class:`WorkflowInputError` with the path to
    the offending item and its type. Over ``limit`` bytes raises
    :class:`ValueTooLargeError`.
    """
    _check_json_item(value, what, "", 0)
    try:
        encoded = _DUMPS(value)
    except ValueError:  # the only cause left: an int longer than int-to-text allows
        raise WorkflowInputError(what, "an integer has too many digits to write") from None
    if limit is not None:
        size = len(encoded.encode())
        if size > limit:
            raise ValueTooLargeError(what, size, limit)
    return encoded


def _check_text(text: str, what: str, where: str) -> None:
    """Refuse text that has no UTF-8 form (an unpaired surrogate, e.g. from a bad file name)."""
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise WorkflowInputError(
            what, f"{where} contains {text[error.start]!r}, an unpaired surrogate, not Unicode"
        ) from None


def _check_json_item(value: object, what: str, path: str, depth: int) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, what, f"text at {path or 'top level'}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WorkflowInputError(what, f"{value} at {path or 'top level'} is not a JSON number")
        return
    if depth >= MAX_NESTING:
        raise WorkflowInputError(what, f"nested deeper than {MAX_NESTING} levels")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_item(item, what, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise WorkflowInputError(
                    what,
                    f"key {key!r} at {path or 'top level'} is a {type(key).__name__}, "
                    "JSON keys must be strings",
                )
            _check_text(key, what, f"a key at {path or 'top level'}")
            _check_json_item(item, what, f"{path}.{key}" if path else key, depth + 1)
        return
    raise WorkflowInputError(
        what, f"{type(value).__name__} at {path or 'top level'} is not JSON-serialisable"
    )


# --- times ------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as stored in journals and JSON output."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; raises :class:`RecordError` on bad text."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"bad timestamp {text!r}") from None
    if moment.tzinfo is None:
        raise RecordError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(timezone.utc)


# --- records ----------------------------------------------------------------


def _journalable(text: str) -> str:
    """``text`` with unpaired surrogates (no UTF-8 form) written as ``\\udcff`` escapes."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as journaled: its type name and message."""

    name: str
    message: str

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        """The journaled form of ``error``; a message over 64 KiB keeps its start and end."""
        name = error.name if isinstance(error, NonRetryableError) else type(error).__name__
        message = _journalable(str(error))
        if len(message) > MAX_ERROR_MESSAGE:
            half = MAX_ERROR_MESSAGE // 2
            cut = len(message) - 2 * half
            message = f"{message[:half]} [... {cut} characters cut ...] {message[-half:]}"
        return cls(name=_journalable(name)[:MAX_ERROR_MESSAGE], message=message)

    def to_json(self) -> dict[str, JsonValue]:
        return {"name": self.name, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Base of every journal record: ``at`` is when it was written (UTC)."""

    TYPE: ClassVar[str] = ""
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Created(Record):
    """First line of every journal."""

    TYPE: ClassVar[str] = "created"
    instance_id: str
    workflow: str
    params: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Record):
    """A process took the instance's lock and began (or resumed) executing it."""

    TYPE: ClassVar[str] = "run_started"
    pid: int
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted(Record):
    """An attempt of a ``do`` step is about to call its callback (not fsynced)."""

    TYPE: ClassVar[str] = "attempt_started"
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCompleted(Record):
    """A step finished: a ``do`` result, a finished sleep, or a received event."""

    TYPE: ClassVar[str] = "step_completed"
    step: str
    kind: StepKind
    attempt: int
    output: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFailed(Record):
    """An attempt failed; ``retry_at`` is the absolute time of the next attempt, if any."""

    TYPE: ClassVar[str] = "attempt_failed"
    step: str
    attempt: int
    error: ErrorInfo
    retry_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(Record):
    """A step failed for good (retries exhausted, non-retryable, or event timeout)."""

    TYPE: ClassVar[str] = "step_failed"
    step: str
    kind: StepKind
    attempts: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStarted(Record):
    """A sleep or event wait began; ``until`` is its absolute wake time or deadline."""

    TYPE: ClassVar[str] = "wait_started"
    step: str
    kind: StepKind
    until: datetime
    event_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReceived(Record):
    """An event delivered to the instance (buffered until a wait consumes it)."""

    TYPE: ClassVar[str] = "event_received"
    message_id: str
    event_type: str
    payload: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspended(Record):
    """The run stopped to wait: for a sleep, a retry delay or an event."""

    TYPE: ClassVar[str] = "suspended"
    wait: Literal["sleep", "retry", "event"]
    step: str
    until: datetime
    event_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused(Record):
    """The instance was paused (``message_id`` of the request that did it)."""

    TYPE: ClassVar[str] = "paused"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(Record):
    """A pause was lifted."""

    TYPE: ClassVar[str] = "resumed"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminated(Record):
    """The instance was terminated; nothing runs after this."""

    TYPE: ClassVar[str] = "terminated"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Restarted(Record):
    """The instance starts over; only ``kept_steps`` keep their recorded results."""

    TYPE: ClassVar[str] = "restarted"
    message_id: str
    from_step: str | None
    kept_steps: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished(Record):
    """``run`` returned; ``output`` is its JSON return value."""

    TYPE: ClassVar[str] = "finished"
    output: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Errored(Record):
    """``run`` raised; the instance ends ``errored`` with this error."""

    TYPE: ClassVar[str] = "errored"
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class Warned(Record):
    """Something worth a person's attention, such as a duplicate step name."""

    TYPE: ClassVar[str] = "warning"
    step: str | None
    message: str


_RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (
        Created,
        RunStarted,
        AttemptStarted,
        StepCompleted,
        AttemptFailed,
        StepFailed,
        WaitStarted,
        EventReceived,
        Suspended,
        Paused,
        Resumed,
        Terminated,
        Restarted,
        Finished,
        Errored,
        Warned,
    )
}


def _encode_field(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, ErrorInfo):
        return value.to_json()
    return value


def encode_record(record: Record, number: int | None = None) -> str:
    """One journal line for ``record``, without the trailing newline.

    ``number`` is the record's 1-based line number in its journal (``"n"``); the
    journal store writes it so that a missing or duplicated line is detected.
    """
    document: dict[str, object] = {"v": FORMAT_VERSION}
    if number is not None:
        document["n"] = number
    document["type"] = record.TYPE
    for field in _FIELD_NAMES[type(record)]:
        document[field] = _encode_field(getattr(record, field))
    return _DUMPS(document)


# --- decoding ---------------------------------------------------------------

_Decoder = Callable[[object], object]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise RecordError(f"expected text, got {type(value).__name__}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"expected a non-negative integer, got {value!r}")
    return value


def _time(value: object) -> datetime:
    return parse_time(_text(value))


def _optional_time(value: object) -> datetime | None:
    return None if value is None else _time(value)


def _json(value: object) -> object:
    _check_nesting(value)
    return value  # otherwise, json.loads only ever produces JSON values


def _check_nesting(value: object) -> None:
    """Refuse a parsed value nested deeper than wfcli ever writes (``MAX_NESTING``), so
    nothing that walks it later (replay, a workflow's params) runs out of stack."""
    if not isinstance(value, (dict, list)):
        return
    stack: list[tuple[dict[str, object] | list[object], int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth >= MAX_NESTING:
            raise RecordError(f"nested deeper than {MAX_NESTING} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _error(value: object) -> ErrorInfo:
    if not isinstance(value, dict) or set(value) != {"name", "message"}:
        raise RecordError("expected an error object with name and message")
    return ErrorInfo(name=_text(value["name"]), message=_text(value["message"]))


def _choice(*allowed: str) -> _Decoder:
    def decode(value: object) -> str:
        if value not in allowed:
            raise RecordError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return decode


def _text_list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise RecordError(f"expected a list of text, got {type(value).__name__}")
    return [_text(item) for item in value]


_FIELD_DECODERS: dict[str, _Decoder] = {
    "at": _time,
    "instance_id": _text,
    "workflow": _text,
    "params": _json,
    "pid": _count,
    "host": _text,
    "step": _text,
    "attempt": _count,
    "attempts": _count,
    "output": _json,
    "error": _error,
    "retry_at": _optional_time,
    "until": _time,
    "event_type": _optional_text,
    "message_id": _text,
    "payload": _json,
    "wait": _choice(*_WAIT_KINDS),
    "kind": _choice(*_STEP_KINDS),
    "from_step": _optional_text,
    "kept_steps": _text_list,
    "message": _text,
}
# Per-type exceptions to the shared decoders above.
_OVERRIDES: dict[tuple[type[Record], str], _Decoder] = {
    (Warned, "step"): _optional_text,
    (WaitStarted, "kind"): _choice("sleep", "event"),
    (StepFailed, "kind"): _choice("do", "event"),
}
_FIELD_NAMES: dict[type[Record], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in _RECORD_TYPES.values()
}
# Looked up once per record type rather than once per field: journals are decoded
# record by record on every resume, status and list.
_DECODERS: dict[type[Record], tuple[tuple[str, _Decoder], ...]] = {
    cls: tuple((name, _OVERRIDES.get((cls, name)) or _FIELD_DECODERS[name]) for name in names)
    for cls, names in _FIELD_NAMES.items()
}
_ALLOWED_KEYS: dict[type[Record], frozenset[str]] = {
    cls: frozenset({"v", "n", "type", *names}) for cls, names in _FIELD_NAMES.items()
}


def decode_record(document: object) -> Record:
    """Build a record from one parsed journal line; raises :class:`RecordError`.

    The line number ``"n"``, when present, is checked by the journal store.
    """
    if not isinstance(document, dict):
        raise RecordError(f"expected a JSON object, got {type(document).__name__}")
    version = document.get("v")
    if version != FORMAT_VERSION:
        raise RecordError(
            f"format version {version!r} is not supported (this wfcli reads {FORMAT_VERSION})"
        )
    tag = document.get("type")
    cls = _RECORD_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise RecordError(f"unknown record type {tag!r}")
    allowed = _ALLOWED_KEYS[cls]
    if not document.keys() <= allowed:
        extra = sorted(set(document) - allowed)[0]
        raise RecordError(f"{tag} record has unexpected field {extra!r}")
    values: dict[str, Any] = {}
    for name, decoder in _DECODERS[cls]:
        if name not in document:
            raise RecordError(f"{tag} record lacks field {name!r}")
        try:
            values[name] = decoder(document[name])
        except RecordError as error:
            raise RecordError(f"{tag}.{name}: {error.reason}") from None
    return cls(**values)


_EVENT_OUTPUT_KEYS = frozenset({"id", "type", "payload", "timestamp"})


def check_event_output(output: object) -> None:
    """An event step's result is the event it took: id, type, payload and timestamp.

    Raises :class:`RecordError` otherwise (a journal damaged or written by hand).
    """
    if not isinstance(output, dict) or output.keys() != _EVENT_OUTPUT_KEYS:
        raise RecordError(
            "step_completed.output: an event step's result must be an object with "
            "id, type, payload and timestamp"
        )
    try:
        _text(output["id"])
        _text(output["type"])
        _time(output["timestamp"])
    except RecordError as error:
        raise RecordError(f"step_completed.output: {error.reason}") from None


def record_to_json(record: Record) -> dict[str, object]:
    """The record as a JSON-ready dict (the journal line's content)."""
    result: dict[str, object] = {"type": record.TYPE}
    for name in _FIELD_NAMES[type(record)]:
        result[name] = _encode_field(getattr(record, name))
    return result


# --- inbox messages -----------------------------------------------------------

MessageAction = Literal["event", "pause", "resume", "terminate", "restart"]
_ACTIONS = ("event", "pause", "resume", "terminate", "restart")


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxMessage:
    """A request from another process, applied to the journal by the lock holder."""

    message_id: str
    action: MessageAction
    sent_at: datetime
    event_type: str | None = None
    payload: JsonValue = None
    from_step: str | None = None

    def encode(self) -> str:
        return _DUMPS(
            {
                "v": FORMAT_VERSION,
                "message_id": self.message_id,
                "action": self.action,
                "sent_at": format_time(self.sent_at),
                "event_type": self.event_type,
                "payload": self.payload,
                "from_step": self.from_step,
            }
        )

    @classmethod
    def decode(cls, text: str) -> InboxMessage:
        """Parse an encoded message; raises :class:`RecordError`."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise RecordError(f"not JSON: {error}") from None
        if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
            raise RecordError("not a version 1 inbox message")
        action = _choice(*_ACTIONS)(document.get("action"))
        payload = document.get("payload")
        _check_nesting(payload)
        return cls(
            message_id=_text(document.get("message_id")),
            action=action,  # type: ignore[arg-type]
            sent_at=_time(document.get("sent_at")),
            event_type=_optional_text(document.get("event_type")),
            payload=payload,
            from_step=_optional_text(document.get("from_step")),
        )
