"""A failed attempt's traceback in the user's code: journaled (bounded), shown by
``wf status --verbose`` and ``--json``; journals written without one still read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli_support import ERROR_MESSAGE, make_project
from wfcli import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wfcli.cli import app
from wfcli.core.codec import (
    MAX_TRACEBACK,
    MAX_TRACEBACK_FRAMES,
    AttemptFailed,
    ErrorInfo,
    RecordError,
    StepFailed,
    decode_record,
    encode_record,
    parse_line,
    traceback_of,
)
from wfcli.testing import WorkflowHarness

_WFCLI = os.sep + "wfcli" + os.sep


def lookup(order: dict[str, Any]) -> str:
    return order["customer"]["name"]  # customer is None: a TypeError


class Charges(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def charge(context: StepContext) -> str:
            return lookup({"customer": None})

        return step.do("charge", charge, retries={"limit": 1, "delay": 0})


def test_a_failed_attempt_journals_where_the_users_code_raised() -> None:
    harness = WorkflowHarness()
    result = harness.run(Charges, instance_id="c-1")
    assert result.status == "errored"
    failed = [r for r in result.records if isinstance(r, (AttemptFailed, StepFailed))]
    assert len(failed) == 3  # two attempts, then the step
    for record in failed:
        text = record.error.traceback
        assert text is not None
        assert _WFCLI not in text  # the engine's own frames are left out
        lines = text.splitlines()
        assert (
            lines[-1].strip() == 'return order["customer"]["name"]  # customer is None: a TypeError'
        )
        assert lines[-2].endswith(", in lookup")
        assert lines[-4].endswith(", in charge")
        assert f'File "{__file__}", line' in lines[-2]
    instance = result.error
    assert instance is not None
    assert instance.traceback is not None
    run_frame, *rest = instance.traceback.splitlines()
    assert run_frame.endswith(", in run")  # from run, down into the step's callback
    assert rest[-2].endswith(", in lookup")


def test_a_traceback_is_bounded_in_frames_and_characters() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("bottom")
        deep(n - 1)

    with pytest.raises(ValueError, match="bottom") as caught:
        deep(100)
    text = traceback_of(caught.value)
    assert text is not None
    assert text.count('File "') == MAX_TRACEBACK_FRAMES
    huge = traceback_of(caught.value, inner="x" * (3 * MAX_TRACEBACK))
    assert huge is not None
    assert huge.startswith("  [... frames cut ...]\n")
    assert len(huge) == len("  [... frames cut ...]\n") + MAX_TRACEBACK
    assert traceback_of(ValueError("never raised")) is None


def test_errors_compare_without_their_traceback_and_old_lines_still_read() -> None:
    assert ErrorInfo("E", "m", "  File ...") == ErrorInfo("E", "m")  # replay compares outcomes
    at = "2030-01-01T00:00:00.000000+00:00"
    old = {
        "v": 1,
        "type": "errored",
        "at": at,
        "error": {"name": "KeyError", "message": "'sku'"},
    }
    record = decode_record(old)
    assert record.error.traceback is None  # type: ignore[attr-defined]
    assert '"traceback"' not in encode_record(record, 1)
    traced = {**old, "error": {"name": "KeyError", "message": "'sku'", "traceback": "  File"}}
    again = decode_record(parse_line(encode_record(decode_record(traced), 1, 1).encode()))
    assert again.error.traceback == "  File"  # type: ignore[attr-defined]
    with pytest.raises(RecordError, match="expected text, got int"):
        decode_record({**old, "error": {"name": "E", "message": "m", "traceback": 7}})
    with pytest.raises(RecordError, match="optional traceback"):
        decode_record({**old, "error": {"name": "E", "message": "m", "stack": "x"}})


def test_wf_status_verbose_and_json_show_the_traceback(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    runner = CliRunner()
    run = runner.invoke(app, ["run", "failing", "--id", "e1", *project.options()])
    assert run.exit_code == 1, run.output
    plain = runner.invoke(app, ["status", "e1", *project.options()])
    assert "raised at" not in plain.stdout
    verbose = runner.invoke(app, ["status", "e1", "--verbose", *project.options()])
    assert verbose.exit_code == 0, verbose.output
    assert f"NonRetryableError: {ERROR_MESSAGE} (step 'explode'), raised at:" in verbose.stdout
    assert "cli_support.py" in verbose.stdout
    assert "raise NonRetryableError(ERROR_MESSAGE)" in verbose.stdout
    document = json.loads(runner.invoke(app, ["status", "e1", "--json", *project.options()]).stdout)
    step_trace = document["steps"][0]["error"]["traceback"]
    assert step_trace.endswith("raise NonRetryableError(ERROR_MESSAGE)")
    assert document["error"]["traceback"].endswith(step_trace)
