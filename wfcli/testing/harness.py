"""Test workflows in-process: :class:`WorkflowHarness` and :class:`FakeClock`.

The harness runs workflow classes with the same :class:`~wfcli.client.WorkflowClient`
and executor as ``wf``, against a store of its own (in memory unless given one)
and a :class:`FakeClock`, so time moves only when a test says so. Its modifiers
follow Cloudflare's Workflows test API (``introspectWorkflow`` in
``cloudflare:test``): ``disable_sleeps`` (``disableSleeps``), ``mock_step_result``
(``mockStepResult``), ``mock_step_error`` (``mockStepError``),
``force_step_timeout`` (``forceStepTimeout``), ``mock_event`` (``mockEvent``) and
``force_event_timeout`` (``forceEventTimeout``); they apply to every instance the
harness runs. ``advance`` travels in time and runs whatever became due.

With pytest, the ``wf_harness`` fixture gives a harness over a temporary
:class:`~wfcli.journal.FileStore`::

    def test_order(wf_harness):
        wf_harness.disable_sleeps()
        wf_harness.mock_step_result("charge", {"order_id": "o-1"})
        result = wf_harness.run(OrderWorkflow, params={"sku": "x"})
        assert result.status == "complete"
        assert result.step("charge").attempts == 1
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, NoReturn

from wfcli.client.client import WorkflowClient
from wfcli.core.clock import FakeClock
from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    ErrorInfo,
    Forked,
    JsonValue,
    Record,
    Restarted,
    check_json,
)
from wfcli.core.durations import Duration, parse_duration
from wfcli.core.ids import validate_event_type, validate_step_name
from wfcli.core.settings import Settings
from wfcli.core.state import StepState, WaitInfo
from wfcli.engine.callbacks import Callback
from wfcli.engine.workflow import WorkflowEntrypoint
from wfcli.errors import StepTimeoutError, WorkflowInputError
from wfcli.store.contract import JournalStore
from wfcli.store.memory import MemoryStore

__all__ = ["Attempt", "FakeClock", "RunResult", "WorkflowHarness"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a ``do`` step: when it started and, if it failed, why."""

    number: int
    started: datetime
    error: ErrorInfo | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """An instance as the harness left it: status, output or error, and its steps.

    ``steps`` maps step names to what the journal says about them (kind, status,
    attempts, output, error), in the order they ran; ``records`` is the journal.
    """

    instance_id: str
    status: str
    output: JsonValue
    error: ErrorInfo | None
    waiting: WaitInfo | None
    steps: dict[str, StepState]
    records: tuple[Record, ...]

    def step(self, name: str) -> StepState:
        """The named step; a ``KeyError`` lists the steps there are."""
        try:
            return self.steps[name]
        except KeyError:
            known = ", ".join(repr(step) for step in self.steps) or "none"
            raise KeyError(
                f"instance {self.instance_id!r} has no step {name!r} (steps: {known})"
            ) from None

    def attempts(self, name: str) -> list[Attempt]:
        """Every attempt of the ``do`` step ``name`` since the last restart, in order."""
        self.step(name)
        attempts: dict[int, Attempt] = {}
        for record in self.records:
            if isinstance(record, (Restarted, Forked)) and name not in record.kept_steps:
                attempts.clear()
            elif isinstance(record, AttemptStarted) and record.step == name:
                attempts[record.attempt] = Attempt(record.attempt, record.at)
            elif isinstance(record, AttemptFailed) and record.step == name:
                started = attempts[record.attempt].started
                attempts[record.attempt] = Attempt(
                    record.attempt, started, record.error, record.retry_at
                )
        return list(attempts.values())


def _raise(error: BaseException) -> Callback:
    def stand_in() -> NoReturn:
        raise error

    return stand_in


def _returns(value: JsonValue) -> Callback:
    return lambda: value


def _check_times(times: int | None) -> int | None:
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise WorkflowInputError(
            "times", f"expected a whole number from 1 up or None, got {times!r}"
        )
    return times


def _covers(times: int | None, attempt: int) -> bool:
    return times is None or attempt <= times


@dataclass
class _Modifiers:
    """The harness's :class:`~wfcli.step.StepInterceptor`: mocks and skipped waits."""

    clock: FakeClock
    sleeps_disabled: bool = False
    results: dict[str, JsonValue] = field(default_factory=dict)
    errors: dict[str, tuple[Exception, int | None]] = field(default_factory=dict)
    timeouts: dict[str, int | None] = field(default_factory=dict)
    event_timeouts: set[str] = field(default_factory=set)

    def stand_in(self, name: str, attempt: int, timeout: timedelta) -> Callback | None:
        if name in self.timeouts and _covers(self.timeouts[name], attempt):
            return _raise(StepTimeoutError(name, attempt, timeout.total_seconds()))
        if name in self.errors:
            error, times = self.errors[name]
            if _covers(times, attempt):
                return _raise(error)
        if name in self.results:
            return _returns(self.results[name])
        return None

    def end_wait(
        self, name: str, kind: Literal["sleep", "retry", "event"], until: datetime
    ) -> bool:
        if kind == "event":
            return name in self.event_timeouts
        if not self.sleeps_disabled:
            return False
        now = self.clock.now()
        if until > now:
            self.clock.advance(until - now)
        return True


class WorkflowHarness:
    """Runs workflows in this process with the real executor, a store and a fake clock.

    ``workflows`` maps names to classes (``run`` also takes a class and registers
    it under its class name); ``bindings`` maps binding names (``ORDER_FLOW``) to
    workflow names for ``self.env``; ``variables`` are the ``[vars]``. Every wait
    that no modifier ends suspends the instance (``status == "waiting"``) until
    :meth:`advance` or :meth:`send_event` lets it go on.
    """

    def __init__(
        self,
        workflows: Mapping[str, type[WorkflowEntrypoint]] | None = None,
        *,
        store: JournalStore | None = None,
        clock: FakeClock | None = None,
        settings: Settings | None = None,
        bindings: Mapping[str, str] | None = None,
        variables: Mapping[str, JsonValue] | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.client = WorkflowClient(
            store or MemoryStore(),
            workflows or {},
            bindings=bindings,
            variables=variables,
            clock=self.clock,
            settings=settings,
        )
        self._modifiers = _Modifiers(self.clock)
        self._events: list[tuple[str, JsonValue]] = []

    # workflows and instances ----------------------------------------------------------

    def register(
        self,
        workflow: type[WorkflowEntrypoint],
        name: str | None = None,
        *,
        binding: str | None = None,
    ) -> str:
        """Make ``workflow`` runnable as ``name`` (default: its class name); returns the name.

        With ``binding``, workflows reach it as ``self.env.<binding>``.
        """
        chosen = name or workflow.__name__
        known = self.client.workflows.get(chosen)
        if known is not None and known is not workflow:
            raise WorkflowInputError(
                "workflow name", f"{chosen!r} is already registered for {known.__qualname__}"
            )
        self.client.workflows[chosen] = workflow
        if binding is not None:
            self.client.bindings[binding] = chosen
        return chosen

    def run(
        self,
        workflow: type[WorkflowEntrypoint] | str,
        params: object = None,
        *,
        instance_id: str | None = None,
    ) -> RunResult:
        """Create an instance, deliver the mocked events to it, and execute it.

        Returns when it completes, errors or waits for what no modifier ends.
        """
        name = workflow if isinstance(workflow, str) else self.register(workflow)
        handle = self.client.create(name, params=params, instance_id=instance_id)
        for event_type, payload in self._events:
            self.client.send_event(handle.id, event_type, payload)
        return self.execute(handle.id)

    def execute(self, instance_id: str) -> RunResult:
        """Execute the instance until it completes, errors or must wait."""
        self.client.execute(instance_id, max_inline_wait=timedelta(0), interceptor=self._modifiers)
        return self.result(instance_id)

    def send_event(
        self, instance_id: str, type: str, payload: object = None, *, sensitive: bool = False
    ) -> RunResult:
        """Deliver an event to the instance and execute it if it is not finished
        (``sensitive``: views show its payload as ``"[REDACTED]"``)."""
        status = self.client.send_event(instance_id, type, payload, sensitive=sensitive)
        if status.finished:
            return self.result(instance_id)
        return self.execute(instance_id)

    def advance(self, duration: Duration) -> list[RunResult]:
        """Move the clock forward and execute every instance that is now due.

        Returns the results of the instances it executed, oldest first.
        """
        self.clock.advance(parse_duration(duration, "advance"))
        return [self.execute(instance_id) for instance_id in self.client.due()]

    def result(self, instance_id: str) -> RunResult:
        """The instance as its journal says now."""
        status = self.client.status(instance_id)
        return RunResult(
            instance_id=status.id,
            status=status.status,
            output=status.output,
            error=status.error,
            waiting=status.waiting,
            steps={step.name: step for step in status.steps},
            records=tuple(self.client.history(instance_id)),
        )

    # modifiers (Cloudflare's introspection API) ----------------------------------------

    def disable_sleeps(self) -> None:
        """Sleeps and retry delays end at once; the clock jumps to their end."""
        self._modifiers.sleeps_disabled = True

    def mock_step_result(self, name: str, value: object) -> None:
        """The ``do`` step ``name`` returns ``value`` without calling its callback."""
        checked = validate_step_name(name)
        encoded = check_json(value, f"mocked result of step {checked!r}")
        self._modifiers.results[checked] = json.loads(encoded)

    def mock_step_error(self, name: str, error: Exception, times: int | None = None) -> None:
        """The first ``times`` attempts (every attempt when None) of ``name`` raise ``error``.

        Attempts are counted by the step's own attempt numbers, so retries and
        ``NonRetryableError`` behave as with a real failure.
        """
        if not isinstance(error, Exception):
            raise WorkflowInputError("error", f"expected an exception, got {type(error).__name__}")
        self._modifiers.errors[validate_step_name(name)] = (error, _check_times(times))

    def force_step_timeout(self, name: str, times: int | None = None) -> None:
        """The first ``times`` attempts (every attempt when None) of ``name`` time out."""
        self._modifiers.timeouts[validate_step_name(name)] = _check_times(times)

    def mock_event(self, type: str, payload: object = None) -> None:
        """Deliver this event to every instance the harness starts from now on.

        It is buffered until a ``wait_for_event`` of its type takes it.
        """
        checked = validate_event_type(type)
        self._events.append((checked, json.loads(check_json(payload, "mocked event payload"))))

    def force_event_timeout(self, name: str) -> None:
        """The ``wait_for_event`` step ``name`` times out at once, unless an event of
        its type is already there."""
        self._modifiers.event_timeouts.add(validate_step_name(name))
