"""Retry policies, backoff, per-attempt timeouts and how step failures are journaled."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wfcli import (
    FakeClock,
    FileStore,
    InstanceHandle,
    NonRetryableError,
    RetryPolicy,
    StepContext,
    StepFailedError,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInputError,
    WorkflowStep,
)
from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    ErrorInfo,
    Record,
    StepFailed,
    Suspended,
)
from wfcli.core.retry import backoff_delay, next_attempt_at

SECOND = timedelta(seconds=1)


def start(
    store_dir: Path, clock: FakeClock, workflow: type[WorkflowEntrypoint], params: object = None
) -> InstanceHandle:
    client = WorkflowClient(FileStore(store_dir, durable=False), {"wf": workflow}, clock=clock)
    return client.create("wf", params=params)


def of_type(records: list[Record], wanted: type[Record]) -> list[Any]:
    return [record for record in records if isinstance(record, wanted)]


# --- the policy -------------------------------------------------------------------------------


def test_the_default_policy_is_five_retries_ten_seconds_exponential() -> None:
    policy = RetryPolicy()
    assert (policy.limit, policy.max_attempts) == (5, 6)
    assert (policy.delay, policy.backoff) == (10 * SECOND, "exponential")


def test_a_partial_mapping_takes_the_missing_keys_from_the_base() -> None:
    base = RetryPolicy(limit=2, delay=3 * SECOND, backoff="linear")

    assert RetryPolicy.from_value({"limit": 7}, base) == RetryPolicy(7, 3 * SECOND, "linear")
    assert RetryPolicy.from_value({"delay": "1 minute"}, base).delay == 60 * SECOND
    assert RetryPolicy.from_value(None, base) is base
    assert RetryPolicy.from_value(RetryPolicy(limit=0), base) == RetryPolicy(limit=0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"limit": -1}, "retries.limit: expected a whole number from 0 to 10000, got -1"),
        ({"limit": True}, "retries.limit: expected a whole number"),
        ({"limit": "3"}, "retries.limit: expected a whole number"),
        ({"limit": 10_001}, "retries.limit: expected a whole number"),
        ({"delay": "soon"}, "retries.delay: 'soon' is not a duration"),
        ({"delay": -1}, "retries.delay: -1 is negative"),
        ({"backoff": "random"}, "retries.backoff: expected one of constant, linear, exponential"),
        ({"limits": 3}, "retries: unknown key 'limits'"),
        (3, "retries: expected a mapping with limit/delay/backoff, got int"),
    ],
)
def test_a_bad_retry_config_is_a_value_error_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as refused:
        RetryPolicy.from_value(value)
    assert isinstance(refused.value, WorkflowInputError)


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [
        ("constant", [2, 2, 2, 2, 2]),
        ("linear", [2, 4, 6, 8, 10]),
        ("exponential", [2, 4, 8, 16, 32]),
    ],
)
def test_backoff_delay_after_each_failed_attempt(backoff: Any, waits: list[int]) -> None:
    policy = RetryPolicy(limit=5, delay=2 * SECOND, backoff=backoff)
    assert [backoff_delay(policy, n) for n in range(1, 6)] == [w * SECOND for w in waits]


def test_backoff_delay_is_capped_and_attempts_count_from_one() -> None:
    huge = backoff_delay(RetryPolicy(delay=timedelta(days=3650)), 10_000)
    assert huge == timedelta(seconds=100 * 366 * 86400)
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(RetryPolicy(), 0)


# --- retries in the executor ------------------------------------------------------------------


class FailsThenSucceeds(WorkflowEntrypoint):
    """Step ``flaky`` fails ``failures`` times, then returns the attempt that worked."""

    attempts_seen: ClassVar[list[int]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def flaky(context: StepContext) -> int:
            type(self).attempts_seen.append(context.attempt)
            if context.attempt <= event.payload["failures"]:
                raise ConnectionError(f"attempt {context.attempt} failed")
            return context.attempt

        return step.do("flaky", flaky, retries=event.payload["retries"])


@pytest.fixture
def attempts_seen() -> list[int]:
    FailsThenSucceeds.attempts_seen = []
    return FailsThenSucceeds.attempts_seen


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [("constant", [2, 2, 2]), ("linear", [2, 4, 6]), ("exponential", [2, 4, 8])],
)
def test_journaled_retry_times_follow_the_backoff(
    store_dir: Path, clock: FakeClock, attempts_seen: list[int], backoff: str, waits: list[int]
) -> None:
    retries = {"limit": 4, "delay": "2 seconds", "backoff": backoff}
    handle = start(store_dir, clock, FailsThenSucceeds, {"failures": 3, "retries": retries})

    final = handle.execute()

    assert (final.status, final.output) == ("complete", 4)
    assert attempts_seen == [1, 2, 3, 4]
    records = handle.client.history(handle.id)
    failures = of_type(records, AttemptFailed)
    assert [f.retry_at - f.at for f in failures] == [w * SECOND for w in waits]
    assert [f.error.message for f in failures] == [f"attempt {n} failed" for n in (1, 2, 3)]
    next_attempts = of_type(records, AttemptStarted)[1:]
    assert all(
        started.at >= failed.retry_at
        for started, failed in zip(next_attempts, failures, strict=True)
    )


def test_a_retry_delay_longer_than_the_inline_limit_suspends_until_the_journaled_time(
    store_dir: Path, clock: FakeClock, attempts_seen: list[int]
) -> None:
    retries = {"limit": 1, "delay": "5 minutes", "backoff": "constant"}
    handle = start(store_dir, clock, FailsThenSucceeds, {"failures": 1, "retries": retries})

    first = handle.execute()
    clock.advance(timedelta(minutes=4))
    early = handle.execute()
    clock.advance(timedelta(minutes=2))
    final = handle.execute()

    (failed,) = of_type(handle.client.history(handle.id), AttemptFailed)
    assert first.waiting is not None
    assert (first.waiting.kind, first.waiting.until) == ("retry", failed.retry_at)
    assert early.status == "waiting"
    assert [s.until for s in of_type(handle.client.history(handle.id), Suspended)] == [
        failed.retry_at,
        failed.retry_at,
    ]
    assert (final.status, final.output) == ("complete", 2)
    assert attempts_seen == [1, 2]


def test_exhausted_retries_raise_step_failed_error_with_the_last_error(
    store_dir: Path, clock: FakeClock, attempts_seen: list[int]
) -> None:
    retries = {"limit": 2, "delay": 0}
    final = start(
        store_dir, clock, FailsThenSucceeds, {"failures": 9, "retries": retries}
    ).execute()

    assert attempts_seen == [1, 2, 3]
    assert final.status == "errored"
    assert final.error == ErrorInfo("ConnectionError", "attempt 3 failed")
    step = final.state.steps["flaky"]
    assert (step.status, step.attempts) == ("failed", 3)


class TimesOut(WorkflowEntrypoint):
    release: ClassVar[threading.Event] = threading.Event()

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            step.do(
                "stuck",
                lambda: type(self).release.wait(30),
                retries={"limit": 1, "delay": 0},
                timeout=0.2,
            )
        except StepFailedError as error:
            return [error.error_name, error.error_message, error.attempts]
        return "finished in time"


def test_an_attempt_over_its_timeout_is_retried_then_fails_with_step_timeout_error(
    store_dir: Path, clock: FakeClock
) -> None:
    TimesOut.release = threading.Event()
    try:
        handle = start(store_dir, clock, TimesOut)
        final = handle.execute()
    finally:
        TimesOut.release.set()  # let the abandoned callbacks end

    assert final.output == [
        "StepTimeoutError",
        "attempt 2 of step 'stuck' timed out after 0.2 seconds",
        2,
    ]
    failures = of_type(handle.client.history(handle.id), AttemptFailed)
    assert [f.error.name for f in failures] == ["StepTimeoutError", "StepTimeoutError"]


class RaisesItsOwnTimeout(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def call_api(context: StepContext) -> str:
            if context.attempt == 1:
                raise TimeoutError("the API did not answer")
            return "answered"

        return step.do("api", call_api, retries={"limit": 1, "delay": 0}, timeout=60)


def test_a_callbacks_own_timeout_error_is_an_ordinary_failure(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, RaisesItsOwnTimeout)
    final = handle.execute()

    assert final.output == "answered"
    (failed,) = of_type(handle.client.history(handle.id), AttemptFailed)
    assert (failed.error.name, failed.error.message) == ("TimeoutError", "the API did not answer")


class GivesUp(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def charge() -> None:
            raise NonRetryableError("card declined", name=event.payload)

        return step.do("charge", charge, retries={"limit": 5, "delay": 0})


@pytest.mark.parametrize(("name", "shown"), [(None, "NonRetryableError"), ("Declined", "Declined")])
def test_non_retryable_error_ends_the_step_at_once(
    store_dir: Path, clock: FakeClock, name: str | None, shown: str
) -> None:
    handle = start(store_dir, clock, GivesUp, name)
    final = handle.execute()

    assert final.state.steps["charge"].attempts == 1
    assert final.error == ErrorInfo(shown, "card declined")
    records = handle.client.history(handle.id)
    assert len(of_type(records, AttemptStarted)) == 1
    (failed,) = of_type(records, AttemptFailed)
    assert failed.retry_at is None


class CatchesFailure(WorkflowEntrypoint):
    """Catches a failed step, then sleeps so that later runs replay the failure."""

    caught: ClassVar[list[tuple[object, ...]]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects_file = Path(event.payload)

        def charge() -> None:
            with effects_file.open("a") as calls:
                calls.write("called\n")
            _ = None.amount  # type: ignore[attr-defined]

        try:
            step.do("charge", charge, retries={"limit": 1, "delay": 0})
        except StepFailedError as error:
            type(self).caught.append(
                (error.step, error.error_name, error.error_message, error.attempts, str(error))
            )
        step.sleep("cool-off", "1 hour")
        return len(type(self).caught)


def test_step_failed_error_is_identical_on_the_first_run_and_every_replay(
    store_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    CatchesFailure.caught = []
    calls = tmp_path / "charge.calls"
    handle = start(store_dir, clock, CatchesFailure, str(calls))

    handle.execute()
    clock.advance(timedelta(hours=2))
    handle.execute()
    handle.restart(from_step="cool-off")
    final = handle.execute(max_inline_wait=timedelta(hours=2))

    assert final.output == 3
    expected = (
        "charge",
        "AttributeError",
        "'NoneType' object has no attribute 'amount'",
        2,
        "step 'charge' failed after 2 attempts: AttributeError: "
        "'NoneType' object has no attribute 'amount'",
    )
    assert CatchesFailure.caught == [expected, expected, expected]
    assert calls.read_text().splitlines() == ["called", "called"]
    (failed,) = of_type(handle.client.history(handle.id), StepFailed)
    assert (failed.error.name, failed.attempts) == ("AttributeError", 2)


class LetsFailureEscape(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def lookup() -> object:
            return {}["sku-17"]

        return step.do("lookup", lookup, retries={"limit": 0})


def test_an_uncaught_step_failure_errors_the_instance_with_the_original_error(
    store_dir: Path, clock: FakeClock
) -> None:
    final = start(store_dir, clock, LetsFailureEscape).execute()

    assert final.status == "errored"
    assert final.error == ErrorInfo("KeyError", "'sku-17'")


class FailsOnABadFileName(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def read() -> None:
            raise FileNotFoundError("cannot read report-\udcff.csv")  # a non-UTF-8 file name

        return step.do("read", read, retries={"limit": 1, "delay": 0})


def test_an_error_message_that_is_not_valid_unicode_is_kept_escaped(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, FailsOnABadFileName)
    final = handle.execute()

    assert final.error == ErrorInfo(
        "FileNotFoundError",
        "cannot read report-\\udcff.csv",
    )
    assert final.state.steps["read"].attempts == 2


def test_the_next_attempt_waits_its_backoff_runs_at_once_after_a_loss_and_not_past_the_limit() -> (
    None
):
    policy = RetryPolicy(limit=2, delay=3 * SECOND, backoff="linear")  # three attempts
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert next_attempt_at(policy, 2, now, final=False, lost=False) == now + 6 * SECOND
    assert next_attempt_at(policy, 2, now, final=False, lost=True) == now
    assert next_attempt_at(policy, 1, now, final=True, lost=False) is None
    assert next_attempt_at(policy, 3, now, final=False, lost=True) is None
