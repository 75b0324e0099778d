"""Durations as users write them, and their refusal before anything is journaled."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from wfcli import (
    FakeClock,
    FileStore,
    Settings,
    StepTimeoutError,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInputError,
    WorkflowStep,
)
from wfcli.core.codec import ErrorInfo
from wfcli.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0),
        (5, 5),
        (2.5, 2.5),
        (timedelta(minutes=3), 180),
        ("1 second", 1),
        ("30 seconds", 30),
        ("1 minute", 60),
        ("2 minutes", 120),
        ("1.5 hours", 5400),
        ("1 day", 86400),
        ("2 weeks", 1_209_600),
        ("  3 Hours ", 10_800),
        ("10seconds", 10),
        ("0 seconds", 0),
    ],
)
def test_a_duration_is_seconds_a_timedelta_or_number_and_unit(
    value: object, seconds: float
) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "expected a duration, got a boolean"),
        (None, "expected seconds, a timedelta or text, got NoneType"),
        ([5], "expected seconds, a timedelta or text, got list"),
        (-1, "-1 is negative"),
        (timedelta(seconds=-1), "is negative"),
        (float("nan"), "nan is not a finite number of seconds"),
        (float("inf"), "inf is not a finite number of seconds"),
        ("5", "'5' is not a duration"),
        ("five seconds", "'five seconds' is not a duration"),
        ("5 fortnights", "'5 fortnights' is not a duration"),
        ("-5 seconds", "'-5 seconds' is not a duration"),
        ("1e3 seconds", "'1e3 seconds' is not a duration"),
        ("5 seconds later", "is not a duration"),
        ("", "'' is not a duration"),
        ("5300 weeks", "is longer than 100 years"),
        (10**12, "is longer than 100 years"),
    ],
)
def test_a_bad_duration_is_a_value_error_saying_what_is_wrong(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=r"^timeout: ") as refused:
        parse_duration(value, "timeout")

    assert isinstance(refused.value, WorkflowInputError)
    assert refused.value.what == "timeout"
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0ms"),
        (0.45, "450ms"),
        (2.5, "2.5s"),
        (42, "42s"),
        (61, "1m 1s"),
        (3723, "1h 2m"),
        (90061, "1d 1h"),
        (7 * 86400, "7d"),
        (0.9996, "1.0s"),  # rounded to what is shown: never "1000ms"
        (9.96, "10s"),
        (59.7, "1m"),
        (-1, "0ms"),
    ],
)
def test_format_duration_is_compact(seconds: float, shown: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == shown


class UsesBadDurations(WorkflowEntrypoint):
    """Tries each bad duration in the params and reports each refusal."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        bad = event.payload
        attempts = {
            "sleep": lambda: step.sleep("nap", bad),
            "timeout": lambda: step.do("work", lambda: 1, timeout=bad),
            "retries.delay": lambda: step.do("work", lambda: 1, retries={"delay": bad}),
            "event timeout": lambda: step.wait_for_event("ask", type="t", timeout=bad),
        }
        refusals = {}
        for what, attempt in attempts.items():
            try:
                attempt()
            except ValueError as error:
                refusals[what] = str(error)
        return refusals


@pytest.mark.parametrize("bad", ["5 fortnights", -3, "soon"])
def test_a_bad_duration_in_a_workflow_is_refused_before_anything_is_journaled(
    tmp_path: Path, bad: object
) -> None:
    client = WorkflowClient(FileStore(tmp_path), {"wf": UsesBadDurations}, clock=FakeClock())

    final = client.create("wf", params=bad).execute()

    assert final.status == "complete"
    refusals = final.output
    assert isinstance(refusals, dict)
    assert sorted(refusals) == ["event timeout", "retries.delay", "sleep", "timeout"]
    assert refusals["sleep"].startswith("sleep duration: ")
    assert refusals["retries.delay"].startswith("retries.delay: ")
    assert final.state.steps == {}


def test_a_zero_step_timeout_is_refused(tmp_path: Path) -> None:
    class ZeroTimeout(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("work", lambda: 1, timeout=0)

    final = WorkflowClient(FileStore(tmp_path), {"wf": ZeroTimeout}).create("wf").execute()

    assert final.error == ErrorInfo(
        "WorkflowInputError",
        "timeout: must be longer than zero",
    )
    assert final.state.steps == {}


def test_a_zero_default_timeout_is_refused_for_a_step_that_gives_none(tmp_path: Path) -> None:
    class DefaultTimeout(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("work", lambda: 1)

    client = WorkflowClient(
        FileStore(tmp_path), {"wf": DefaultTimeout}, settings=Settings(timeout=timedelta(0))
    )
    final = client.create("wf").execute()

    assert final.error == ErrorInfo("WorkflowInputError", "timeout: must be longer than zero")
    assert final.state.steps == {}


def test_rollback_options_without_a_rollback_are_refused(tmp_path: Path) -> None:
    class RollbackConfigAlone(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("work", lambda: 1, rollback_config={"retries": {"limit": 1}})

    final = WorkflowClient(FileStore(tmp_path), {"wf": RollbackConfigAlone}).create("wf").execute()

    assert final.error == ErrorInfo(
        "WorkflowInputError", "rollback_config: given without a rollback"
    )
    assert final.state.steps == {}


@pytest.mark.parametrize(
    ("seconds", "said"), [(1, "1 second"), (0.5, "0.5 seconds"), (30, "30 seconds")]
)
def test_a_timeout_is_said_in_the_words_it_is_written_in(seconds: float, said: str) -> None:
    error = StepTimeoutError("fetch", 2, seconds)
    assert str(error) == f"attempt 2 of step 'fetch' timed out after {said}"
