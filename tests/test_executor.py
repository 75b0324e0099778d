"""The step engine in one process: replay, values, names, sleeps, events and parallel steps."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.workflows_for_tests import Effects, assert_journal_sane, journal_path
from wfcli import (
    FakeClock,
    FileStore,
    InstanceHandle,
    NonRetryableError,
    Settings,
    StepContext,
    StepFailedError,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
    WorkflowTimeoutError,
)
from wfcli.core.codec import (
    AttemptStarted,
    ErrorInfo,
    Paused,
    Record,
    RunStarted,
    StepCompleted,
    StepFailed,
    Suspended,
    WaitStarted,
    Warned,
    format_time,
)
from wfcli.engine.step import NullObserver

HOUR = timedelta(hours=1)


def start(
    store_dir: Path,
    clock: FakeClock,
    workflow: type[WorkflowEntrypoint],
    params: object = None,
    settings: Settings | None = None,
) -> InstanceHandle:
    """Create an instance of ``workflow`` in a file store, on a fake clock."""
    client = WorkflowClient(
        FileStore(store_dir, durable=False), {"wf": workflow}, clock=clock, settings=settings
    )
    return client.create("wf", params=params)


def of_type(records: list[Record], wanted: type[Record]) -> list[Any]:
    return [record for record in records if isinstance(record, wanted)]


# --- replay ----------------------------------------------------------------------------------


class AcrossASleep(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        first = step.do("first", lambda: effects.call("first", {"items": [1, 2]}))
        step.sleep("pause", "1 hour")
        return step.do("second", lambda: effects.call("second", first["items"] + [3]))


def test_completed_steps_never_run_again(
    store_dir: Path, clock: FakeClock, effects: Effects
) -> None:
    handle = start(store_dir, clock, AcrossASleep, {"dir": str(effects.folder)})

    assert handle.execute().status == "waiting"
    clock.advance(2 * HOUR)
    done = handle.execute()
    again = handle.execute()

    assert done.output == again.output == [1, 2, 3]
    assert (effects.count("first"), effects.count("second")) == (1, 1)
    assert len(of_type(handle.client.history(handle.id), AttemptStarted)) == 2


class ReportsValueTypes(WorkflowEntrypoint):
    seen: ClassVar[list[tuple[str, Any]]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        pair = step.do("pair", lambda: (1, "two"))
        record = step.do("record", lambda: {"tags": ("x", "y")})
        record["tags"].append("changed by the workflow")
        self.seen.append((type(pair).__name__, pair))
        step.sleep("pause", "1 hour")
        return record


def test_results_are_json_copies_so_a_tuple_is_a_list_on_first_run_and_replay(
    store_dir: Path, clock: FakeClock
) -> None:
    ReportsValueTypes.seen = []
    handle = start(store_dir, clock, ReportsValueTypes)

    handle.execute()
    clock.advance(2 * HOUR)
    final = handle.execute()

    assert ReportsValueTypes.seen == [("list", [1, "two"]), ("list", [1, "two"])]
    assert final.output == {"tags": ["x", "y", "changed by the workflow"]}
    assert final.state.steps["record"].output == {"tags": ["x", "y"]}


class Colour(IntEnum):
    RED = 1


class Text(str):
    pass


ODD_SCALARS: list[Any] = [Colour.RED, Text("é"), True, -0.0, 1e16, 2**70, None, 1.5, "plain"]


class ReturnsOddScalars(WorkflowEntrypoint):
    seen: ClassVar[list[list[tuple[str, str]]]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        values = [
            step.do(f"v{i}", lambda value=value: value) for i, value in enumerate(ODD_SCALARS)
        ]
        self.seen.append([(type(value).__name__, repr(value)) for value in values])
        step.sleep("pause", "1 hour")


def test_a_scalar_result_of_a_subclass_comes_back_as_its_json_copy_on_first_run_and_replay(
    store_dir: Path, clock: FakeClock
) -> None:
    ReturnsOddScalars.seen = []
    handle = start(store_dir, clock, ReturnsOddScalars)

    handle.execute()
    clock.advance(2 * HOUR)
    handle.execute()

    copies = [json.loads(json.dumps(value)) for value in ODD_SCALARS]
    expected = [(type(copy).__name__, repr(copy)) for copy in copies]
    assert expected[:2] == [("int", "1"), ("str", "'é'")]
    assert ReturnsOddScalars.seen == [expected, expected]


class PausedWhileReplaying(WorkflowEntrypoint):
    """Twenty steps, then ``last``; ``during_replay`` is called after the tenth."""

    during_replay: ClassVar[Callable[[], object] | None] = None

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        for index in range(20):
            step.do(f"step-{index}", lambda index=index: effects.call(f"step-{index}", index))
            if index == 9 and PausedWhileReplaying.during_replay is not None:
                PausedWhileReplaying.during_replay()
        return step.do("last", lambda: effects.call("last", "done"))


def test_a_pause_posted_during_a_long_replay_is_applied_before_the_next_step_runs(
    store_dir: Path, clock: FakeClock, effects: Effects
) -> None:
    handle = start(store_dir, clock, PausedWhileReplaying, {"dir": str(effects.folder)})
    # The first run stops just before "last", as a worker that is shutting down does.
    handle.execute(cancel=lambda: effects.count("step-19") == 1)
    sender = WorkflowClient(
        FileStore(store_dir, durable=False), {"wf": PausedWhileReplaying}, clock=clock
    )
    PausedWhileReplaying.during_replay = lambda: sender.pause(handle.id)
    try:
        paused = handle.execute()  # replays 20 steps; the pause is posted after the tenth
    finally:
        PausedWhileReplaying.during_replay = None

    assert paused.status == "paused"
    assert effects.count("last") == 0
    assert [effects.count(f"step-{index}") for index in range(20)] == [1] * 20
    history = handle.client.history(handle.id)
    second_run = max(i for i, record in enumerate(history) if isinstance(record, RunStarted))
    assert [type(record) for record in history[second_run + 1 :]] == [Paused]

    handle.resume()
    assert handle.execute().output == "done"
    assert effects.count("last") == 1


class UsesContext(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def attempt_twice(context: StepContext) -> list[object]:
            if context.attempt == 1:
                raise RuntimeError("first attempt fails")
            return [context.attempt, context.name, context.count]

        return step.do("ctx", attempt_twice, retries={"limit": 1, "delay": 0})


def test_a_callback_taking_one_argument_gets_the_step_context(
    store_dir: Path, clock: FakeClock
) -> None:
    assert start(store_dir, clock, UsesContext).execute().output == [2, "ctx", 1]


class RepeatsAName(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        first = step.do("same", lambda: effects.call("same", "first"))
        second = step.do("same", lambda: effects.call("same", "second"))
        third = step.do("same", lambda: effects.call("same", "third"))
        return [first, second, third]


def test_a_repeated_step_name_returns_the_first_result_and_warns_once(
    store_dir: Path, clock: FakeClock, effects: Effects
) -> None:
    final = start(store_dir, clock, RepeatsAName, {"dir": str(effects.folder)}).execute()

    assert final.output == ["first", "first", "first"]
    assert effects.count("same") == 1
    (warning,) = final.state.warnings
    assert warning.step == "same"
    assert "more than once" in warning.message


class ReusesASleepName(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.sleep("nap", 0)
        try:
            step.do("nap", lambda: "never")
        except ValueError as error:
            return str(error)
        return "accepted"


def test_a_name_used_by_a_step_of_another_kind_is_refused(
    store_dir: Path, clock: FakeClock
) -> None:
    final = start(store_dir, clock, ReusesASleepName).execute()
    assert final.output == "step name: 'nap' is already used by a 'sleep' step"


BAD_NAMES = ["", "x" * 257, "new\nline", "nul\x00", "tab\t", "del\x7f", "c1\x85", "file-\udcff"]


class TriesBadNames(WorkflowEntrypoint):
    """Tries the bad name ``BAD_NAMES[params]`` everywhere a name goes (not all are JSON)."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        name = BAD_NAMES[event.payload]
        attempts = {
            "do": lambda: step.do(name, lambda: "never"),
            "sleep": lambda: step.sleep(name, 0),
            "sleep_until": lambda: step.sleep_until(name, 0),
            "wait_for_event": lambda: step.wait_for_event(name, type="t"),
            "event type": lambda: step.wait_for_event("ok", type=name),
            "parallel": lambda: step.parallel({"ok": lambda: 1, name: lambda: 2}),
        }
        refusals = {}
        for call, attempt in attempts.items():
            try:
                attempt()
            except ValueError as error:
                refusals[call] = str(error)
        return refusals


@pytest.mark.parametrize("bad_name", BAD_NAMES, ids=repr)
def test_a_bad_step_name_is_a_value_error_before_anything_is_journaled(
    store_dir: Path, clock: FakeClock, bad_name: str
) -> None:
    final = start(store_dir, clock, TriesBadNames, BAD_NAMES.index(bad_name)).execute()

    refusals = final.output
    assert isinstance(refusals, dict)
    assert sorted(refusals) == sorted(
        ["do", "sleep", "sleep_until", "wait_for_event", "event type", "parallel"]
    )
    assert all(("step name" in m or "event type" in m) for m in refusals.values()), refusals
    assert final.status == "complete"
    assert final.state.steps == {}
    assert final.state.warnings == []


def test_a_name_of_256_characters_is_accepted(store_dir: Path, clock: FakeClock) -> None:
    class LongName(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.do("n" * 256, lambda: "fine")

    assert start(store_dir, clock, LongName).execute().output == "fine"


class NestsSteps(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return step.do("outer", lambda: step.do("inner", lambda: 1), retries={"limit": 3})


def test_a_step_cannot_be_started_inside_a_step_callback(store_dir: Path, clock: FakeClock) -> None:
    final = start(store_dir, clock, NestsSteps).execute()

    assert final.status == "errored"
    assert final.error is not None
    assert final.error.name == "WorkflowInputError"
    assert "cannot be started inside a step callback" in final.error.message
    assert final.state.steps["outer"].attempts == 1
    assert "inner" not in final.state.steps


# --- values ----------------------------------------------------------------------------------


class ReturnsParam(WorkflowEntrypoint):
    """Step ``produce`` returns the class attribute ``value``; a failure is returned as data."""

    value: object = None

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            step.do("produce", lambda: type(self).value, retries={"limit": 3, "delay": 0})
        except StepFailedError as error:
            return {"name": error.error_name, "message": str(error), "attempts": error.attempts}
        return "accepted"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (datetime(2030, 1, 1, tzinfo=timezone.utc), "datetime at top level"),
        ({1, 2}, "set at top level"),
        (b"bytes", "bytes at top level"),
        (object(), "object at top level"),
        (float("nan"), "nan at top level is not a JSON number"),
        ([1.0, float("inf")], "inf at [1] is not a JSON number"),
        ({1: "one"}, "key 1 at top level is a int"),
        ({"ok": [1, {"deep": frozenset()}]}, "frozenset at ok[1].deep"),
        (["file-\udcff.txt"], "text at [0] contains '\\udcff', an unpaired surrogate"),
        (10**5000, "an integer has too many digits"),
    ],
    ids=[
        "datetime",
        "set",
        "bytes",
        "object",
        "nan",
        "inf",
        "int-key",
        "nested",
        "surrogate",
        "huge",
    ],
)
def test_a_non_json_result_fails_the_step_without_retry_naming_step_and_type(
    store_dir: Path, clock: FakeClock, value: object, named: str
) -> None:
    class Produces(ReturnsParam):
        pass

    Produces.value = value
    final = start(store_dir, clock, Produces).execute()

    failure = final.output
    assert isinstance(failure, dict)
    assert failure["name"] == "WorkflowInputError"
    assert failure["attempts"] == 1
    assert "step 'produce' result" in failure["message"]
    assert named in failure["message"]
    assert final.state.steps["produce"].attempts == 1


def test_an_oversized_result_fails_the_step_without_retry_naming_its_size(
    store_dir: Path, clock: FakeClock
) -> None:
    class TooBig(ReturnsParam):
        value = "x" * 2000

    handle = start(store_dir, clock, TooBig, settings=Settings(max_value_bytes=1000))
    failure = handle.execute().output

    assert isinstance(failure, dict)
    assert (failure["name"], failure["attempts"]) == ("ValueTooLargeError", 1)
    assert "2002 bytes as JSON, over the limit of 1000 bytes" in failure["message"]
    assert len(of_type(handle.client.history(handle.id), AttemptStarted)) == 1


class ChecksPayload(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        refused = []
        items = event.payload["items"]
        for change in (
            lambda: event.payload.__setitem__("x", 1),
            lambda: event.payload.pop("items"),
            lambda: event.payload.update(x=1),
            lambda: event.payload["nested"].pop("k"),
            lambda: items.append(4),
            lambda: items.__setitem__(0, 9),
            items.sort,
            lambda: items.__iadd__([4]),
            event.payload["nested"]["deep"].pop,
        ):
            try:
                change()
            except TypeError as error:
                refused.append(str(error))
        return {
            "refused": refused,
            "payload": event.payload,
            "is_list": isinstance(items, list),
            "copy": [*items, 4],
        }


def test_event_payload_is_read_only_and_its_lists_are_lists(
    store_dir: Path, clock: FakeClock
) -> None:
    params = {"items": [1, 2, 3], "nested": {"k": "v", "deep": [[1], {"a": 2}]}}
    final = start(store_dir, clock, ChecksPayload, params).execute()

    assert final.output == {
        "refused": ["event.payload is read-only; copy it to change it"] * 9,
        "payload": params,
        "is_list": True,
        "copy": [1, 2, 3, 4],
    }
    assert final.state.params == params


class ReturnsPayload(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return {"payload": event.payload, "get": event.payload.get("missing", "default")}


def test_no_params_means_an_empty_payload(store_dir: Path, clock: FakeClock) -> None:
    handle = start(store_dir, clock, ReturnsPayload)
    assert handle.status().state.params == {}
    assert handle.execute().output == {"payload": {}, "get": "default"}


class ReturnsASet(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return {"ids": {1, 2}}


def test_a_non_json_output_errors_the_instance(store_dir: Path, clock: FakeClock) -> None:
    final = start(store_dir, clock, ReturnsASet).execute()

    assert final.status == "errored"
    assert final.error is not None
    assert final.error.message == "workflow output: set at ids is not JSON-serialisable"


class Raises(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise LookupError("no such order: 17")


def test_an_exception_from_run_errors_the_instance_with_its_name_and_message(
    store_dir: Path, clock: FakeClock
) -> None:
    final = start(store_dir, clock, Raises).execute()

    assert final.status == "errored"
    error = final.to_json()["error"]
    assert isinstance(error, dict)
    assert (error["name"], error["message"]) == ("LookupError", "no such order: 17")
    assert isinstance(error["traceback"], str)
    assert error["traceback"].endswith('raise LookupError("no such order: 17")')
    assert "test_executor.py" in error["traceback"]
    assert "wfcli" + os.sep not in error["traceback"]  # the engine's frames are left out


# --- sleeps -----------------------------------------------------------------------------------


class Naps(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.sleep("nap", event.payload)
        return "awake"


def test_a_short_sleep_is_slept_through_inline(store_dir: Path, clock: FakeClock) -> None:
    began = clock.now()
    final = start(store_dir, clock, Naps, 10).execute()

    assert (final.status, final.output) == ("complete", "awake")
    assert final.state.steps["nap"].until == began + timedelta(seconds=10)
    assert clock.now() >= began + timedelta(seconds=10)
    assert not of_type(FileStore(store_dir).read(final.id), Suspended)


def test_a_long_sleep_suspends_and_its_wake_time_is_never_recomputed(
    store_dir: Path, clock: FakeClock
) -> None:
    began = clock.now()
    handle = start(store_dir, clock, Naps, "1 hour")

    first = handle.execute()
    clock.advance(timedelta(minutes=30))
    early = handle.execute()
    clock.advance(timedelta(minutes=31))
    final = handle.execute()

    assert (first.status, early.status, final.status) == ("waiting", "waiting", "complete")
    assert first.waiting is not None
    assert early.waiting is not None
    assert first.waiting.until == early.waiting.until == began + HOUR
    records = handle.client.history(handle.id)
    assert [r.until for r in of_type(records, WaitStarted)] == [began + HOUR]
    assert [r.until for r in of_type(records, Suspended)] == [began + HOUR, began + HOUR]
    (woke,) = of_type(records, StepCompleted)
    assert woke.at >= began + HOUR


def test_max_inline_wait_decides_between_sleeping_and_suspending(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, Naps, "1 hour")
    assert handle.execute(max_inline_wait=timedelta(minutes=59)).status == "waiting"
    assert handle.execute(max_inline_wait=timedelta(hours=1)).status == "complete"


def test_the_wake_time_is_journaled_before_the_wait_begins(
    store_dir: Path, clock: FakeClock
) -> None:
    journaled_when_waiting: list[list[datetime]] = []
    store = FileStore(store_dir)

    class Watches(NullObserver):
        def waiting(self, name: str, kind: str, until: datetime) -> None:
            records = store.read(handle.id)
            journaled_when_waiting.append([r.until for r in of_type(records, WaitStarted)])

    began = clock.now()
    handle = start(store_dir, clock, Naps, 20)
    handle.execute(observer=Watches())

    assert journaled_when_waiting == [[began + timedelta(seconds=20)]]


class NapsUntil(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        when = event.payload
        step.sleep_until("alarm", datetime.fromisoformat(when) if isinstance(when, str) else when)
        return "rang"


@pytest.mark.parametrize("offset", [timedelta(hours=-1), timedelta(0)], ids=["past", "now"])
def test_sleep_until_a_time_already_passed_returns_at_once(
    store_dir: Path, clock: FakeClock, offset: timedelta
) -> None:
    final = start(store_dir, clock, NapsUntil, (clock.now() + offset).isoformat()).execute()
    assert (final.status, final.output) == ("complete", "rang")


@pytest.mark.parametrize("as_epoch", [False, True], ids=["datetime", "epoch-seconds"])
def test_sleep_until_a_later_time_waits_for_exactly_that_time(
    store_dir: Path, clock: FakeClock, as_epoch: bool
) -> None:
    alarm = clock.now() + timedelta(days=2)
    when: object = alarm.timestamp() if as_epoch else alarm.isoformat()
    handle = start(store_dir, clock, NapsUntil, when)

    waiting = handle.execute()
    clock.advance(timedelta(days=2))

    assert waiting.waiting is not None
    assert waiting.waiting.until == alarm
    assert handle.execute().output == "rang"


def test_sleep_until_a_naive_datetime_is_refused(store_dir: Path, clock: FakeClock) -> None:
    final = start(store_dir, clock, NapsUntil, "2030-01-02T00:00:00").execute()

    assert final.status == "errored"
    assert final.error is not None
    assert "timezone-aware" in final.error.message
    assert final.state.steps == {}


# --- events -----------------------------------------------------------------------------------


class TakesEvents(WorkflowEntrypoint):
    """Waits for events of the types in the params, in that order."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        taken = []
        for index, event_type in enumerate(event.payload):
            received = step.wait_for_event(f"wait-{index}", type=event_type, timeout="1 day")
            taken.append([received.type, received.payload, format_time(received.timestamp)])
        return taken


def test_events_sent_before_the_wait_are_buffered_per_type_first_in_first_out(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, TakesEvents, ["t", "t", "u", "t", "u"])
    for event_type, payload in [("u", "u1"), ("t", "t1"), ("t", "t2"), ("u", "u2"), ("t", "t3")]:
        handle.send_event(event_type, payload)
        clock.advance(timedelta(seconds=1))

    final = handle.execute()

    assert final.status == "complete"
    assert [(kind, payload) for kind, payload, _ in final.output] == [
        ("t", "t1"),
        ("t", "t2"),
        ("u", "u1"),
        ("t", "t3"),
        ("u", "u2"),
    ]


def test_an_event_sent_while_suspended_wakes_the_instance_and_replays_identically(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, TakesEvents, ["approve", "ship"])

    first = handle.execute()
    assert first.waiting is not None
    assert (first.waiting.kind, first.waiting.event_type) == ("event", "approve")
    handle.send_event("approve", {"by": "ops"})
    assert handle.client.due() == [handle.id]
    second = handle.execute()
    handle.send_event("ship", [1, 2])
    final = handle.execute()

    assert second.waiting is not None
    assert second.waiting.event_type == "ship"
    approve, ship = final.output
    assert approve[:2] == ["approve", {"by": "ops"}]
    assert ship[:2] == ["ship", [1, 2]]
    assert approve[2] == second.state.steps["wait-0"].output["timestamp"]  # type: ignore[index]


class CatchesTimeout(WorkflowEntrypoint):
    caught: ClassVar[list[str]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            step.wait_for_event("approval", type="approve", timeout=event.payload)
        except WorkflowTimeoutError as error:
            self.caught.append(str(error))
        step.sleep("cool-off", "1 hour")
        return "gave up waiting"


@pytest.mark.parametrize("timeout", ["10 seconds", "2 hours"], ids=["inline", "suspended"])
def test_an_event_timeout_raises_workflow_timeout_error_that_run_can_catch(
    store_dir: Path, clock: FakeClock, timeout: str
) -> None:
    CatchesTimeout.caught = []
    handle = start(store_dir, clock, CatchesTimeout, timeout)

    handle.execute()
    clock.advance(timedelta(hours=3))
    handle.execute()
    clock.advance(timedelta(hours=2))
    final = handle.execute()

    assert final.output == "gave up waiting"
    message = "step 'approval' timed out waiting for an event of type 'approve'"
    assert CatchesTimeout.caught[0] == message
    assert set(CatchesTimeout.caught) == {message}  # replays raise it again, identically
    assert len(CatchesTimeout.caught) >= 2
    (failed,) = of_type(handle.client.history(handle.id), StepFailed)
    assert (failed.kind, failed.error.name) == ("event", "WorkflowTimeoutError")


def test_an_uncaught_event_timeout_errors_the_instance(store_dir: Path, clock: FakeClock) -> None:
    handle = start(store_dir, clock, TakesEvents, ["never"])
    handle.execute()
    clock.advance(timedelta(days=1, seconds=1))

    final = handle.execute()

    assert final.status == "errored"
    assert final.error == ErrorInfo(
        "WorkflowTimeoutError",
        "step 'wait-0' timed out waiting for an event of type 'never'",
    )


class SecondChance(WorkflowEntrypoint):
    """Waits an hour for a 'go' event; if that times out, waits a day for one."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            return ["first", step.wait_for_event("first", type="go", timeout="1 hour").payload]
        except WorkflowTimeoutError:
            return ["second", step.wait_for_event("second", type="go", timeout="1 day").payload]


def test_an_event_received_after_the_deadline_is_late_even_if_no_run_saw_the_deadline(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, SecondChance)
    assert handle.execute().status == "waiting"
    clock.advance(2 * HOUR)
    handle.send_event("go", "late")  # applied at once (nobody runs it), two hours in

    final = handle.execute()

    assert final.output == ["second", "late"]  # the first wait timed out; the event stayed buffered
    assert final.state.steps["first"].status == "failed"


class ShoutsAtLength(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def shout() -> None:
            raise NonRetryableError("head-" + "x" * 200_000 + "-tail")

        step.do("shout", shout)


def test_a_huge_error_message_keeps_its_start_and_end_and_the_journal_stays_readable(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, ShoutsAtLength)

    final = handle.execute()

    assert final.status == "errored"
    assert final.error is not None
    message = final.error.message
    assert message.startswith("head-xxx")
    assert message.endswith("xxx-tail")
    assert "characters cut" in message
    assert len(message) < 70_000
    assert handle.client.status(handle.id).error == final.error  # re-read from the journal


def test_an_event_arriving_after_a_sent_one_of_another_type_waits_its_turn(
    store_dir: Path, clock: FakeClock
) -> None:
    handle = start(store_dir, clock, TakesEvents, ["wanted"])
    handle.send_event("other", 1)

    waiting = handle.execute()

    assert waiting.status == "waiting"
    assert [e.event_type for e in waiting.state.buffered_events("other")] == ["other"]


# --- parallel steps --------------------------------------------------------------------------


class Parallel(WorkflowEntrypoint):
    """Parallel branches named in the params, then (optionally) a long nap."""

    fail_first_attempt: ClassVar[set[str]] = set()
    fail_for_good: ClassVar[set[str]] = set()
    outcomes: ClassVar[list[Any]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        names = event.payload["names"]
        # Branches that meet at a barrier prove they run at the same time.
        barrier = threading.Barrier(len(names), timeout=10)
        cls = type(self)

        def branch(name: str) -> Any:
            def call(context: StepContext) -> Any:
                effects.call(name, None)
                if event.payload.get("together"):
                    barrier.wait()
                if name in cls.fail_for_good:
                    raise RuntimeError(f"{name} is broken")
                if name in cls.fail_first_attempt and context.attempt == 1:
                    raise RuntimeError(f"{name} stumbled")
                return name.upper()

            return call

        try:
            outcome = {
                "results": step.parallel(
                    {name: branch(name) for name in names},
                    retries={"limit": 2, "delay": "1 hour", "backoff": "constant"},
                )
            }
        except StepFailedError as error:
            outcome = {"failed": [error.step, error.error_message, error.attempts]}
        cls.outcomes.append(outcome)
        if event.payload.get("nap"):
            step.sleep("nap", "2 days")
        return outcome


@pytest.fixture
def parallel_flags() -> Any:
    Parallel.fail_first_attempt = set()
    Parallel.fail_for_good = set()
    Parallel.outcomes = []
    return Parallel


def test_parallel_steps_run_together_and_return_results_in_input_order(
    store_dir: Path, clock: FakeClock, effects: Effects, parallel_flags: Any
) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    params = {"dir": str(effects.folder), "names": names, "together": True}

    final = start(store_dir, clock, Parallel, params).execute()

    assert final.output == {"results": ["ZETA", "ALPHA", "MID", "BETA"]}
    completed = of_type(FileStore(store_dir).read(final.id), StepCompleted)
    assert sorted(r.step for r in completed) == sorted(names)
    assert [effects.count(name) for name in names] == [1, 1, 1, 1]


def test_on_replay_only_the_unfinished_parallel_steps_run(
    store_dir: Path, clock: FakeClock, effects: Effects, parallel_flags: Any
) -> None:
    parallel_flags.fail_first_attempt = {"b"}
    handle = start(store_dir, clock, Parallel, {"dir": str(effects.folder), "names": list("abc")})

    waiting = handle.execute()
    clock.advance(2 * HOUR)
    final = handle.execute()

    assert waiting.waiting is not None
    assert (waiting.waiting.kind, waiting.waiting.step) == ("retry", "b")
    assert final.output == {"results": ["A", "B", "C"]}
    assert [effects.count(name) for name in "abc"] == [1, 2, 1]
    assert_journal_sane(journal_path(store_dir, handle.id))


def test_a_parallel_step_that_fails_for_good_raises_the_same_failure_on_replay(
    store_dir: Path, clock: FakeClock, effects: Effects, parallel_flags: Any
) -> None:
    parallel_flags.fail_for_good = {"b", "c"}
    params = {"dir": str(effects.folder), "names": list("abcd"), "nap": True}
    handle = start(store_dir, clock, Parallel, params)

    handle.execute(max_inline_wait=timedelta(days=1))
    clock.advance(timedelta(days=3))
    final = handle.execute()

    failure = {"failed": ["b", "b is broken", 3]}  # the first failure in input order
    assert parallel_flags.outcomes == [failure, failure]
    assert final.output == failure
    assert [effects.count(name) for name in "abcd"] == [1, 3, 3, 1]
    failed = of_type(handle.client.history(handle.id), StepFailed)
    assert sorted(r.step for r in failed) == ["b", "c"]


class GivesParallelANonCallable(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        try:
            step.parallel({"fine": lambda: effects.call("fine", 1), "broken": 5})
        except ValueError as error:
            return str(error)
        return "accepted"


def test_a_non_callable_parallel_step_is_refused_before_anything_runs(
    store_dir: Path, clock: FakeClock, effects: Effects
) -> None:
    final = start(store_dir, clock, GivesParallelANonCallable, {"dir": str(effects.folder)})
    done = final.execute()

    assert done.output == "callback: int given for step 'broken' is not callable"
    assert done.state.steps == {}
    assert effects.count("fine") == 0


def test_journal_written_by_parallel_steps_has_no_interleaved_lines(
    store_dir: Path, clock: FakeClock, effects: Effects, parallel_flags: Any
) -> None:
    class Wide(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return step.parallel(
                {f"branch-{i}": (lambda i=i: f"{i:02d}" * 20_000) for i in range(16)}
            )

    handle = start(store_dir, clock, Wide)
    final = handle.execute()

    assert final.output == [f"{i:02d}" * 20_000 for i in range(16)]
    records = assert_journal_sane(journal_path(store_dir, handle.id))
    assert len(of_type(records, StepCompleted)) == 16
    assert not of_type(records, Warned)
