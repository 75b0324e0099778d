"""``wfcli.testing``: the harness drives the real executor on a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from wfcli import (
    FileStore,
    NonRetryableError,
    StepContext,
    StepFailedError,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowInputError,
    WorkflowStep,
    WorkflowTimeoutError,
)
from wfcli.core.codec import EventReceived
from wfcli.testing import FakeClock, RunResult, WorkflowHarness

START = datetime.fromisoformat("2030-01-01T00:00:00+00:00")


class Counter:
    """Counts real callback calls per step name."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, name: str, value: Any = None) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        return value if value is not None else name


class Order(WorkflowEntrypoint):
    """Charge with retries, sleep a day, wait an hour for approval, then ship."""

    counter = Counter()

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        count = self.counter
        charge = step.do(
            "charge",
            lambda: count("charge", {"paid": True}),
            retries={"limit": 4, "delay": "10 seconds", "backoff": "exponential"},
            timeout="30 seconds",
        )
        step.sleep("cool-off", "1 day")
        try:
            approval = step.wait_for_event("approval", type="approved", timeout="1 hour").payload
        except WorkflowTimeoutError:
            approval = "timed out"
        shipped = step.do("ship", lambda: count("ship", "shipped"))
        return {"charge": charge, "approval": approval, "shipped": shipped}


@pytest.fixture
def counter() -> Counter:
    Order.counter = Counter()
    return Order.counter


@pytest.fixture
def harness() -> WorkflowHarness:
    return WorkflowHarness()


def test_a_run_suspends_at_each_wait_until_time_travels(
    harness: WorkflowHarness, counter: Counter
) -> None:
    first = harness.run(Order)

    assert (first.status, first.waiting and first.waiting.step) == ("waiting", "cool-off")
    assert harness.advance("23 hours") == []
    (slept,) = harness.advance("1 hour")
    assert slept.waiting is not None
    assert (slept.status, slept.waiting.step) == ("waiting", "approval")
    assert slept.waiting.until == START + timedelta(days=1, hours=1)
    (done,) = harness.advance("1 hour")  # across the event's timeout
    assert done.status == "complete"
    assert done.output == {"charge": {"paid": True}, "approval": "timed out", "shipped": "shipped"}
    assert done.step("approval").status == "failed"
    assert harness.clock.now() == START + timedelta(days=1, hours=1)
    assert counter.calls == {"charge": 1, "ship": 1}


def test_disable_sleeps_ends_sleeps_at_once_and_moves_the_clock(
    harness: WorkflowHarness, counter: Counter
) -> None:
    harness.disable_sleeps()

    result = harness.run(Order)

    assert result.waiting is not None
    assert (result.status, result.waiting.kind) == ("waiting", "event")  # events still wait
    assert harness.clock.now() == START + timedelta(days=1)
    assert result.step("cool-off").status == "completed"


def test_retry_schedule_with_exponential_backoff_on_the_fake_clock(
    harness: WorkflowHarness, counter: Counter
) -> None:
    harness.disable_sleeps()
    harness.mock_step_error("charge", ConnectionError("card network down"), times=3)

    result = harness.run(Order)

    attempts = result.attempts("charge")
    assert [attempt.started - START for attempt in attempts] == [
        timedelta(seconds=0),
        timedelta(seconds=10),
        timedelta(seconds=30),
        timedelta(seconds=70),
    ]
    assert [attempt.retry_at for attempt in attempts[:3]] == [a.started for a in attempts[1:]]
    assert {attempt.error.name for attempt in attempts[:3] if attempt.error} == {"ConnectionError"}
    assert attempts[3].error is None
    assert result.step("charge").attempts == 4
    assert counter.calls["charge"] == 1  # only the fourth attempt ran the real callback


def test_retry_delays_suspend_without_disable_sleeps(
    harness: WorkflowHarness, counter: Counter
) -> None:
    harness.mock_step_error("charge", ConnectionError("down"), times=2)

    first = harness.run(Order)
    assert harness.advance("9 seconds") == []
    (second,) = harness.advance("1 second")
    (third,) = harness.advance("20 seconds")

    assert first.waiting is not None
    assert second.waiting is not None
    assert third.waiting is not None
    assert [first.waiting.kind, second.waiting.kind, third.waiting.kind] == [
        "retry",
        "retry",
        "sleep",
    ]
    assert second.waiting.until == START + timedelta(seconds=30)
    assert third.step("charge").attempts == 3


def test_mock_step_result_skips_the_callback(harness: WorkflowHarness, counter: Counter) -> None:
    harness.disable_sleeps()
    harness.mock_step_result("charge", {"paid": "mocked"})
    harness.mock_event("approved", {"by": "test"})

    result = harness.run(Order)

    assert result.status == "complete"
    assert result.output == {
        "charge": {"paid": "mocked"},
        "approval": {"by": "test"},
        "shipped": "shipped",
    }
    assert result.step("charge").output == {"paid": "mocked"}
    assert counter.calls == {"ship": 1}


def test_mock_step_error_without_times_fails_the_step_for_good(
    harness: WorkflowHarness, counter: Counter
) -> None:
    harness.disable_sleeps()
    harness.mock_step_error("charge", ValueError("declined"))

    result = harness.run(Order)

    assert result.status == "errored"
    assert result.error is not None
    assert (result.error.name, result.error.message) == ("ValueError", "declined")
    assert result.step("charge").attempts == 5
    assert counter.calls == {}


def test_mock_step_error_non_retryable_ends_at_the_first_attempt(
    harness: WorkflowHarness, counter: Counter
) -> None:
    harness.mock_step_error("charge", NonRetryableError("card stolen", name="CardError"))

    result = harness.run(Order)

    assert result.status == "errored"
    assert result.error is not None
    assert (result.error.name, result.error.message) == ("CardError", "card stolen")
    assert len(result.attempts("charge")) == 1


def test_force_step_timeout_times_out_attempts(harness: WorkflowHarness, counter: Counter) -> None:
    harness.disable_sleeps()
    harness.force_step_timeout("charge", times=1)

    result = harness.run(Order)

    first, second = result.attempts("charge")
    assert first.error is not None
    assert first.error.name == "StepTimeoutError"
    assert "timed out after 30 seconds" in first.error.message
    assert second.error is None
    assert counter.calls["charge"] == 1


def test_force_event_timeout_times_out_at_once(harness: WorkflowHarness, counter: Counter) -> None:
    harness.disable_sleeps()
    harness.force_event_timeout("approval")

    result = harness.run(Order)

    assert result.status == "complete"
    assert result.output["approval"] == "timed out"
    assert harness.clock.now() == START + timedelta(days=1)  # no time passed for the event


def test_send_event_resumes_a_waiting_instance(harness: WorkflowHarness, counter: Counter) -> None:
    harness.disable_sleeps()
    waiting = harness.run(Order, instance_id="order-1")

    result = harness.send_event("order-1", "approved", {"by": "alice"})

    assert waiting.status == "waiting"
    assert result.status == "complete"
    assert result.output["approval"] == {"by": "alice"}
    assert any(isinstance(record, EventReceived) for record in result.records)


def test_mocked_events_are_buffered_first_in_first_out(harness: WorkflowHarness) -> None:
    class TwoEvents(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            first = step.wait_for_event("first", type="tick")
            second = step.wait_for_event("second", type="tick")
            return [first.payload, second.payload]

    harness.mock_event("tick", 1)
    harness.mock_event("tick", 2)

    assert harness.run(TwoEvents).output == [1, 2]


def test_workflows_reach_each_other_through_bindings(harness: WorkflowHarness) -> None:
    class Child(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("double", lambda: event.payload["n"] * 2)

    class Parent(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("spawn", lambda: self.env.CHILD.create(params={"n": 21}, id="kid").id)

    harness.register(Child, "child", binding="CHILD")

    parent = harness.run(Parent)
    child = harness.execute(parent.output)

    assert (parent.status, child.output) == ("complete", 42)


def test_step_context_and_params_reach_the_workflow(harness: WorkflowHarness) -> None:
    class Echo(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            def attempt(context: StepContext) -> Any:
                if context.attempt < 2:
                    raise RuntimeError("flaky")
                return {"params": event.payload["x"], "attempt": context.attempt}

            return step.do("echo", attempt, retries={"limit": 1, "delay": 1})

    harness.disable_sleeps()

    assert harness.run(Echo, params={"x": 7}).output == {"params": 7, "attempt": 2}


def test_modifiers_check_their_arguments(harness: WorkflowHarness) -> None:
    with pytest.raises(WorkflowInputError, match="set at top level is not JSON"):
        harness.mock_step_result("charge", {1, 2})
    with pytest.raises(WorkflowInputError, match="times"):
        harness.mock_step_error("charge", ValueError("x"), times=0)
    with pytest.raises(WorkflowInputError, match=r"^error"):
        harness.mock_step_error("charge", "not an exception")  # type: ignore[arg-type]
    with pytest.raises(WorkflowInputError, match=r"^event type"):
        harness.mock_event("")
    with pytest.raises(WorkflowInputError, match=r"^step name"):
        harness.force_step_timeout("x" * 300)


def test_registering_another_class_under_a_taken_name_is_refused(
    harness: WorkflowHarness,
) -> None:
    class Other(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return None

    assert harness.register(Order) == "Order"
    with pytest.raises(WorkflowInputError, match="already registered"):
        harness.register(Other, "Order")


def test_result_names_the_steps_it_has(harness: WorkflowHarness, counter: Counter) -> None:
    result: RunResult = harness.run(Order)

    with pytest.raises(KeyError, match="steps: 'charge', 'cool-off'"):
        result.step("refund")


def test_a_failed_step_reaches_the_workflow_as_step_failed_error(harness: WorkflowHarness) -> None:
    class Careful(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            try:
                step.do("risky", lambda: 1, retries={"limit": 0})
            except StepFailedError as error:
                return [error.error_name, error.attempts]
            return "unreachable"

    harness.mock_step_error("risky", KeyError("gone"))

    assert harness.run(Careful).output == ["KeyError", 1]


def test_wf_harness_fixture_keeps_journals_in_tmp_path(
    wf_harness: WorkflowHarness, tmp_path: Path, counter: Counter
) -> None:
    wf_harness.disable_sleeps()
    wf_harness.mock_event("approved", "yes")

    result = wf_harness.run(Order, instance_id="on-disk")

    assert isinstance(wf_harness.clock, FakeClock)
    assert result.status == "complete"
    journal = tmp_path / "wf-store" / "journals" / "on-disk.jsonl"
    assert journal.is_file()
    reader = WorkflowClient(FileStore(tmp_path / "wf-store"), {})
    assert reader.status("on-disk").output == result.output
