"""JSON values and journal records: checks, encoding, decoding and its refusals."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wfcli import FileStore, JournalCorruptError, ValueTooLargeError, WorkflowInputError
from wfcli.core import codec
from wfcli.core.codec import (
    FORMAT_VERSION,
    MAX_NESTING,
    AttemptFailed,
    AttemptStarted,
    Created,
    Diverged,
    ErrorInfo,
    EventReceived,
    Finished,
    Forked,
    FormatVersion,
    InboxMessage,
    Paused,
    Record,
    RecordError,
    Resumed,
    RollbackStarted,
    StepCompleted,
    StepFailed,
    WaitStarted,
    Warned,
    add_checksum,
    check_json,
    decode_line,
    decode_record,
    encode_record,
    format_time,
    parse_line,
    parse_time,
    record_to_json,
)
from wfcli.store.contract import Owner

# --- strategies -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=25,
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(9000, 1, 1),
    timezones=st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
counts = st.integers(min_value=0, max_value=2**63)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "at": moments,
    "instance_id": st.text(),
    "workflow": st.text(),
    "params": json_values,
    "pid": counts,
    "host": st.text(),
    "step": st.text(),
    "attempt": counts,
    "attempts": counts,
    "output": json_values,
    "error": st.builds(
        ErrorInfo, name=st.text(), message=st.text(), traceback=st.none() | st.text()
    ),
    "retry_at": st.none() | moments,
    "until": moments,
    "event_type": st.none() | st.text(),
    "message_id": st.text(),
    "payload": json_values,
    "wait": st.sampled_from(["sleep", "retry", "event", "instance"]),
    "kind": st.sampled_from(["do", "sleep", "event", "instance"]),
    "from_step": st.none() | st.text(),
    "kept_steps": st.lists(st.text(), max_size=4),
    "message": st.text(),
    "version": st.none() | st.text(),
    "priority": st.none() | counts,
    "schedule": json_values,
    "sensitive_params": st.none() | st.lists(st.text(), max_size=3),
    "sensitive": st.none() | st.booleans(),
    "patch": st.text(),
    "applied": st.booleans(),
    "steps_before": counts,
    "position": st.none() | counts,
    "expected": st.text(),
    "found": st.text(),
    "source": st.text(),
    "deadline": st.none() | moments,
    "parent": st.none() | st.text(),
    "reason": st.sampled_from(["errored", "terminated"]),
    "plan": st.lists(st.text(), max_size=4),
    "status": st.sampled_from(["complete", "failed"]),
    "completed": counts,
    "total": counts,
    "rollback": st.none() | st.booleans(),
}
FIELD_OVERRIDES: dict[tuple[type[Record], str], st.SearchStrategy[Any]] = {
    (Warned, "step"): st.none() | st.text(),
    (EventReceived, "event_type"): st.text(),
    (WaitStarted, "kind"): st.sampled_from(["sleep", "event", "instance"]),
    (WaitStarted, "instance_id"): st.none() | st.text(),
    (StepFailed, "kind"): st.sampled_from(["do", "event", "instance"]),
    (Diverged, "kind"): st.text(),
    (Diverged, "step"): st.none() | st.text(),
    (Forked, "from_step"): st.text(),
    (RollbackStarted, "message_id"): st.none() | st.text(),
    (RollbackStarted, "error"): st.none() | st.builds(ErrorInfo, name=st.text(), message=st.text()),
}
RECORD_TYPES = sorted(
    (
        exported
        for exported in map(vars(codec).get, codec.__all__)
        if isinstance(exported, type) and issubclass(exported, Record) and exported is not Record
    ),
    key=lambda cls: cls.TYPE,
)


def records_of(cls: type[Record]) -> st.SearchStrategy[Record]:
    return st.builds(
        cls,
        **{
            field.name: FIELD_OVERRIDES.get((cls, field.name), FIELD_VALUES[field.name])
            for field in dataclasses.fields(cls)
        },
    )


def round_trip(record: Record) -> Record:
    line = encode_record(record)
    assert "\n" not in line
    decoded, version, number = decode_line(line.encode())
    assert (version, number) == (FORMAT_VERSION, None)
    assert decode_record(json.loads(line)) == decoded
    return decoded


# --- properties -------------------------------------------------------------------------------


@given(json_values)
def test_any_json_value_survives_check_json_and_loads(value: object) -> None:
    assert json.loads(check_json(value, "value")) == value


@given(st.one_of([records_of(cls) for cls in RECORD_TYPES]))
def test_any_record_survives_encoding_and_decoding(record: Record) -> None:
    assert round_trip(record) == record


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda cls: cls.TYPE)
@given(data=st.data())
def test_every_record_type_round_trips(cls: type[Record], data: st.DataObject) -> None:
    record = data.draw(records_of(cls))
    decoded = round_trip(record)
    assert decoded == record
    assert type(decoded) is cls
    assert record_to_json(record) == {
        key: value
        for key, value in json.loads(encode_record(record)).items()
        if key not in ("v", "crc")
    }


def test_the_record_types_are_those_the_format_documents() -> None:
    assert [cls.TYPE for cls in RECORD_TYPES] == sorted(
        [
            "attempt_failed",
            "attempt_started",
            "created",
            "diverged",
            "errored",
            "event_received",
            "finished",
            "forked",
            "patch_marked",
            "paused",
            "restarted",
            "resumed",
            "run_started",
            "step_completed",
            "step_failed",
            "stopped",
            "suspended",
            "terminated",
            "wait_started",
            "warning",
            "rollback_started",
            "rollback_attempt_started",
            "rollback_attempt_failed",
            "rollback_completed",
            "rollback_failed",
            "rollback_finished",
        ]
    )


def documented_line(record: Record, number: int | None, version: int = FORMAT_VERSION) -> str:
    """The line docs/journal-format.md describes: compact JSON, ``v``, ``n``, ``type``,
    then the fields in order, non-ASCII characters as they are; in version 2, then
    ``crc``: the CRC-32 of the UTF-8 bytes before ``,"crc"``, as 8 lowercase hex digits."""
    document: dict[str, object] = {"v": version}
    if number is not None:
        document["n"] = number
    document.update(record_to_json(record))
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if version == 1:
        return text
    return f'{text[:-1]},"crc":"{zlib.crc32(text[:-1].encode()):08x}"}}'


@given(
    record=st.one_of([records_of(cls) for cls in RECORD_TYPES]),
    number=st.none() | st.integers(min_value=1, max_value=2**53),
)
def test_a_record_is_written_as_the_documented_line(record: Record, number: int | None) -> None:
    assert encode_record(record, number) == documented_line(record, number)
    assert encode_record(record, number, 1) == documented_line(record, number, 1)


class Colour(IntEnum):
    RED = 1


AT = datetime(2030, 1, 1, tzinfo=timezone.utc)
ODD_VALUES: list[Any] = [
    True,
    Colour.RED,
    (1, 2.5, None),
    -0.0,
    1e300,
    2**70,
    'quote " backslash \\ line\u2028separator \x00 é 🎉',
    {"nested": [{"deep": [Colour.RED, False, ""]}]},
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_values_of_unusual_types_are_written_as_json_would_write_them(value: Any) -> None:
    for record in (
        Finished(at=AT, output=value),
        AttemptStarted(at=AT, step="s", attempt=value),  # a wrong type still encodes as before
        Warned(at=AT, step=value, message="m"),
    ):
        assert encode_record(record, 7) == documented_line(record, 7)


class Text(str):
    """A subclass of str: JSON writes it as the text it is."""


# Values of any type JSON can write, in any field: the encoders compiled per record type
# write a field's declared type inline and must write everything else as json does.
any_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text().map(Text),
    st.just(Colour.RED),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9000, 1, 1)),  # naive
    moments,
    moments.map(lambda moment: moment.replace(microsecond=0)),
    json_values,
)


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda cls: cls.TYPE)
@given(data=st.data())
def test_each_record_type_is_written_as_the_documented_line_whatever_its_fields_hold(
    cls: type[Record], data: st.DataObject
) -> None:
    """Byte for byte what json.dumps writes of the record (the generic encoding), in both
    versions, for fields of their declared types and fields holding any other value."""
    record = data.draw(records_of(cls))
    names = [field.name for field in dataclasses.fields(cls)]
    others = data.draw(st.dictionaries(st.sampled_from(names), any_field_values))
    record = dataclasses.replace(record, **others)
    number = data.draw(st.none() | st.integers(min_value=0, max_value=2**64))
    for version in (1, 2):
        line = encode_record(record, number, version)  # type: ignore[arg-type]
        assert line.encode() == documented_line(record, number, version).encode()


def test_times_sharing_their_second_or_not_are_each_written_whole() -> None:
    times = [
        datetime(2030, 1, 1, 0, 0, 0, 5, tzinfo=timezone.utc),
        datetime(2030, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc),  # the same second
        datetime(2030, 1, 1, 0, 0, 1, tzinfo=timezone.utc),  # the next, microsecond 0
        datetime(2031, 1, 1, 0, 0, 1, 7, tzinfo=timezone.utc),  # only the year differs
        datetime(1, 1, 1, tzinfo=timezone.utc),
        datetime(2030, 1, 1, 0, 0, 0, 5, tzinfo=timezone.utc),  # back to the first
    ]
    for moment in times:
        record = AttemptStarted(at=moment, step="s", attempt=1)
        assert json.loads(encode_record(record, 2))["at"] == moment.isoformat(
            timespec="microseconds"
        )


def test_times_in_other_zones_and_naive_times_are_written_in_utc() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    record = AttemptFailed(
        at=datetime(2030, 1, 1, 5, 30, tzinfo=india),
        step="s",
        attempt=1,
        error=ErrorInfo("E", "m"),
        retry_at=datetime(2030, 1, 1, 0, 0, 1, 5, tzinfo=india),
    )
    line = json.loads(encode_record(record, 2))
    assert (line["at"], line["retry_at"]) == (
        "2030-01-01T00:00:00.000000+00:00",
        "2029-12-31T18:30:01.000005+00:00",
    )
    naive = datetime(2030, 6, 1, 12, 0)
    assert format_time(naive) == format_time(naive.astimezone())


@given(moments)
def test_times_round_trip_as_utc(moment: datetime) -> None:
    parsed = parse_time(format_time(moment))
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


# --- check_json -------------------------------------------------------------------------------


@given(json_values)
def test_check_json_writes_what_json_dumps_writes(value: object) -> None:
    assert check_json(value, "value") == json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def test_check_json_encodes_compactly_and_tuples_as_arrays() -> None:
    assert (
        check_json({"a": (1, 2.5, None, True), "é": "ü"}, "v") == '{"a":[1,2.5,null,true],"é":"ü"}'
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (datetime(2030, 1, 1), "datetime at top level is not JSON-serialisable"),
        ({"when": {1, 2}}, "set at when is not JSON-serialisable"),
        ([b"x"], "bytes at [0] is not JSON-serialisable"),
        ({"a": [{"b": object()}]}, "object at a[0].b is not JSON-serialisable"),
        (float("nan"), "nan at top level is not a JSON number"),
        ({"x": float("-inf")}, "-inf at x is not a JSON number"),
        ({1: "one"}, "key 1 at top level is a int, JSON keys must be strings"),
        ({None: "none"}, "key None at top level is a NoneType"),
        ({(1, 2): "tuple"}, "key (1, 2) at top level is a tuple"),
    ],
)
def test_check_json_refuses_what_is_not_json_naming_where_and_what(
    value: object, reason: str
) -> None:
    with pytest.raises(WorkflowInputError) as refused:
        check_json(value, "step 'x' result")
    assert refused.value.what == "step 'x' result"
    assert reason in refused.value.reason


def test_check_json_refuses_nesting_deeper_than_the_limit() -> None:
    deep: list[Any] = []
    for _ in range(MAX_NESTING + 1):
        deep = [deep]
    with pytest.raises(WorkflowInputError, match=f"nested deeper than {MAX_NESTING} levels"):
        check_json(deep, "v")


def test_a_self_referencing_value_is_refused_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(WorkflowInputError, match="nested deeper"):
        check_json(loop, "v")


def test_check_json_refuses_a_value_over_the_limit_with_its_size() -> None:
    assert check_json("x" * 8, "v", limit=10) == '"xxxxxxxx"'
    with pytest.raises(ValueTooLargeError) as refused:
        check_json("é" * 5, "v", limit=10)
    assert (refused.value.size, refused.value.limit) == (12, 10)
    assert str(refused.value) == "v: 12 bytes as JSON, over the limit of 10 bytes"


@pytest.mark.parametrize(
    "value",
    ["\ud800", {"name": "file-\udcff.txt"}, {"\udc80": 1}],
    ids=["text", "nested", "key"],
)
@pytest.mark.parametrize("limit", [None, 1024])
def test_text_that_is_not_valid_unicode_is_refused(value: object, limit: int | None) -> None:
    with pytest.raises(WorkflowInputError, match="surrogate"):
        check_json(value, "params", limit)


def test_an_integer_too_long_to_encode_is_refused() -> None:
    with pytest.raises(WorkflowInputError, match=r"^params: "):
        check_json({"n": 10**5000}, "params", 10**6)


# --- decoding refusals ------------------------------------------------------------------------

GOOD = {
    "v": 1,
    "type": "attempt_started",
    "at": "2030-01-01T00:00:00.000000+00:00",
    "step": "charge",
    "attempt": 1,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 3}, "format version 3 is not supported (this wfcli reads 1 and 2)"),
        ({"v": 2}, "a version 2 record lacks its checksum 'crc'"),
        ({"v": None}, "format version None is not supported"),
        ({"type": "mystery"}, "unknown record type 'mystery'"),
        ({"type": None}, "unknown record type None"),
        ({"step": None}, "attempt_started.step: expected text, got NoneType"),
        ({"attempt": -1}, "attempt_started.attempt: expected a non-negative integer, got -1"),
        ({"attempt": True}, "attempt_started.attempt: expected a non-negative integer"),
        ({"attempt": 1.0}, "attempt_started.attempt: expected a non-negative integer"),
        ({"at": "yesterday"}, "attempt_started.at: bad timestamp 'yesterday'"),
        ({"at": "2030-01-01T00:00:00"}, "has no time zone"),
        ({"extra": 1}, "attempt_started record has unexpected field 'extra'"),
    ],
)
def test_decoding_refuses_a_damaged_record_saying_why(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(RecordError) as refused:
        decode_record({**GOOD, **change})
    assert reason in refused.value.reason


def test_decoding_refuses_a_missing_field_and_a_non_object() -> None:
    with pytest.raises(RecordError, match="attempt_started record lacks field 'attempt'"):
        decode_record({k: v for k, v in GOOD.items() if k != "attempt"})
    with pytest.raises(RecordError, match="expected a JSON object, got list"):
        decode_record([GOOD])
    assert decode_record(GOOD) == round_trip(decode_record(GOOD))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("error", {"name": "X"}, "expected an error object with name and message"),
        ("error", {"name": 1, "message": "m"}, "expected text"),
        ("kind", "loop", "expected one of do, event"),
        ("kind", "sleep", "expected one of do, event"),
    ],
)
def test_decoding_checks_nested_fields(field: str, value: object, reason: str) -> None:
    document = {
        "v": 1,
        "type": "step_failed",
        "at": "2030-01-01T00:00:00.000000+00:00",
        "step": "s",
        "kind": "do",
        "attempts": 1,
        "error": {"name": "E", "message": "m"},
        field: value,
    }
    with pytest.raises(RecordError, match=reason):
        decode_record(document)


def test_a_wait_record_cannot_be_of_kind_do() -> None:
    document = {
        "v": 1,
        "type": "wait_started",
        "at": "2030-01-01T00:00:00.000000+00:00",
        "step": "s",
        "kind": "do",
        "until": "2030-01-01T00:00:00.000000+00:00",
        "event_type": None,
    }
    with pytest.raises(RecordError, match=r"wait_started\.kind: expected one of sleep, event"):
        decode_record(document)


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


STEP_COMPLETED = {
    "v": 1,
    "n": 4,
    "type": "step_completed",
    "at": "2030-01-01T00:00:00.000000+00:00",
    "step": "charge",
    "kind": "do",
    "attempt": 1,
    "output": {"ok": True},
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"at": "2030-01-01T00:00:00"},
            "step_completed.at: timestamp '2030-01-01T00:00:00' has no",
        ),
        ({"at": 5}, "step_completed.at: expected text, got int"),
        ({"at": "soon"}, "step_completed.at: bad timestamp 'soon'"),
        ({"step": None}, "step_completed.step: expected text, got NoneType"),
        (
            {"kind": "loop"},
            "step_completed.kind: expected one of do, sleep, event, instance, got 'loop'",
        ),
        (
            {"kind": ["do"]},
            "step_completed.kind: expected one of do, sleep, event, instance, got ['do']",
        ),
        ({"attempt": -1}, "step_completed.attempt: expected a non-negative integer, got -1"),
        ({"attempt": True}, "step_completed.attempt: expected a non-negative integer, got True"),
        ({"attempt": 2.0}, "step_completed.attempt: expected a non-negative integer, got 2.0"),
        (
            {"output": deeply_nested(MAX_NESTING + 1)},
            f"step_completed.output: nested deeper than {MAX_NESTING} levels",
        ),
        ({"at": "soon", "output": None, "extra": 1}, "record has unexpected field 'extra'"),
    ],
)
def test_a_damaged_step_record_is_refused_saying_why(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(RecordError) as refused:
        decode_record({**STEP_COMPLETED, **change})
    assert reason in refused.value.reason


def test_the_first_bad_or_missing_field_in_order_is_the_one_reported() -> None:
    damaged = {key: value for key, value in STEP_COMPLETED.items() if key != "output"}
    with pytest.raises(RecordError, match=r"^step_completed\.at: bad timestamp 'soon'$"):
        decode_record({**damaged, "at": "soon"})
    with pytest.raises(RecordError, match=r"^step_completed record lacks field 'output'$"):
        decode_record(damaged)


def test_a_time_with_another_offset_is_read_as_the_same_moment_in_utc() -> None:
    record = decode_record({**STEP_COMPLETED, "at": "2030-01-01T05:30:00.000000+05:30"})
    assert record.at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert record.at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda cls: cls.TYPE)
@settings(max_examples=10)
@given(data=st.data())
def test_every_field_but_a_json_value_refuses_a_value_of_another_type_naming_it(
    cls: type[Record], data: st.DataObject
) -> None:
    """The decoder is derived from the record classes: each declared type is checked."""
    good = json.loads(encode_record(data.draw(records_of(cls)), 1))
    for field in dataclasses.fields(cls):
        if field.type is codec.JsonValue:
            continue
        with pytest.raises(RecordError) as refused:
            decode_record({**good, field.name: [[]]})
        assert refused.value.reason.startswith(f"{cls.TYPE}.{field.name}: expected ")


def test_an_event_record_needs_its_event_type() -> None:
    document = {
        "v": 1,
        "type": "event_received",
        "at": "2030-01-01T00:00:00.000000+00:00",
        "message_id": "m",
        "event_type": None,
        "payload": None,
    }
    with pytest.raises(RecordError, match=r"^event_received\.event_type: expected text"):
        decode_record(document)


# --- parse_line -------------------------------------------------------------------------------


def parsed(line: bytes, parse: Callable[[bytes], object]) -> tuple[object, ...]:
    """What ``parse`` makes of ``line``: the value (as repr, so NaN equals NaN) or the error."""
    try:
        value = parse(line)
    except (ValueError, RecursionError) as error:
        return (type(error), str(error))
    return ("value", repr(value))


AFFIXES = st.sampled_from(
    [
        b"",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"x",
        b"{",
        b"}",
        b",",
        b"\x00",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xed\xa0\x80",
    ]
)
LINES = (
    st.binary(max_size=40)
    | st.builds(
        lambda before, value, after: (
            before + json.dumps(value, ensure_ascii=False).encode() + after
        ),
        AFFIXES,
        json_values,
        AFFIXES,
    )
    | st.builds(
        lambda before, record, after: before + encode_record(record, 9).encode() + after,
        AFFIXES,
        st.one_of([records_of(cls) for cls in RECORD_TYPES]),
        AFFIXES,
    )
    | st.builds(
        lambda record, encoding: encode_record(record, 9).encode(encoding, "surrogatepass"),
        st.one_of([records_of(cls) for cls in RECORD_TYPES]),
        st.sampled_from(["utf-16-le", "utf-16-be", "utf-16", "utf-32", "utf-8-sig"]),
    )
)


@given(LINES)
def test_parse_line_makes_of_any_line_what_json_loads_makes_of_it(line: bytes) -> None:
    assert parsed(line, parse_line) == parsed(line, json.loads)


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"surrogate":"\xed\xa0\x80"}',
        b'{"a":1} ',
        b'{"a":1}{"b":2}',
        b'{"a":NaN,"b":-Infinity}',
        b"{\x00",
        b"{",
    ],
    ids=["deep", "surrogate", "trailing space", "two objects", "nan", "utf-16 guess", "torn"],
)
def test_parse_line_agrees_with_json_loads_on_odd_lines(line: bytes) -> None:
    assert parsed(line, parse_line) == parsed(line, json.loads)


# --- inbox messages ---------------------------------------------------------------------------


@given(
    action=st.sampled_from(["event", "pause", "resume", "terminate", "restart", "wake"]),
    sent_at=moments,
    event_type=st.none() | st.text(),
    payload=json_values,
    from_step=st.none() | st.text(),
    rollback=st.none() | st.booleans(),
)
def test_inbox_messages_round_trip(
    *,
    action: Any,
    sent_at: datetime,
    event_type: str | None,
    payload: Any,
    from_step: str | None,
    rollback: bool | None,
) -> None:
    message = InboxMessage(
        message_id="m1",
        action=action,
        sent_at=sent_at,
        event_type=event_type,
        payload=payload,
        from_step=from_step,
        rollback=rollback,
    )
    assert InboxMessage.decode(message.encode()) == message
    fields = {"v": 1, **dataclasses.asdict(message), "sent_at": format_time(sent_at)}
    for optional in ("sensitive", "rollback"):  # left out when None, so older lines read the same
        if fields[optional] is None:
            del fields[optional]
    assert message.encode() == json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def test_an_inbox_message_may_leave_out_the_fields_with_defaults() -> None:
    text = '{"v":1,"message_id":"m","action":"pause","sent_at":"2030-01-01T00:00:00.000000+00:00"}'
    assert InboxMessage.decode(text) == InboxMessage(message_id="m", action="pause", sent_at=AT)
    assert InboxMessage.decode(text).encode() == text[:-1] + (
        ',"event_type":null,"payload":null,"from_step":null}'
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not JSON"),
        ('{"v": 2, "action": "pause"}', "not a version 1 inbox message"),
        (
            '{"v": 1, "action": "explode", "message_id": "m", "sent_at": "x"}',
            r"^message\.action: expected one of event, pause, resume, terminate, restart, wake, "
            "got 'exp",
        ),
        ('{"v": 1, "action": "pause", "sent_at": "x"}', "^inbox message lacks field 'message_id'$"),
        (
            '{"v": 1, "message_id": "m", "action": "pause", "sent_at": "x", "more": 1}',
            "^inbox message has unexpected field 'more'$",
        ),
        (
            '{"v": 1, "message_id": "m", "action": "event", "sent_at": "2030-01-01", "payload": 1}',
            r"^message\.sent_at: timestamp '2030-01-01' has no time zone$",
        ),
    ],
)
def test_a_damaged_inbox_message_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        InboxMessage.decode(text)


# --- through real journal files ---------------------------------------------------------------

OWNER = Owner(worker_id="w-1", pid=1, host="test")
CREATED = Created(at=AT, instance_id="i", workflow="w", params={"p": 1})


def is_journalable(record: Record) -> bool:
    """Any record but ``created`` (line 1 only), an event step's result not shaped
    like an event (the store refuses it on reading), and a rollback's records, which
    must follow their ``rollback_started`` (the store contract suite has those)."""
    return not isinstance(record, PLACED_TYPES) and not (
        isinstance(record, StepCompleted) and record.kind == "event"
    )


# Records that only stand in certain places: line 1, or after their rollback_started.
PLACED_TYPES = (
    Created,
    *(cls for cls in RECORD_TYPES if cls.TYPE.startswith("rollback_")),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(
        st.lists(
            st.one_of([records_of(cls) for cls in RECORD_TYPES if cls not in PLACED_TYPES]).filter(
                is_journalable
            ),
            min_size=1,
            max_size=4,
        ),
        max_size=5,
    )
)
def test_records_appended_to_a_file_journal_are_the_documented_lines_and_read_back_equal(
    batches: list[list[Record]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = FileStore(folder, durable=False)
        store.create(CREATED)
        with store.acquire("i", OWNER) as lease:
            for batch in batches:
                lease.append(batch, sync=False)
        written = [CREATED, *(record for batch in batches for record in batch)]
        assert store.read("i") == written
        lines = store.journal_path("i").read_text(encoding="utf-8").split("\n")
        assert lines == [
            *(documented_line(record, number) for number, record in enumerate(written, start=1)),
            "",
        ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"attempt": -1}, "step_completed.attempt: expected a non-negative integer, got -1"),
        ({"at": "2030-01-01T00:00:00"}, "step_completed.at: timestamp '2030-01-01T00:00:00' has"),
        (
            {"kind": "loop"},
            "step_completed.kind: expected one of do, sleep, event, instance, got 'loop'",
        ),
        ({"output": deeply_nested(MAX_NESTING + 1)}, "step_completed.output: nested deeper"),
        ({"n": 5}, "record number 5 where 3 belongs"),
        ({"type": "attempt_started"}, "attempt_started record has unexpected field 'kind'"),
    ],
)
def test_a_damaged_step_line_in_a_file_is_reported_with_file_line_and_reason(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    store = FileStore(tmp_path, durable=False)
    store.create(CREATED)
    with store.acquire("i", OWNER) as lease:
        lease.append([AttemptStarted(at=AT, step="charge", attempt=1)], sync=False)
    path = store.journal_path("i")
    damaged = add_checksum(
        json.dumps({**STEP_COMPLETED, "v": 2, "n": 3, **change}, separators=(",", ":"))[:-1]
    )
    good = encode_record(AttemptStarted(at=AT, step="next", attempt=1), 4)
    with path.open("a", encoding="utf-8") as journal:
        journal.write(f"{damaged}\n{good}\n")

    with pytest.raises(JournalCorruptError) as refused:
        store.read("i")

    assert (refused.value.path, refused.value.line) == (str(path), 3)
    assert refused.value.reason.startswith(reason)


def test_records_compare_hash_and_print_by_type_and_every_field() -> None:
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    paused = Paused(at=at, message_id="m1")
    resumed = Resumed(at=at, message_id="m1")  # the same fields, another type

    assert paused == Paused(at=at, message_id="m1")
    assert paused != Paused(at=at, message_id="m2")
    assert paused != resumed
    assert hash(paused) == hash(Paused(at=at, message_id="m1"))
    assert len({paused, resumed, Paused(at=at, message_id="m1")}) == 2
    assert repr(paused) == f"Paused(at={at!r}, message_id='m1')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        paused.message_id = "m3"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unhashable"):
        hash(Finished(at=at, output={"a": 1}))


# --- version 2: every line checksummed --------------------------------------------------------

STEP = StepCompleted(at=AT, step="charge", kind="do", attempt=1, output={"ok": True})
TAIL = len(b',"crc":"01234567"}')


def test_a_version_2_line_ends_in_the_crc_32_of_its_bytes_before_that_tail() -> None:
    line = encode_record(STEP, 4).encode()

    assert line[-TAIL:] == b',"crc":"%08x"}' % zlib.crc32(line[:-TAIL])
    assert list(json.loads(line))[-1] == "crc"  # any JSON parser reads it; crc comes last
    assert decode_line(line) == (STEP, 2, 4)
    assert decode_line(encode_record(STEP, 4, 1).encode()) == (STEP, 1, 4)


def moved_crc_first(line: bytes) -> bytes:
    """The same keys and checksum, with ``crc`` moved to the front (not the tail)."""
    crc = line[-TAIL + 1 : -1]
    return b'{"v":2,' + crc + b"," + line[len(b'{"v":2,') : -TAIL] + b"}"


def other_digit(line: bytes) -> bytes:
    digit = line[-3:-2]
    return line[:-3] + (b"1" if digit == b"0" else b"0") + line[-2:]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(other_digit, "checksum mismatch: the line was changed", id="digit"),
        pytest.param(
            lambda line: line.replace(b'"charge"', b'"charga"'), "checksum mismatch", id="value"
        ),
        pytest.param(
            lambda line: line[:-10] + line[-10:-2].upper() + line[-2:],
            "checksum mismatch",
            id="uppercase hex",
        ),
        pytest.param(lambda line: line[:-TAIL] + b"}", "checksum missing", id="no tail"),
        pytest.param(lambda line: line[:-3] + line[-2:], "checksum missing", id="7 digits"),
        pytest.param(lambda line: line[:-2] + b"0" + line[-2:], "checksum missing", id="9 digits"),
        pytest.param(lambda line: line[:-1], "checksum missing", id="no closing brace"),
        pytest.param(moved_crc_first, "checksum missing", id="crc not last"),
        pytest.param(
            lambda line: json.dumps(json.loads(line)).encode(),
            'checksum missing: a version 2 line ends in its "crc"',
            id="re-encoded with spaces",
        ),
        pytest.param(
            lambda line: add_checksum(encode_record(STEP, 4, 1)[:-1]).encode(),
            "step_completed record has unexpected field 'crc'",
            id="version 1 with a checksum",
        ),
    ],
)
def test_a_damaged_missing_or_misplaced_checksum_is_refused_saying_why(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    line = encode_record(STEP, 4).encode()
    assert line[-10:-2] != line[-10:-2].upper()  # the uppercase case changes something
    damaged = damage(line)
    assert damaged != line

    with pytest.raises(RecordError) as refused:
        decode_line(damaged)
    assert refused.value.reason.startswith(reason)


def test_inbox_messages_stay_version_1_without_a_checksum() -> None:
    message = InboxMessage(message_id="m" * 32, action="pause", sent_at=AT)
    assert message.encode().startswith('{"v":1,')
    assert "crc" not in json.loads(message.encode())


def journal_of(
    tmp_path: Path, version: FormatVersion, extra: int
) -> tuple[FileStore, Path, list[Record]]:
    """A file journal of ``CREATED`` and ``extra`` attempts, written in ``version``."""
    store = FileStore(tmp_path, durable=False)
    store.create(CREATED)
    records = [CREATED, *(AttemptStarted(at=AT, step=f"s{i}", attempt=1) for i in range(extra))]
    lines = (encode_record(r, n, version) for n, r in enumerate(records, start=1))
    path = store.journal_path("i")
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return store, path, records


def test_new_instances_are_version_2_and_so_is_every_append(tmp_path: Path) -> None:
    store = FileStore(tmp_path, durable=False)
    store.create(CREATED)
    with store.acquire("i", OWNER) as lease:
        lease.read()
        lease.append([STEP], sync=False)

    lines = store.journal_path("i").read_bytes().split(b"\n")[:-1]
    assert [decode_line(line)[1] for line in lines] == [2, 2]
    assert store.read("i") == [CREATED, STEP]


def test_a_version_1_journal_is_read_and_appended_to_in_version_1(tmp_path: Path) -> None:
    store, path, records = journal_of(tmp_path, 1, 2)
    assert store.read("i") == records

    with store.acquire("i", OWNER) as lease:
        assert lease.read() == records
        lease.append([STEP], sync=False)

    assert path.read_text(encoding="utf-8").split("\n")[-2] == encode_record(STEP, 4, 1)
    assert store.read("i") == [*records, STEP]


@pytest.mark.parametrize(("version", "other"), [(1, 2), (2, 1)])
def test_a_journal_mixing_versions_is_refused(
    tmp_path: Path, version: FormatVersion, other: FormatVersion
) -> None:
    store, path, _ = journal_of(tmp_path, version, 1)
    with path.open("a", encoding="utf-8") as journal:
        journal.write(encode_record(STEP, 3, other) + "\n")

    with pytest.raises(JournalCorruptError) as refused:
        store.read("i")
    assert (refused.value.path, refused.value.line) == (str(path), 3)
    assert refused.value.reason == (
        f"a version {other} line in a version {version} journal (a journal never mixes versions)"
    )


@pytest.mark.parametrize("byte", [b"\x0b", b"\x0e", b"*", b"\x00", b"\r", b"x"])
def test_a_changed_last_newline_after_a_whole_line_is_damage_not_a_torn_tail(
    tmp_path: Path, byte: bytes
) -> None:
    store, path, _ = journal_of(tmp_path, 2, 2)
    damaged = path.read_bytes()[:-1] + byte
    path.write_bytes(damaged)

    with store.acquire("i", OWNER) as lease:
        readers: list[Callable[[], list[Record]]] = [lambda: store.read("i"), lease.read]
        for read in readers:
            with pytest.raises(JournalCorruptError) as refused:
                read()
            assert (refused.value.path, refused.value.line) == (str(path), 3)
            assert refused.value.reason.startswith("the newline ending this line was changed")
    assert path.read_bytes() == damaged


def test_a_whole_last_line_without_its_newline_is_a_torn_tail_cut_by_the_next_writer(
    tmp_path: Path,
) -> None:
    """A write puts a line and its newline down together: a line without one never
    finished being written, however whole it looks, and nobody was told it was."""
    store, path, records = journal_of(tmp_path, 2, 2)
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])
    assert store.read("i") == records[:-1]

    with store.acquire("i", OWNER) as lease:
        assert lease.read() == records[:-1]
        lease.append([STEP], sync=False)

    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    assert path.read_bytes() == whole[:last_start] + encode_record(STEP, 3).encode() + b"\n"


def test_a_version_1_journal_takes_a_changed_last_newline_for_a_torn_tail(
    tmp_path: Path,
) -> None:
    """What version 2 fixes: without a checksum the last record cannot be told whole."""
    store, path, records = journal_of(tmp_path, 1, 2)
    path.write_bytes(path.read_bytes()[:-1] + b"\x0b")

    assert store.read("i") == records[:-1]
