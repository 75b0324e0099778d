"""The fast decoders compiled from the record layouts: they make of every document what the
generic decoder makes of it (the same record, or the same refusal), on good and damaged
documents, lines and journal files alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_codec import (
    RECORD_TYPES,
    deeply_nested,
    json_values,
    records_of,
)
from wfcli import FileStore, JournalCorruptError
from wfcli.core import codec
from wfcli.core.codec import (
    MAX_NESTING,
    AttemptStarted,
    Created,
    Record,
    RecordError,
    StepCompleted,
    add_checksum,
    decode_line,
    decode_record,
    encode_record,
)
from wfcli.store.contract import Owner

ALL_FAST = {layout.name: codec._fast_decoder(layout) for layout in codec._LAYOUTS.values()}


@contextmanager
def decoders(fast: bool) -> Iterator[None]:
    """Decode with every type's fast decoder, or with none (and none compiled meanwhile)."""
    with (
        mock.patch.object(codec, "_fast_decoders", dict(ALL_FAST) if fast else {}),
        mock.patch.object(codec, "_FAST_AFTER", -1),
    ):
        yield


def outcome(decode: Any, *arguments: object) -> tuple[object, ...]:
    """What ``decode`` makes of ``arguments``: its result as text (a record's repr shows
    each field with its type, a time with its zone), or the refusal and its reason."""
    try:
        return ("decoded", repr(decode(*arguments)))
    except RecordError as error:
        return ("refused", error.reason)


def both_ways(decode: Any, *arguments: object) -> tuple[tuple[object, ...], tuple[object, ...]]:
    with decoders(fast=False):
        generic = outcome(decode, *arguments)
    with decoders(fast=True):
        fast = outcome(decode, *arguments)
    return generic, fast


def document_of(record: Record, number: int = 7) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode_record(record, number))
    return document


# Values a damaged or hostile line may hold instead of a field's: of every JSON type, and
# the near misses of each check (a bool for a count, a time without or with another zone).
ODD_VALUES = json_values | st.sampled_from(
    [
        True,
        False,
        -1,
        2.0,
        2**64,
        "",
        "soon",
        "2030-01-01T00:00:00",
        "2030-01-01T05:30:00.000000+05:30",
        "2030-01-01T00:00:00.000000+00:00",
        "do",
        "sleep",
        {"name": "E"},
        {"name": "E", "message": "m"},
        {"name": "E", "message": "m", "traceback": None},
        ["a", 1],
        deeply_nested(MAX_NESTING + 1),
    ]
)
KEYS = st.sampled_from(["v", "n", "type", "crc", "at", "step", "attempt", "output", "extra"])


@st.composite
def damaged_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A record's parsed version 2 line with a few keys changed, dropped or added."""
    cls = draw(st.sampled_from(RECORD_TYPES))
    document = document_of(draw(records_of(cls)))
    names = sorted(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(names) | KEYS)
        change = draw(st.sampled_from(["set", "drop", "version"]))
        if change == "drop":
            document.pop(key, None)
        elif change == "version":
            document["v"] = draw(st.sampled_from([1, 2, 2.0, True, "2", None, 3]))
        else:
            document[key] = draw(ODD_VALUES)
    return document


# --- documents ------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of([records_of(cls) for cls in RECORD_TYPES]))
def test_a_fast_decoder_reads_every_good_line_as_the_generic_decoder_does(record: Record) -> None:
    document = document_of(record)
    layout = codec._LAYOUTS[type(record)]
    fast = ALL_FAST[layout.name](document)
    assert fast is not None  # it takes every line wfcli writes: nothing left to _decode
    assert repr(fast) == repr(codec._decode(layout, document, layout.checked_keys))
    assert fast == record
    generic, fast_outcome = both_ways(codec._decode_document, document)
    assert generic == fast_outcome


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_documents())
def test_a_damaged_document_gets_the_record_or_refusal_the_generic_decoder_gives(
    document: dict[str, Any],
) -> None:
    generic, fast = both_ways(codec._decode_document, document)
    assert generic == fast


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_documents())
def test_a_fast_decoder_declines_whatever_the_generic_decoder_refuses(
    document: dict[str, Any],
) -> None:
    """None (and never an error of its own) for each document _decode refuses: what the
    reader is told is always the generic decoder's reason."""
    tag = document.get("type")
    decoder = ALL_FAST.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        return
    layout = codec._BY_TAG[document["type"]]
    with decoders(fast=False):
        generic = outcome(codec._decode_document, document)
    if generic[0] == "refused":
        assert decoder(document) is None
    elif decoder(document) is not None:
        assert repr(decoder(document)) == repr(codec._decode(layout, document, layout.checked_keys))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2.0}, None),  # read, as before: 2.0 == 2
        ({"v": True}, "step_completed record has unexpected field 'crc'"),  # True == 1
        ({"v": 1}, "step_completed record has unexpected field 'crc'"),
        ({"n": None}, None),  # the journal's rules refuse it, not the decoder
        ({"attempt": True}, "step_completed.attempt: expected a non-negative integer, got True"),
        ({"attempt": -1}, "step_completed.attempt: expected a non-negative integer, got -1"),
        ({"kind": ["do"]}, "step_completed.kind: expected one of do, sleep, event, instance"),
        ({"at": "2030-01-01T00:00:00"}, "step_completed.at: timestamp '2030-01-01T00:00:00' has"),
        ({"sensitive": 1}, "step_completed.sensitive: expected true or false, got 1"),
        ({"output": deeply_nested(MAX_NESTING + 1)}, "step_completed.output: nested deeper"),
        ({"extra": 1}, "step_completed record has unexpected field 'extra'"),
    ],
)
def test_a_damaged_step_document_is_refused_as_before_with_fast_decoders(
    change: dict[str, object], reason: str | None
) -> None:
    document = {**document_of(STEP), **change}
    generic, fast = both_ways(decode_record, document)
    assert fast == generic
    if reason is None:
        assert fast[0] == "decoded"
    else:
        assert fast[0] == "refused"
        assert str(fast[1]).startswith(reason)


def test_a_document_missing_its_number_or_checksum_is_left_to_the_generic_decoder() -> None:
    document = document_of(STEP)
    for key in ("n", "crc", "attempt"):
        short = {k: v for k, v in document.items() if k != key}
        assert ALL_FAST["step_completed"](short) is None
    with decoders(fast=True):
        assert codec._decode_document({k: v for k, v in document.items() if k != "n"})[2] is None
        with pytest.raises(RecordError, match="a version 2 record lacks its checksum 'crc'"):
            decode_record({k: v for k, v in document.items() if k != "crc"})
        with pytest.raises(RecordError, match="step_completed record lacks field 'attempt'"):
            decode_record({k: v for k, v in document.items() if k != "attempt"})


def test_a_dict_of_another_class_is_left_to_the_generic_decoder() -> None:
    class Document(dict[str, Any]):
        def __len__(self) -> int:
            return 0  # would fool a count of keys

    document = Document({**document_of(STEP), "extra": 1})
    with decoders(fast=True), pytest.raises(RecordError, match="unexpected field 'extra'"):
        decode_record(document)


# --- when the fast decoders are used ---------------------------------------------------------

STEP = StepCompleted(
    at=codec.parse_time("2030-01-01T00:00:00.000000+00:00"),
    step="charge",
    kind="do",
    attempt=1,
    output={"ok": True},
)


def test_a_type_gets_its_fast_decoder_after_so_many_lines_and_then_uses_it() -> None:
    line = encode_record(STEP, 3).encode()
    with (
        mock.patch.object(codec, "_fast_decoders", {}),
        mock.patch.object(codec, "_decoded_counts", {}),
        mock.patch.object(codec, "_FAST_AFTER", 3),
    ):
        for _ in range(2):
            assert decode_line(line) == (STEP, 2, 3)
        assert "step_completed" not in codec._fast_decoders
        assert decode_line(line) == (STEP, 2, 3)  # the third: compiled now
        assert set(codec._fast_decoders) == {"step_completed"}
        with mock.patch.object(codec, "_decode", side_effect=AssertionError("generic")):
            assert decode_line(line) == (STEP, 2, 3)
            with pytest.raises(AssertionError, match="generic"):  # a damaged line: generic
                decode_line(encode_record(STEP, 3, 1).encode())


def test_version_1_lines_never_count_towards_a_fast_decoder() -> None:
    line = encode_record(STEP, 3, 1).encode()
    with (
        mock.patch.object(codec, "_fast_decoders", {}),
        mock.patch.object(codec, "_decoded_counts", {}),
        mock.patch.object(codec, "_FAST_AFTER", 2),
    ):
        for _ in range(5):
            assert decode_line(line) == (STEP, 1, 3)
        assert codec._fast_decoders == {}


# --- lines and journal files -----------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_documents(), st.booleans())
def test_a_damaged_line_with_a_good_checksum_is_refused_as_the_generic_decoder_refuses_it(
    document: dict[str, Any], checksummed: bool
) -> None:
    """A hostile line: its checksum computed over the damage, so that decoding decides."""
    body = {key: value for key, value in document.items() if key != "crc"}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    line = (add_checksum(text[:-1]) if checksummed else text).encode("utf-8", "surrogatepass")
    generic, fast = both_ways(decode_line, line)
    assert generic == fast


OWNER = Owner(worker_id="w-1", pid=1, host="test")
STEPS = 300  # more lines of each type than it takes to compile its fast decoder


def long_journal(store: FileStore) -> list[str]:
    store.create(Created(at=STEP.at, instance_id="i", workflow="w", params=None))
    with store.acquire("i", OWNER) as lease:
        for index in range(STEPS):
            lease.append([AttemptStarted(at=STEP.at, step=f"s{index}", attempt=1)], sync=False)
            lease.append(
                [StepCompleted(at=STEP.at, step=f"s{index}", kind="do", attempt=1, output=index)],
                sync=False,
            )
    return store.journal_path("i").read_text(encoding="utf-8").split("\n")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"attempt": True}, "step_completed.attempt: expected a non-negative integer, got True"),
        ({"at": "2030-01-01T05:30:00"}, "step_completed.at: timestamp '2030-01-01T05:30:00' has"),
        ({"kind": "loop"}, "step_completed.kind: expected one of do, sleep, event, instance"),
        ({"kind": "event"}, "step_completed.output: an event step's result must be an object"),
        ({"n": 7}, "record number 7 where 501 belongs"),
        ({"v": 1}, "step_completed record has unexpected field 'crc'"),
        ({"extra": None}, "step_completed record has unexpected field 'extra'"),
        ({"type": "attempt_started"}, "attempt_started record has unexpected field 'kind'"),
        ({"type": "created"}, "created record has unexpected field 'attempt'"),
    ],
)
def test_a_long_journal_damaged_near_its_end_is_refused_as_before(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    store = FileStore(tmp_path, durable=False)
    lines = long_journal(store)
    document = json.loads(lines[500])
    assert document["type"] == "step_completed"
    document.pop("crc")
    document.update(change)
    lines[500] = add_checksum(json.dumps(document, separators=(",", ":"))[:-1])
    store.journal_path("i").write_text("\n".join(lines), encoding="utf-8")

    refusals = []
    for fast in (False, True):
        with decoders(fast), pytest.raises(JournalCorruptError) as refused:
            FileStore(tmp_path, durable=False).read("i")
        refusals.append((refused.value.line, refused.value.reason))
    assert refusals[0] == refusals[1]
    assert refusals[1][0] == 501
    assert str(refusals[1][1]).startswith(reason)


def test_a_long_journal_reads_back_the_same_records_with_fast_decoders(tmp_path: Path) -> None:
    store = FileStore(tmp_path, durable=False)
    long_journal(store)
    with decoders(fast=False):
        generic = store.read("i")
    with (
        decoders(fast=True),
        mock.patch.object(codec, "_decode", side_effect=AssertionError("generic")),
    ):
        fast = store.read("i")  # created lines included: every type has its fast decoder
    assert fast == generic
    assert len(fast) == 1 + 2 * STEPS
