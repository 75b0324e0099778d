"""JSON values and journal records, and their one-line JSON encoding.

Every journal line is one JSON object ``{"v":2,"n":N,"type":...,"at":...,"crc":"..."}``
that ends in the CRC-32 of its bytes before that tail (version 1 lines, still read, have
no ``crc``); ``docs/journal-format.md`` documents each type and the checksum. The record
classes (and :class:`InboxMessage`) are the schema: one encoder and one decoder, worked
out from their fields and declared types, write and read them all. Decoding validates
every field, so a damaged or hostile journal fails with a :class:`RecordError` instead
of handing odd types to the executor. For the record types a process reads most, that
decoder is also compiled into straight-line code from the same layouts (see
``_fast_decoder``), which takes only what it takes and leaves the rest to it. Nothing
here evaluates or unpickles content: that code is made of the record classes' field
names, never of anything read.
"""

import json
import json.scanner
import math
import os
import traceback
import zlib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from json.encoder import encode_basestring as _encode_text
from operator import attrgetter
from types import UnionType
from typing import Any, ClassVar, Generic, Literal, TypeAlias, TypeVar, Union, get_args, get_origin

from wfcli.errors import NonRetryableError, ValueTooLargeError, WorkflowInputError

__all__ = [
    "FORMAT_VERSION",
    "MAX_ERROR_MESSAGE",
    "MAX_NESTING",
    "MAX_TRACEBACK",
    "MAX_TRACEBACK_FRAMES",
    "ROLLBACK_RECORDS",
    "AttemptFailed",
    "AttemptStarted",
    "Created",
    "Diverged",
    "ErrorInfo",
    "Errored",
    "EventReceived",
    "Finished",
    "Forked",
    "FormatVersion",
    "InboxMessage",
    "JsonValue",
    "MessageAction",
    "PatchMarked",
    "Paused",
    "Record",
    "RecordError",
    "Restarted",
    "Resumed",
    "RollbackAttemptFailed",
    "RollbackAttemptStarted",
    "RollbackCompleted",
    "RollbackFailed",
    "RollbackFinished",
    "RollbackReason",
    "RollbackStarted",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "StepKind",
    "Stopped",
    "Suspended",
    "Terminated",
    "WaitStarted",
    "Warned",
    "add_checksum",
    "check_event_output",
    "check_json",
    "checksum_matches",
    "decode_line",
    "decode_record",
    "encode_record",
    "format_optional_time",
    "format_time",
    "parse_line",
    "parse_time",
    "record_to_json",
    "traceback_of",
]

FormatVersion = Literal[1, 2]
FORMAT_VERSION: FormatVersion = 2
"""The version new journals are written in; a journal keeps that of its first line."""
_INBOX_VERSION = 1  # a message is a whole file, written aside and renamed: no checksum
_CHECKSUM_KEY = "crc"
_TAIL_HEAD = b',"crc":"'
_TAIL_BYTES = len(_TAIL_HEAD) + 8 + 2  # the head, 8 hex digits, '"}'
_V2_OPENING = b'{"v":2,'
_crc32 = zlib.crc32
MAX_NESTING = 256
MAX_ERROR_MESSAGE = 64 * 1024  # characters of an error message kept in the journal
MAX_TRACEBACK = 8 * 1024  # characters of a traceback kept in the journal
MAX_TRACEBACK_FRAMES = 20

# Spelled with Union because the alias is evaluated at runtime on Python 3.10.
JsonValue: TypeAlias = Union[  # noqa: UP007
    bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"], None
]
StepKind = Literal["do", "sleep", "event", "instance"]
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


# What json.loads parses with: raw_decode's scanner, called without raw_decode around it.
# (typeshed types the C scanner's argument as the scanner itself.)
_SCAN: Callable[[str, int], tuple[object, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)


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
            value, end = _SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):  # json.loads says what is wrong
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


_from_text = datetime.fromisoformat


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; raises :class:`RecordError` on bad text."""
    try:
        moment = _from_text(text)
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


_WFCLI_FILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def traceback_of(error: BaseException, inner: str | None = None) -> str | None:
    """Where ``error`` was raised in the user's code, as Python prints a traceback's
    frames (``File "...", line N, in f`` and the line), or None if no frame is theirs.

    ``inner`` is a traceback of the same kind that goes on from the last frame (a failed
    step's, under the ``run`` that called it). wfcli's own frames are left out; at most
    the last ``MAX_TRACEBACK_FRAMES`` frames of ``error`` and the last ``MAX_TRACEBACK``
    characters of the whole are kept.
    """
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(_WFCLI_FILES)
    ]
    text = "".join(
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
        + (f"    {frame.line.strip()}\n" if frame.line else "")
        for frame in frames[-MAX_TRACEBACK_FRAMES:]
    ) + (inner or "")
    if not text:
        return None
    text = _journalable(text.rstrip("\n"))
    if len(text) > MAX_TRACEBACK:
        text = "  [... frames cut ...]\n" + text[-MAX_TRACEBACK:]
    return text


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as journaled: its type name, its message and, when the user's code
    raised it, its traceback there (:func:`traceback_of`). Errors compare by name and
    message: the same error raised from a moved line is the same outcome."""

    name: str
    message: str
    traceback: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, error: BaseException) -> "ErrorInfo":
        """The journaled form of ``error``; a message over 64 KiB keeps its start and end."""
        name = error.name if isinstance(error, NonRetryableError) else type(error).__name__
        message = _journalable(str(error))
        if len(message) > MAX_ERROR_MESSAGE:
            half = MAX_ERROR_MESSAGE // 2
            cut = len(message) - 2 * half
            message = f"{message[:half]} [... {cut} characters cut ...] {message[-half:]}"
        return cls(
            name=_journalable(name)[:MAX_ERROR_MESSAGE],
            message=message,
            traceback=traceback_of(error),
        )

    def to_json(self) -> dict[str, JsonValue]:
        """``{"name", "message"}``, and ``"traceback"`` when there is one."""
        if self.traceback is None:
            return {"name": self.name, "message": self.message}
        return {"name": self.name, "message": self.message, "traceback": self.traceback}


# A record field with this metadata (it defaults to None) is left out of the line when
# None (and read back as None), so lines written before it existed stay as they were.
_LEFT_OUT_WHEN_NONE = "left out when None"


# Records compare, hash and print through Record's methods instead of a generated
# copy per type (eq=False, repr=False): each generated method costs a compile at
# import, ~10 ms of `wf`'s start for the 19 types.
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
    version: str | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """The workflow's ``version`` in workflows.toml; the line leaves it out when None."""
    priority: int | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """``wf run --priority``: workers admit higher numbers first (None: 0)."""
    schedule: JsonValue = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """For an instance a schedule started: ``{"schedule", "cron", "scheduled_time"}``."""
    sensitive_params: list[str] | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """The parts of ``params`` views redact, as JSON Pointers (``""``: all of them,
    ``"/card"``: the key ``card``); the line leaves it out when None."""
    deadline: datetime | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """When the instance times out (``WorkflowTimeoutError``); left out when it has none."""
    parent: str | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """The instance whose step created this one; left out when none did."""


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
    rollback: bool | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """True when the step has a rollback (it then joins a rollback's plan); left out
    otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StepCompleted(Record):
    """A step finished: a ``do`` result, a finished sleep, or a received event."""

    TYPE: ClassVar[str] = "step_completed"
    step: str
    kind: StepKind
    attempt: int
    output: JsonValue
    sensitive: bool | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """True when views redact the output (an event step's: its payload); else left out."""


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
    kind: Literal["do", "event", "instance"]
    attempts: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class WaitStarted(Record):
    """A sleep or event wait began; ``until`` is its absolute wake time or deadline."""

    TYPE: ClassVar[str] = "wait_started"
    step: str
    kind: Literal["sleep", "event", "instance"]
    until: datetime
    event_type: str | None
    instance_id: str | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """The instance a ``wait_for_instance`` step waits for; left out for other waits."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class EventReceived(Record):
    """An event delivered to the instance (buffered until a wait consumes it)."""

    TYPE: ClassVar[str] = "event_received"
    message_id: str
    event_type: str
    payload: JsonValue
    sensitive: bool | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """True when views redact the payload; else left out."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Suspended(Record):
    """The run stopped to wait: for a sleep, a retry delay or an event."""

    TYPE: ClassVar[str] = "suspended"
    wait: Literal["sleep", "retry", "event", "instance"]
    step: str
    until: datetime
    event_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Stopped(Record):
    """The worker executing the instance was stopped (SIGINT, SIGTERM) between steps;
    the instance is ``queued`` again, for the next worker."""

    TYPE: ClassVar[str] = "stopped"
    pid: int
    host: str


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
class Forked(Record):
    """Last line of a fork's copied journal (``wf restart ID --from-step NAME --as NEW``):
    the copy starts over as :class:`Restarted` does, keeping only ``kept_steps``; the
    records above it are ``source``'s, as they were."""

    TYPE: ClassVar[str] = "forked"
    source: str
    from_step: str
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
class PatchMarked(Record):
    """``step.patched(patch)`` was decided: ``applied`` is the answer for good.

    ``steps_before`` is how many of the instance's steps the run had reached then.
    """

    TYPE: ClassVar[str] = "patch_marked"
    patch: str
    applied: bool
    steps_before: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Diverged(Record):
    """The code no longer fits the history: nothing new ran, the instance is paused.

    ``kind`` is a ``wf replay`` finding kind; ``position`` (1-based, in step order),
    ``expected`` (what the history has) and ``found`` (what the code asked for) say where.
    """

    TYPE: ClassVar[str] = "diverged"
    kind: str
    step: str | None
    position: int | None
    expected: str
    found: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Warned(Record):
    """Something worth a person's attention, such as a duplicate step name."""

    TYPE: ClassVar[str] = "warning"
    step: str | None
    message: str


RollbackReason = Literal["errored", "terminated"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackStarted(Record):
    """The instance rolls back: ``plan`` is the steps whose rollbacks run, in order.

    ``reason`` is how it ends afterwards; ``error`` is the original error (``errored``).
    """

    TYPE: ClassVar[str] = "rollback_started"
    reason: RollbackReason
    plan: list[str]
    error: ErrorInfo | None
    message_id: str | None
    """The ``terminate`` request that asked for it (``terminated``), else None."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackAttemptStarted(Record):
    """An attempt of step ``step``'s rollback is about to call it."""

    TYPE: ClassVar[str] = "rollback_attempt_started"
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackAttemptFailed(Record):
    """An attempt of a rollback failed; ``retry_at`` is when the next one runs, if any."""

    TYPE: ClassVar[str] = "rollback_attempt_failed"
    step: str
    attempt: int
    error: ErrorInfo
    retry_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackCompleted(Record):
    """Step ``step``'s rollback returned: it never runs again."""

    TYPE: ClassVar[str] = "rollback_completed"
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackFailed(Record):
    """Step ``step``'s rollback failed for good; the rollbacks after it do not run."""

    TYPE: ClassVar[str] = "rollback_failed"
    step: str
    attempts: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RollbackFinished(Record):
    """The rollback is over: ``completed`` of the plan's ``total`` rollbacks ran."""

    TYPE: ClassVar[str] = "rollback_finished"
    status: Literal["complete", "failed"]
    completed: int
    total: int


ROLLBACK_RECORDS = (
    RollbackStarted,
    RollbackAttemptStarted,
    RollbackAttemptFailed,
    RollbackCompleted,
    RollbackFailed,
    RollbackFinished,
)
"""The records of a rollback, from its plan to its end."""

MessageAction = Literal["event", "pause", "resume", "terminate", "restart", "wake"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxMessage:
    """A request from another process, applied to the journal by the lock holder."""

    message_id: str
    action: MessageAction
    sent_at: datetime
    event_type: str | None = None
    payload: JsonValue = None
    from_step: str | None = None
    sensitive: bool | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """True for an event whose payload views redact; else left out."""
    rollback: bool | None = field(default=None, metadata={_LEFT_OUT_WHEN_NONE: True})
    """For ``terminate``: run the rollbacks first (left out unless asked for)."""

    def encode(self) -> str:
        """The message file's JSON: ``{"v":1, <fields in order>}`` (no checksum)."""
        return _INBOX.encoder(_INBOX_VERSION)(self, "")

    @classmethod
    def decode(cls, text: str) -> "InboxMessage":
        """Parse an encoded message (a field with a default may be left out); raises
        :class:`RecordError`."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise RecordError(f"not JSON: {error}") from None
        if not isinstance(document, dict) or document.get("v") != _INBOX_VERSION:
            raise RecordError("not a version 1 inbox message")
        return _decode(_INBOX, document, _INBOX.keys)


# --- reading and writing: one encoder and one decoder, derived from the classes ---------

_Check = Callable[[object], object]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise RecordError(f"expected text, got {type(value).__name__}")
    return value


def _count(value: object) -> int:
    if type(value) is int and value >= 0:  # as parsed; the isinstance checks are slower
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"expected a non-negative integer, got {value!r}")
    return value


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise RecordError(f"expected text, got {type(value).__name__}")
    try:
        moment = _from_text(value)
    except ValueError:
        raise RecordError(f"bad timestamp {value!r}") from None
    # What wfcli writes is in UTC already; parse_time says what is wrong with the rest.
    return moment if moment.tzinfo is timezone.utc else parse_time(value)


def _json(value: object) -> object:
    if isinstance(value, (dict, list)):
        _check_nesting(value)
    return value  # otherwise, json.loads only ever produces JSON values


def _check_nesting(value: dict[str, object] | list[object]) -> None:
    """Refuse a parsed value nested deeper than wfcli ever writes (``MAX_NESTING``), so
    nothing that walks it later (replay, a workflow's params) runs out of stack."""
    level: list[dict[str, object] | list[object]] = [value]
    for _ in range(MAX_NESTING):  # level by level: one comprehension per depth
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return
    raise RecordError(f"nested deeper than {MAX_NESTING} levels")


_ERROR_KEYS = frozenset({"name", "message"})
_TRACED_ERROR_KEYS = _ERROR_KEYS | {"traceback"}


def _error(value: object) -> ErrorInfo:
    if not isinstance(value, dict) or value.keys() not in (_ERROR_KEYS, _TRACED_ERROR_KEYS):
        raise RecordError(
            "expected an error object with name and message (and an optional traceback)"
        )
    traced = value.get("traceback")
    return ErrorInfo(
        name=_text(value["name"]),
        message=_text(value["message"]),
        traceback=None if traced is None else _text(traced),
    )


def _choice(allowed: tuple[str, ...]) -> _Check:
    choices = {choice: choice for choice in allowed}

    def check(value: object) -> str:
        try:
            return choices[value]  # type: ignore[index]
        except (KeyError, TypeError):  # TypeError: not hashable, so not a choice either
            raise RecordError(f"expected one of {', '.join(allowed)}, got {value!r}") from None

    return check


def _optional(check: _Check) -> _Check:
    return lambda value: None if value is None else check(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"expected true or false, got {value!r}")
    return value


def _text_list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise RecordError(f"expected a list of text, got {type(value).__name__}")
    return [_text(item) for item in value]


# Every integer of a record or message is a count (a pid, an attempt number): never negative.
_CHECKS: dict[object, _Check] = {
    str: _text,
    bool: _flag,
    int: _count,
    datetime: _time,
    ErrorInfo: _error,
    list[str]: _text_list,
}


def _check_of(annotation: object) -> _Check:
    """How a field declared as ``annotation`` is read back and validated."""
    if annotation is JsonValue:
        return _json
    if get_origin(annotation) is Literal:
        return _choice(get_args(annotation))
    arguments = get_args(annotation)
    if get_origin(annotation) is UnionType and arguments[1:] == (type(None),):
        return _optional(_check_of(arguments[0]))
    return _CHECKS[annotation]


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Layout(Generic[_T]):
    """How one class's objects are written and read, worked out once from its fields:
    journals are encoded and decoded record by record on every step, resume, status
    and list."""

    target: type[_T]
    name: str
    """What field errors are prefixed with: the record type, or ``message``."""
    what: str
    """What a missing or unexpected field is said to be of."""
    names: tuple[str, ...]
    """Its fields, in the order lines list them."""
    fields: tuple[tuple[str, _Check, Callable[[object, object], None]], ...]
    """Each field's name, check and slot setter."""
    defaults: dict[str, object]
    """The value of each field that may be left out."""
    keys: frozenset[str]
    """Every key a version 1 line may have."""
    checked_keys: frozenset[str]
    """Every key a version 2 line may have: those and its checksum's."""
    optional: tuple[int, ...]
    """The indexes of the fields left out of a line when None (the last ones)."""
    head: str
    """The line's ``type`` part (empty for an inbox message)."""
    values: Callable[[object], tuple[object, ...]]
    """An object's field values, in order."""

    encoders: dict[int, Callable[[object, str], str]] = field(default_factory=dict)
    """Each format version's encoder, compiled on first use (:meth:`encoder`)."""

    def encoder(self, version: int) -> Callable[[object, str], str]:
        """The function that writes an object's line in ``version`` (a version 2 line
        without its checksum tail), given its line number part (``,"n":N`` or empty)."""
        known = self.encoders.get(version)
        if known is None:
            known = self.encoders[version] = _compile_encoder(self, version)
        return known

    @classmethod
    def of(cls, target: type[_T], name: str, what: str, tag: str | None) -> "_Layout[_T]":
        """``tag`` is a record's ``type``; an inbox message has none, and no ``n``."""
        declared = fields(target)  # type: ignore[arg-type]
        names = tuple(f.name for f in declared)
        assert len(names) > 1, "attrgetter of one name returns a bare value"
        head = "" if tag is None else f',"type":{_DUMPS(tag)}'
        keys = frozenset({"v", *names} if tag is None else {"v", "n", "type", *names})
        optional = tuple(
            index for index, f in enumerate(declared) if f.metadata.get(_LEFT_OUT_WHEN_NONE)
        )
        assert optional == tuple(range(len(names) - len(optional), len(names))), (
            "optional fields come last"
        )
        return cls(
            target=target,
            name=name,
            what=what,
            names=names,
            fields=tuple(
                (
                    f.name,
                    _check_of(f.type),
                    getattr(target, f.name).__set__,
                )
                for f in declared
            ),
            defaults={f.name: f.default for f in declared if f.default is not MISSING},
            keys=keys,
            checked_keys=keys | {_CHECKSUM_KEY},
            optional=optional,
            head=head,
            values=attrgetter(*names),
        )


_LAYOUTS: dict[type[Record], _Layout[Record]] = {
    cls: _Layout.of(cls, cls.TYPE, f"{cls.TYPE} record", cls.TYPE)
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
        Stopped,
        Paused,
        Resumed,
        Terminated,
        Restarted,
        Forked,
        Finished,
        Errored,
        Warned,
        PatchMarked,
        Diverged,
        RollbackStarted,
        RollbackAttemptStarted,
        RollbackAttemptFailed,
        RollbackCompleted,
        RollbackFailed,
        RollbackFinished,
    )
}
_BY_TAG = {layout.name: layout for layout in _LAYOUTS.values()}
_INBOX = _Layout.of(InboxMessage, "message", "inbox message", None)


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


_last_second: list[tuple[tuple[int, ...], str]] = [((), "")]
"""The last time :func:`_utc_time_json` wrote, to the second, and its text (one item, so
that threads swap both at once)."""


def _utc_time_json(moment: datetime) -> str:
    """``_encode_value(moment)`` for a time in UTC. The text up to the second is that of
    the time written before when they share it, as a run's consecutive records do:
    ``isoformat`` costs more than the rest of a step's line."""
    second = (moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)
    known, text = _last_second[0]
    if known != second:
        text = moment.isoformat(timespec="seconds")[:19]  # up to its "+00:00"
        _last_second[0] = (second, text)
    return '"%s.%06d+00:00"' % (text, moment.microsecond)  # noqa: UP031 - cheaper


# A field's JSON as Python source, an expression of the field's value {0}, by the field's
# declared type: a value of exactly that type (what wfcli puts there) is written inline,
# any other by _encode_value, which writes the same text the slow way.
_INLINE_JSON: dict[object, str] = {
    str: "_encode_text({0}) if type({0}) is str else _encode_value({0})",
    int: "repr({0}) if type({0}) is int else _encode_value({0})",
    bool: '("true" if {0} else "false") if type({0}) is bool else _encode_value({0})',
    datetime: (
        "_utc_time_json({0}) if type({0}) is datetime and {0}.tzinfo is _UTC "
        "else _encode_value({0})"
    ),
    JsonValue: (
        "repr({0}) if type({0}) is int else _encode_text({0}) if type({0}) is str "
        'else "null" if {0} is None else _encode_value({0})'
    ),
}
_ENCODER_GLOBALS = {
    "_encode_text": _encode_text,
    "_encode_value": _encode_value,
    "_utc_time_json": _utc_time_json,
    "datetime": datetime,
    "_UTC": timezone.utc,
}


def _compiled(name: str, source: str, filename: str, namespace: Mapping[str, object]) -> Any:
    """Function ``name`` that ``source`` defines, compiled as ``filename`` (what tracebacks
    show) with a copy of ``namespace`` as its globals. Only the encoders and decoders made
    here from the record classes' own fields are compiled, never anything read."""
    scope = dict(namespace)
    exec(compile(source, filename, "exec"), scope)
    return scope[name]


def _json_expression(annotation: object, variable: str) -> str:
    """Python source of the JSON of ``variable``, a field declared as ``annotation``."""
    arguments = get_args(annotation)
    if get_origin(annotation) is UnionType and arguments[1:] == (type(None),):
        inner = _json_expression(arguments[0], variable)
        return f'("null" if {variable} is None else {inner})'
    if get_origin(annotation) is Literal and all(type(choice) is str for choice in arguments):
        annotation = str
    inline = _INLINE_JSON.get(annotation)
    return f"_encode_value({variable})" if inline is None else f"({inline.format(variable)})"


def _compile_encoder(layout: "_Layout[_T]", version: int) -> Callable[[object, str], str]:
    """One ``%`` format of the whole line, its fields' JSON written inline
    (:func:`_json_expression`); an optional field is left out when None."""
    parts = [f'{{"v":{version}%s' + layout.head.replace("%", "%%")]
    arguments = ["number_part"]
    for index, each in enumerate(fields(layout.target)):  # type: ignore[arg-type]
        variable = f"field_{index}"
        key = f",{_DUMPS(each.name)}:"
        value = _json_expression(each.type, variable)
        if index in layout.optional:
            parts.append("%s")
            arguments.append(f"'' if {variable} is None else {key!r} + {value}")
        else:
            parts.append(key.replace("%", "%%") + "%s")
            arguments.append(value)
    if version == 1:
        parts.append("}")
    source = "\n    ".join(
        [
            "def encode(item, number_part):",
            *(f"field_{index} = item.{name}" for index, name in enumerate(layout.names)),
            f"return {''.join(parts)!r} % ({', '.join(arguments)},)",
        ]
    )
    encode: Callable[[object, str], str] = _compiled(
        "encode", source, f"<encoder of {layout.what}s, version {version}>", _ENCODER_GLOBALS
    )
    return encode


def encode_record(
    record: Record, number: int | None = None, version: FormatVersion = FORMAT_VERSION
) -> str:
    """One journal line for ``record``, without the trailing newline.

    ``number`` is the record's 1-based line number in its journal (``"n"``); the
    journal store writes it so that a missing or duplicated line is detected.
    ``version`` is the journal's (that of its first line): a journal never mixes them.
    A version 2 line ends in ``,"crc":"<8 hex digits>"}``, the CRC-32 of its UTF-8
    bytes before that tail.
    """
    number_part = "" if number is None else f',"n":{_encode_value(number)}'
    layout = _LAYOUTS[type(record)]
    line = (layout.encoders.get(version) or layout.encoder(version))(record, number_part)
    return line if version == 1 else add_checksum(line)


def add_checksum(text: str) -> str:
    """A version 2 line up to its checksum (a JSON object without its closing brace)
    with its checksum tail ``,"crc":"<CRC-32 of its UTF-8 bytes, 8 hex digits>"}``."""
    # %-formatting: a sixth faster than an f-string here, and it runs for every line written.
    return '%s,"crc":"%08x"}' % (text, _crc32(text.encode()))  # noqa: UP031


def checksum_matches(line: bytes) -> bool:
    """Whether ``line`` (without its newline) ends in a checksum tail that matches it."""
    # The exact bytes written, lowercase hex and '"}': int(..., 16) would take
    # " 1a2b3c4" or "1A2B3C4D" as well. (decode_line has this inline: it runs per line.)
    return line.startswith(_TAIL_HEAD, -_TAIL_BYTES) and line.endswith(
        b'%08x"}' % _crc32(line[:-_TAIL_BYTES])
    )


def decode_line(line: bytes) -> tuple[Record, FormatVersion, object]:
    """One journal line, without its newline: its record, format version and ``"n"``.

    A line that ends in a checksum tail has it checked against its bytes before
    anything is parsed; a version 2 line must have one, a version 1 line may not.
    Raises :class:`RecordError`, or what :func:`parse_line` raises if it is not JSON.
    """
    # checksum_matches, inline, slicing only what the checksum covers: it runs per line.
    if line.startswith(_TAIL_HEAD, -_TAIL_BYTES):
        if not line.endswith(b'%08x"}' % _crc32(line[:-_TAIL_BYTES])):
            raise RecordError("checksum mismatch: the line was changed after it was written")
        checksummed = True
    elif line.startswith(_V2_OPENING):
        raise RecordError(
            'checksum missing: a version 2 line ends in ,"crc":"<8 hex digits>"}, '
            "this one does not (its end was changed or cut)"
        )
    else:
        checksummed = False
    decoded = _decode_document(parse_line(line))
    if checksummed != (decoded[1] == 2):  # a "crc" that is not the line's tail
        raise RecordError('checksum missing: a version 2 line ends in its "crc"')
    return decoded


def _decode(layout: _Layout[_T], document: dict[str, object], keys: frozenset[str]) -> _T:
    """Check and build one object from its parsed line; the first bad field in order is
    the one reported. ``v`` (and ``type``) are the caller's to check; ``keys`` are the
    ones its version allows."""
    if not document.keys() <= keys:
        extra = sorted(document.keys() - keys)[0]
        raise RecordError(f"{layout.what} has unexpected field {extra!r}")
    # Built slot by slot: a frozen dataclass's __init__ sets each field through
    # object.__setattr__ and costs as much again as checking the fields.
    item: _T = object.__new__(layout.target)
    for name, check, set_field in layout.fields:
        try:
            set_field(item, check(document[name]))
        except KeyError:  # the field is missing: the checks raise RecordError only
            if name not in layout.defaults:
                raise RecordError(f"{layout.what} lacks field {name!r}") from None
            set_field(item, layout.defaults[name])
        except RecordError as error:
            raise RecordError(f"{layout.name}.{name}: {error.reason}") from None
    return item


def decode_record(document: object) -> Record:
    """Build a record from one parsed journal line; raises :class:`RecordError`.

    The line number ``"n"``, when present, is checked by the journal store. A version
    2 record must have its ``crc``, whose value only :func:`decode_line` can check.
    """
    return _decode_document(document)[0]


def _decode_document(document: object) -> tuple[Record, FormatVersion, object]:
    """:func:`decode_record`, with the record's version and ``"n"``."""
    if type(document) is dict:
        try:
            fast = _fast_decoders[document["type"]]
        except (KeyError, TypeError):  # no type, not hashable, or no fast decoder (yet)
            pass
        else:
            record = fast(document)
            if record is not None:
                return record, 2, document["n"]
    if not isinstance(document, dict):
        raise RecordError(f"expected a JSON object, got {type(document).__name__}")
    version = document.get("v")
    if version == 2:
        if _CHECKSUM_KEY not in document:
            raise RecordError(f"a version 2 record lacks its checksum {_CHECKSUM_KEY!r}")
    elif version != 1:
        raise RecordError(f"format version {version!r} is not supported (this wfcli reads 1 and 2)")
    tag = document.get("type")
    try:
        layout = _BY_TAG[tag]  # type: ignore[index]
    except (KeyError, TypeError):  # TypeError: not hashable, so not a type either
        raise RecordError(f"unknown record type {tag!r}") from None
    if version == 1:
        return _decode(layout, document, layout.keys), 1, document.get("n")
    record = _decode(layout, document, layout.checked_keys)
    count = _decoded_counts[layout.name] = _decoded_counts.get(layout.name, 0) + 1
    if count == _FAST_AFTER:
        _fast_decoders[layout.name] = _fast_decoder(layout)
    return record, 2, document.get("n")


# --- fast decoders ------------------------------------------------------------------------
#
# _decode reads a record by walking its layout field by field. A journal is mostly a few
# record types (attempt_started and step_completed above all), so for a type a process
# reads often, a decoder compiled from the same layout reads its version 2 lines in
# straight-line code: the same checks of the same fields in the same order, but no loop.
# It returns None, raising nothing, for a line that is not exactly a well-formed version 2
# record with its "n" and "crc" (a check refuses a field, a field is missing, a key is
# unexpected, "v" is not the integer 2): _decode then reads that line as it always did,
# and says what is wrong with it. So a fast decoder accepts only what _decode accepts, and
# makes of it the same record.

_FAST_AFTER = 256
"""Version 2 records of one type decoded by :func:`_decode` before the type's fast decoder
is compiled: compiling one costs about what it then saves on a few hundred lines, which a
short-lived command never reads."""
_fast_decoders: dict[object, Callable[[dict[str, object]], Record | None]] = {}
_decoded_counts: dict[str, int] = {}


def _fast_decoder(layout: _Layout[Record]) -> Callable[[dict[str, object]], Record | None]:
    """Compile the fast decoder of ``layout``'s version 2 lines (see above)."""
    assert not {"v", "n", "type", _CHECKSUM_KEY} & set(layout.names), "counted once each"
    namespace: dict[str, object] = {"_new": object.__new__, "_target": layout.target}
    fetched = ['version = document["v"]', 'document["n"]', 'document["crc"]']
    checked, built = [], []
    size = len(layout.fields) - len(layout.defaults) + 4  # and "v", "n", "type", "crc"
    for index, (name, check, set_field) in enumerate(layout.fields):
        namespace[f"_check{index}"], namespace[f"_set{index}"] = check, set_field
        if name in layout.defaults:  # checked only when present, as _decode does
            namespace[f"_default{index}"] = layout.defaults[name]
            checked += [
                f"        if {name!r} in document:",
                f"            value{index} = _check{index}(document[{name!r}])",
                "            size += 1",
                "        else:",
                f"            value{index} = _default{index}",
            ]
        else:
            fetched.append(f"value{index} = document[{name!r}]")
            checked.append(f"        value{index} = _check{index}(value{index})")
        built.append(f"    _set{index}(item, value{index})")
    source = "\n".join(
        [
            "def decode(document):",
            "    try:",
            *(f"        {line}" for line in fetched),
            "    except KeyError:",
            "        return None",
            "    if type(version) is not int or version != 2:",
            "        return None",
            f"    size = {size}",
            "    try:",
            *checked,
            "    except RecordError:",
            "        return None",
            "    if len(document) != size:  # then it has a key no field has",
            "        return None",
            "    item = _new(_target)",
            *built,
            "    return item",
        ]
    )
    namespace["RecordError"] = RecordError
    decode: Callable[[dict[str, object]], Record | None] = _compiled(
        "decode", source, f"<fast decoder of {layout.what}s>", namespace
    )
    return decode


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
    layout = _LAYOUTS[type(record)]
    result: dict[str, object] = {"type": record.TYPE}
    for name in layout.names:
        result[name] = _encode_field(getattr(record, name))
    for index in layout.optional:
        if result[layout.names[index]] is None:
            del result[layout.names[index]]
    return result
