"""Journal records to lines and back, per record (issue 10, point 7: one codec path).

Three records (``attempt_started``, ``step_completed``, ``created`` with nested
params) are encoded to line bytes and decoded from them, alternating in one run:

- ``wfcli``: ``wfcli.core.codec`` as checked out (``encode_record(...).encode()``;
  ``decode_line(...)``), what the store does per line: version 2 lines, checksummed.
- ``wfcli, version 1 lines``: the same codec writing and reading version 1 lines (no
  checksum): the difference is what the checksum costs per line.
- ``before``: ``wfcli/core/codec.py`` at commit ``BEFORE`` (the codec with three
  decode paths), loaded from git; left out outside a git checkout.
- ``msgspec, own format``: tagged ``msgspec.Struct`` records, strict decoding
  (unknown fields, ``ge=0`` counts, ``Literal`` choices, aware datetimes). Not the
  journal format: the tag comes first, times end in ``Z`` without zero microseconds.
- ``msgspec, line format``: as near to wfcli's lines as msgspec gets: times formatted
  and parsed by wfcli, the ``{"v":1,"n":N,"type":...`` head spliced on (a version 1
  line), the nesting check on JSON values; the decoded struct is not turned into a
  record (a lower bound).
  Floats with an exponent still differ (``1e16`` where Python writes ``1e+16``).

Without msgspec installed (``pip install -e '.[bench]'``) its columns are skipped.
Import cost is ``python -X importtime`` of the codec, and of msgspec after it.
"""

import importlib.util
import re
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wfcli.core import codec

from .harness import Report, Sample, Sizes, child_env

__all__ = ["BEFORE", "codec_per_record"]

BEFORE = "e1ec360"  # the last commit with the fast-path decoders
_SECTION = "8 codec"
_REPOSITORY = Path(__file__).resolve().parent.parent
_AT = datetime(2025, 6, 2, 9, 30, tzinfo=timezone.utc)
_PARAMS = {"order_id": "A-1001", "items": [{"sku": "book", "qty": 2}], "card": "4242"}
_OUTPUT = {"order_id": "A-1001", "lines": [{"sku": "book", "qty": 2, "line_cents": 2500}]}
# name, record type, its fields, its line number
_RECORDS: list[tuple[str, str, dict[str, Any], int]] = [
    ("attempt_started", "AttemptStarted", {"step": "validate", "attempt": 1}, 3),
    (
        "step_completed",
        "StepCompleted",
        {"step": "validate", "kind": "do", "attempt": 1, "output": _OUTPUT},
        4,
    ),
    (
        "created",
        "Created",
        {"instance_id": "order-1", "workflow": "order-flow", "params": _PARAMS},
        1,
    ),
]
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", re.MULTILINE)

Codec = tuple[Callable[[], object], Callable[[], object]]  # encode one, decode one


def _load_before() -> types.ModuleType | None:
    """The codec module as it was at ``BEFORE``, or None outside a git checkout."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE}:wfcli/core/codec.py"],
            cwd=_REPOSITORY,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("bench_codec_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"codec.py@{BEFORE}", "exec"), module.__dict__)
    return module


def _wfcli_codec(
    module: types.ModuleType, type_name: str, fields: dict[str, Any], n: int, *version: int
) -> Codec:
    """``version``: lines of that format version instead of the one new journals get."""
    record = getattr(module, type_name)(at=_AT, **fields)
    line = module.encode_record(record, n, *version).encode()
    decode_line = getattr(module, "decode_line", None)
    if decode_line is None:  # the codec at BEFORE, version 1 only
        decode_record, parse_line = module.decode_record, module.parse_line
        assert decode_record(parse_line(line)) == record
        return (
            lambda: module.encode_record(record, n).encode(),
            lambda: decode_record(parse_line(line)),
        )
    assert decode_line(line)[0] == record
    return (
        lambda: module.encode_record(record, n, *version).encode(),
        lambda: decode_line(line),
    )


def _msgspec_codecs() -> dict[str, dict[str, Codec]] | None:
    """Both msgspec variants for each record, or None if msgspec is not installed."""
    if importlib.util.find_spec("msgspec") is None:
        return None
    from typing import Annotated, Literal, Union

    import msgspec

    Count = Annotated[int, msgspec.Meta(ge=0)]
    Aware = Annotated[datetime, msgspec.Meta(tz=True)]
    options: dict[str, Any] = {"tag_field": "type", "forbid_unknown_fields": True, "kw_only": True}

    # Its own format: every field a native msgspec type.
    class Own(msgspec.Struct, **options):
        v: int
        n: int
        at: Aware

    class OwnAttemptStarted(Own, tag="attempt_started"):
        step: str
        attempt: Count

    class OwnStepCompleted(Own, tag="step_completed"):
        step: str
        kind: Literal["do", "sleep", "event"]
        attempt: Count
        output: Any

    class OwnCreated(Own, tag="created"):
        instance_id: str
        workflow: str
        params: Any

    # The line format: times as text (formatted and parsed by wfcli), the head spliced on.
    class Line(msgspec.Struct, **options):
        v: int
        n: int
        at: str

    class LineAttemptStarted(Line, tag="attempt_started"):
        step: str
        attempt: Count

    class LineStepCompleted(Line, tag="step_completed"):
        step: str
        kind: Literal["do", "sleep", "event"]
        attempt: Count
        output: Any

    class LineCreated(Line, tag="created"):
        instance_id: str
        workflow: str
        params: Any

    class Body(msgspec.Struct):  # what follows the head, in the line's order
        at: str

    class BodyAttemptStarted(Body):
        step: str
        attempt: int

    class BodyStepCompleted(Body):
        step: str
        kind: str
        attempt: int
        output: Any

    class BodyCreated(Body):
        instance_id: str
        workflow: str
        params: Any

    encoder = msgspec.json.Encoder()
    own_decoder = msgspec.json.Decoder(Union[OwnAttemptStarted, OwnStepCompleted, OwnCreated])  # noqa: UP007
    line_decoder = msgspec.json.Decoder(Union[LineAttemptStarted, LineStepCompleted, LineCreated])  # noqa: UP007
    own_types = {"attempt_started": OwnAttemptStarted, "step_completed": OwnStepCompleted}
    own_types["created"] = OwnCreated
    bodies = {"attempt_started": BodyAttemptStarted, "step_completed": BodyStepCompleted}
    bodies["created"] = BodyCreated
    json_fields = {"step_completed": "output", "created": "params"}
    parse_time, format_time, check_nesting = codec.parse_time, codec.format_time, codec._json

    codecs: dict[str, dict[str, Codec]] = {}
    for name, type_name, fields, n in _RECORDS:
        own = own_types[name](v=1, n=n, at=_AT, **fields)
        own_line = encoder.encode(own)
        record = getattr(codec, type_name)(at=_AT, **fields)
        body_type, json_field = bodies[name], json_fields.get(name)
        head = b'{"v":1,"n":%d,"type":"%s",' % (n, name.encode())

        def encode_line(
            record: Any = record, body_type: type[Any] = body_type, head: bytes = head
        ) -> bytes:
            values = [getattr(record, field) for field in body_type.__struct_fields__]
            values[0] = format_time(values[0])
            return head + encoder.encode(body_type(*values))[1:]

        line = encode_line()

        def decode_line(line: bytes = line, json_field: str | None = json_field) -> object:
            decoded = line_decoder.decode(line)
            parse_time(decoded.at)
            if json_field is not None:
                check_nesting(getattr(decoded, json_field))
            return decoded

        assert line == codec.encode_record(record, n, 1).encode(), (line, name)
        codecs[name] = {
            "msgspec, own format": (
                lambda own=own: encoder.encode(own),
                lambda own_line=own_line: own_decoder.decode(own_line),
            ),
            "msgspec, line format": (encode_line, decode_line),
        }
    return codecs


def _per_call(call: Callable[[], object], loops: int) -> float:
    """Microseconds per call, over ``loops`` calls."""
    started = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - started) / loops * 1e6


def _import_us(statement: str, module: str, runs: int) -> list[float]:
    """Cumulative ``-X importtime`` microseconds of ``module`` when ``statement`` runs."""
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            cwd=_REPOSITORY,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        cumulative = {name: int(us) for us, name in _IMPORTED.findall(done.stderr)}
        times.append(float(cumulative[module]))
    return times


def codec_per_record(report: Report, work: Path, sizes: Sizes) -> None:
    """Encode and decode per record: wfcli now, wfcli before, and msgspec; import costs."""
    loops = 200 if sizes.quick else 20_000
    before = _load_before()
    msgspec_codecs = _msgspec_codecs()
    if before is None:
        report.section_info(_SECTION, before_skipped=f"not a git checkout with {BEFORE}")
    if msgspec_codecs is None:
        report.section_info(
            _SECTION,
            skipped="its msgspec rows: msgspec is not installed, pip install -e '.[bench]'",
        )
    for name, type_name, fields, n in _RECORDS:
        implementations = {
            "wfcli": _wfcli_codec(codec, type_name, fields, n),
            "wfcli, version 1 lines": _wfcli_codec(codec, type_name, fields, n, 1),
        }
        if before is not None:
            implementations["before"] = _wfcli_codec(before, type_name, fields, n)
        implementations.update((msgspec_codecs or {}).get(name, {}))
        for operation in (0, 1):
            verb = ("encode", "decode")[operation]
            samples: dict[str, list[float]] = {label: [] for label in implementations}
            for _ in range(sizes.runs):  # alternating, so that noise hits every column
                for label, calls in implementations.items():
                    samples[label].append(_per_call(calls[operation], loops))
            medians = {}
            for label, values in samples.items():
                sample = report.add(_SECTION, f"{verb} {name}: {label}", Sample.of("us", values))
                medians[label] = sample.median
            for label in (
                "wfcli, version 1 lines",
                "before",
                "msgspec, line format",
                "msgspec, own format",
            ):
                if label in medians:
                    report.ratio(
                        _SECTION,
                        f"{verb} {name}: wfcli / {label}",
                        medians["wfcli"] / medians[label],
                    )
    runs = max(1, sizes.runs)
    report.add(
        _SECTION,
        "import wfcli.core.codec (cumulative, -X importtime)",
        Sample.of("us", _import_us("import wfcli.core.codec", "wfcli.core.codec", runs)),
    )
    if msgspec_codecs is not None:
        report.add(
            _SECTION,
            "import msgspec.json after wfcli.core.codec (cumulative)",
            Sample.of(
                "us", _import_us("import wfcli.core.codec, msgspec.json", "msgspec.json", runs)
            ),
        )
    report.section_info(_SECTION, loops_per_run=loops)
