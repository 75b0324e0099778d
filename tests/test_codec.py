"""JSON values and journal records: checks, encoding, decoding and its refusals."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wfcli import ValueTooLargeError, WorkflowInputError, codec
from wfcli.codec import (
    FORMAT_VERSION,
    MAX_NESTING,
    ErrorInfo,
    InboxMessage,
    Record,
    RecordError,
    StepFailed,
    WaitStarted,
    Warned,
    check_json,
    decode_record,
    encode_record,
    format_time,
    parse_time,
    record_to_json,
)

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
    "error": st.builds(ErrorInfo, name=st.text(), message=st.text()),
    "retry_at": st.none() | moments,
    "until": moments,
    "event_type": st.none() | st.text(),
    "message_id": st.text(),
    "payload": json_values,
    "wait": st.sampled_from(["sleep", "retry", "event"]),
    "kind": st.sampled_from(["do", "sleep", "event"]),
    "from_step": st.none() | st.text(),
    "kept_steps": st.lists(st.text(), max_size=4),
    "message": st.text(),
}
FIELD_OVERRIDES: dict[tuple[type[Record], str], st.SearchStrategy[Any]] = {
    (Warned, "step"): st.none() | st.text(),
    (WaitStarted, "kind"): st.sampled_from(["sleep", "event"]),
    (StepFailed, "kind"): st.sampled_from(["do", "event"]),
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
    return decode_record(json.loads(line))


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
        key: value for key, value in json.loads(encode_record(record)).items() if key != "v"
    }


def test_the_record_types_are_those_the_format_documents() -> None:
    assert [cls.TYPE for cls in RECORD_TYPES] == sorted(
        [
            "attempt_failed",
            "attempt_started",
            "created",
            "errored",
            "event_received",
            "finished",
            "paused",
            "restarted",
            "resumed",
            "run_started",
            "step_completed",
            "step_failed",
            "suspended",
            "terminated",
            "wait_started",
            "warning",
        ]
    )


@given(moments)
def test_times_round_trip_as_utc(moment: datetime) -> None:
    parsed = parse_time(format_time(moment))
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


# --- check_json -------------------------------------------------------------------------------


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
        ({"v": 2}, "format version 2 is not supported (this wfcli reads 1)"),
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
        "v": FORMAT_VERSION,
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


# --- inbox messages ---------------------------------------------------------------------------


@given(
    action=st.sampled_from(["event", "pause", "resume", "terminate", "restart"]),
    sent_at=moments,
    event_type=st.none() | st.text(),
    payload=json_values,
    from_step=st.none() | st.text(),
)
def test_inbox_messages_round_trip(
    action: Any, sent_at: datetime, event_type: str | None, payload: Any, from_step: str | None
) -> None:
    message = InboxMessage(
        message_id="m1",
        action=action,
        sent_at=sent_at,
        event_type=event_type,
        payload=payload,
        from_step=from_step,
    )
    assert InboxMessage.decode(message.encode()) == message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not JSON"),
        ('{"v": 2, "action": "pause"}', "not a version 1 inbox message"),
        (
            '{"v": 1, "action": "explode", "message_id": "m", "sent_at": "x"}',
            "expected one of event",
        ),
    ],
)
def test_a_damaged_inbox_message_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        InboxMessage.decode(text)
