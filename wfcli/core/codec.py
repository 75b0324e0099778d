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
from json.encoder import encode_basestring as _encode_text
from operator import attrgetter
from typing import ClassVar, Literal, TypeAlias, Union

from wfcli.errors import NonRetryableError, ValueTooLargeError, WorkflowInputError

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
    "format_optional_time",
    "format_time",
    "parse_line",
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
        encoded = _encode_value(value)  # _DUMPS(value), the common scalars done directly
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


_RAW_DECODE = json.JSONDecoder().raw_decode  # what json.loads uses, without its wrapping


def parse_line(line: bytes) -> object:
    """``json.loads(line)`` for one journal line: the same value, or the same error.

    ``json.loads`` of bytes guesses the encoding, decodes, skips whitespace on
    both sides and then parses; for a line as wfcli writes it (UTF-8, an object,
    nothing around it) the parse is all that is needed, at less than half the
    cost per line. Any other line is handed to ``json.loads`` itself.
    """
    # json.detect_encoding says UTF-8 for bytes starting "{" unless a NUL follows.
    if line[:1] == b"{" and line[1:2] != b"\x00":
        try:
            text = line.decode("utf-8", "surrogatepass")  # the error handler json.loads uses
            value, end = _RAW_DECODE(text)
        except (ValueError, RecursionError):  # json.loads says what is wrong
            pass
        else:
            if end == len(text):
                return value
    return json.loads(line)


# --- times ------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as stored in journals and JSON output."""
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="microseconds")


def format_optional_time(moment: datetime | None) -> str | None:
    """:func:`format_time`, and None for no time (JSON output's ``null``)."""
    return None if moment is None else format_time(moment)


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; raises :class:`RecordError` on bad text."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"bad timestamp {text!r}") from None
    zone = moment.tzinfo
    if zone is timezone.utc:  # what wfcli writes: nothing to convert
        return moment
    if zone is None:
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


# Records compare, hash and print through Record's methods instead of a generated
# copy per type (eq=False, repr=False): each generated method costs a compile at
# import, ~10 ms of `wf`'s start for the 17 types.
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Record:
    """Base of every journal record: ``at`` is when it was written (UTC)."""

    TYPE: ClassVar[str] = ""
    at: datetime

    def _values(self) -> tuple[object, ...]:
        return _LAYOUTS[type(self)].values(self)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        layout = _LAYOUTS[type(self)]
        fields_text = ", ".join(
            f"{name}={value!r}" for name, value in zip(layout.names, self._values(), strict=True)
        )
        return f"{type(self).__name__}({fields_text})"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Created(Record):
    """First line of every journal."""

    TYPE: ClassVar[str] = "created"
    instance_id: str
    workflow: str
    params: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunStarted(Record):
    """A process took the instance's lock and began (or resumed) executing it."""

    TYPE: ClassVar[str] = "run_started"
    pid: int
    host: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class AttemptStarted(Record):
    """An attempt of a ``do`` step is about to call its callback (not fsynced)."""

    TYPE: ClassVar[str] = "attempt_started"
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StepCompleted(Record):
    """A step finished: a ``do`` result, a finished sleep, or a received event."""

    TYPE: ClassVar[str] = "step_completed"
    step: str
    kind: StepKind
    attempt: int
    output: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class AttemptFailed(Record):
    """An attempt failed; ``retry_at`` is the absolute time of the next attempt, if any."""

    TYPE: ClassVar[str] = "attempt_failed"
    step: str
    attempt: int
    error: ErrorInfo
    retry_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StepFailed(Record):
    """A step failed for good (retries exhausted, non-retryable, or event timeout)."""

    TYPE: ClassVar[str] = "step_failed"
    step: str
    kind: StepKind
    attempts: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class WaitStarted(Record):
    """A sleep or event wait began; ``until`` is its absolute wake time or deadline."""

    TYPE: ClassVar[str] = "wait_started"
    step: str
    kind: StepKind
    until: datetime
    event_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class EventReceived(Record):
    """An event delivered to the instance (buffered until a wait consumes it)."""

    TYPE: ClassVar[str] = "event_received"
    message_id: str
    event_type: str
    payload: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Suspended(Record):
    """The run stopped to wait: for a sleep, a retry delay or an event."""

    TYPE: ClassVar[str] = "suspended"
    wait: Literal["sleep", "retry", "event"]
    step: str
    until: datetime
    event_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Paused(Record):
    """The instance was paused (``message_id`` of the request that did it)."""

    TYPE: ClassVar[str] = "paused"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Resumed(Record):
    """A pause was lifted."""

    TYPE: ClassVar[str] = "resumed"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Terminated(Record):
    """The instance was terminated; nothing runs after this."""

    TYPE: ClassVar[str] = "terminated"
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Restarted(Record):
    """The instance starts over; only ``kept_steps`` keep their recorded results."""

    TYPE: ClassVar[str] = "restarted"
    message_id: str
    from_step: str | None
    kept_steps: list[str]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Finished(Record):
    """``run`` returned; ``output`` is its JSON return value."""

    TYPE: ClassVar[str] = "finished"
    output: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Errored(Record):
    """``run`` raised; the instance ends ``errored`` with this error."""

    TYPE: ClassVar[str] = "errored"
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
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


def _encode_value(value: object) -> str:
    """``_DUMPS(_encode_field(value))``: a field's JSON, the common types without the encoder."""
    if isinstance(value, str):
        return _encode_text(value)
    if type(value) is int:  # not a bool, which is an int too
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return f'"{format_time(value)}"'
    return _DUMPS(_encode_field(value))


_OPENING = f'{{"v":{FORMAT_VERSION},'


def encode_record(record: Record, number: int | None = None) -> str:
    """One journal line for ``record``, without the trailing newline.

    ``number`` is the record's 1-based line number in its journal (``"n"``); the
    journal store writes it so that a missing or duplicated line is detected.
    """
    layout = _LAYOUTS[type(record)]
    parts = [_OPENING if number is None else f'{_OPENING}"n":{_encode_value(number)},']
    parts.append(layout.type_part)
    for key_part, value in zip(layout.key_parts, layout.values(record), strict=True):
        parts.append(key_part)
        parts.append(_encode_value(value))
    parts.append("}")
    return "".join(parts)


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
    if not isinstance(value, str):
        raise RecordError(f"expected text, got {type(value).__name__}")
    return parse_time(value)


def _optional_time(value: object) -> datetime | None:
    return None if value is None else _time(value)


def _json(value: object) -> object:
    if isinstance(value, (dict, list)):
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


@dataclass(frozen=True, slots=True)
class _Layout:
    """One record type as its journal lines lay it out, worked out once per type:
    journals are encoded and decoded record by record on every step, resume,
    status and list."""

    record_type: type[Record]
    names: tuple[str, ...]
    """Its fields, in the order lines list them."""
    decoding: tuple[tuple[str, _Decoder, Callable[[object, object], None]], ...]
    """Each field's name, decoder and slot setter."""
    keys: frozenset[str]
    """Every key of a line: ``v``, ``n``, ``type`` and the fields."""
    keys_unnumbered: frozenset[str]
    """The same without ``n`` (a line numbered by the store is checked there)."""
    type_part: str
    """``"type":"..."`` as lines have it."""
    key_parts: tuple[str, ...]
    """``,"name":`` of each field, to go before its JSON value."""
    values: Callable[[Record], tuple[object, ...]]
    """A record's field values, in order."""

    @classmethod
    def of(cls, record_type: type[Record]) -> _Layout:
        names = tuple(f.name for f in fields(record_type))
        assert len(names) > 1, "attrgetter of one name returns a bare value"
        keys = frozenset({"v", "n", "type", *names})
        return cls(
            record_type=record_type,
            names=names,
            decoding=tuple(
                (
                    name,
                    _OVERRIDES.get((record_type, name)) or _FIELD_DECODERS[name],
                    getattr(record_type, name).__set__,
                )
                for name in names
            ),
            keys=keys,
            keys_unnumbered=keys - {"n"},
            type_part=f'"type":{_DUMPS(record_type.TYPE)}',
            key_parts=tuple(f",{_DUMPS(name)}:" for name in names),
            values=attrgetter(*names),
        )


_LAYOUTS: dict[type[Record], _Layout] = {
    record_type: _Layout.of(record_type) for record_type in _RECORD_TYPES.values()
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
    record_type = _RECORD_TYPES.get(tag) if isinstance(tag, str) else None
    if record_type is None:
        raise RecordError(f"unknown record type {tag!r}")
    layout = _LAYOUTS[record_type]
    keys = document.keys()
    complete = keys in (layout.keys, layout.keys_unnumbered)
    if complete:
        plain = _PLAIN_DECODERS.get(record_type)
        record = None if plain is None else plain(document)
        if record is not None:
            return record
    elif not keys <= layout.keys:
        extra = sorted(set(document) - layout.keys)[0]
        raise RecordError(f"{tag} record has unexpected field {extra!r}")
    return _decode_fields(document, layout, complete)


def _decode_fields(document: dict[str, object], layout: _Layout, complete: bool) -> Record:
    """Decode the fields of a line with no unexpected key; ``complete`` if none is missing."""
    tag = layout.record_type.TYPE
    # Built slot by slot: a frozen dataclass's __init__ sets each field through
    # object.__setattr__ and costs as much again as decoding the fields.
    record = object.__new__(layout.record_type)
    for name, decode, set_field in layout.decoding:
        if not complete and name not in document:
            raise RecordError(f"{tag} record lacks field {name!r}")
        try:
            set_field(record, decode(document[name]))
        except RecordError as error:
            raise RecordError(f"{tag}.{name}: {error.reason}") from None
    return record


# The two records of every ``do`` step, as wfcli writes them, decoded without a call
# per field: they are most of any long journal. Given a line with every key and no
# other, each returns the record, or None for anything unusual, which the general
# decoder above then accepts or refuses with its reason.


def _plain_time(value: object) -> datetime | None:
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is timezone.utc:
            return moment
    return None


def _plain_attempt_started(document: dict[str, object]) -> Record | None:
    at = _plain_time(document["at"])
    step = document["step"]
    attempt = document["attempt"]
    if at is None or type(step) is not str or type(attempt) is not int or attempt < 0:
        return None
    record = object.__new__(AttemptStarted)
    _set_attempt_started_at(record, at)
    _set_attempt_started_step(record, step)
    _set_attempt_started_attempt(record, attempt)
    return record


def _plain_step_completed(document: dict[str, object]) -> Record | None:
    at = _plain_time(document["at"])
    step = document["step"]
    kind = document["kind"]
    attempt = document["attempt"]
    output = document["output"]
    if (
        at is None
        or type(step) is not str
        or kind not in _STEP_KINDS
        or type(attempt) is not int
        or attempt < 0
        or (isinstance(output, (dict, list)) and not _within_nesting(output))
    ):
        return None
    record = object.__new__(StepCompleted)
    _set_step_completed_at(record, at)
    _set_step_completed_step(record, step)
    _set_step_completed_kind(record, kind)
    _set_step_completed_attempt(record, attempt)
    _set_step_completed_output(record, output)
    return record


def _within_nesting(value: object) -> bool:
    try:
        _check_nesting(value)
    except RecordError:
        return False
    return True


(_set_attempt_started_at, _set_attempt_started_step, _set_attempt_started_attempt) = (
    setter for _, _, setter in _LAYOUTS[AttemptStarted].decoding
)
(
    _set_step_completed_at,
    _set_step_completed_step,
    _set_step_completed_kind,
    _set_step_completed_attempt,
    _set_step_completed_output,
) = (setter for _, _, setter in _LAYOUTS[StepCompleted].decoding)
_PLAIN_DECODERS: dict[type[Record], Callable[[dict[str, object]], Record | None]] = {
    AttemptStarted: _plain_attempt_started,
    StepCompleted: _plain_step_completed,
}


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
    for name in _LAYOUTS[type(record)].names:
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
