"""``WorkflowStep``: replay a step from the journal, or run it and record it.

``WorkflowStep`` checks a workflow's calls and hands each step to a
:class:`StepSource`, which decides what happens: :class:`StepRun`, the live
engine, serves settled steps and runs and journals the rest; ``wf replay``'s
source serves steps from the history or halts, and cannot write.

The rules (SPEC §2): a step whose result is journaled returns that result and its
callback is not called; a step that failed for good re-raises the journaled
failure; otherwise the step runs from the first attempt with no outcome. Wake
times and deadlines are journaled as absolute times before any wait. Waits
longer than the inline limit end the run with :class:`Suspend`, a
``BaseException`` so that a workflow's ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NoReturn, Protocol

from wfcli.core.clock import Clock
from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    Diverged,
    ErrorInfo,
    InboxMessage,
    JsonValue,
    PatchMarked,
    Record,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepKind,
    WaitStarted,
    Warned,
    check_json,
    format_time,
    parse_time,
)
from wfcli.core.durations import Duration, parse_duration
from wfcli.core.ids import validate_event_type, validate_instance_id, validate_step_name
from wfcli.core.retry import RetryPolicy, next_attempt_at
from wfcli.core.settings import Settings
from wfcli.core.state import (
    BufferedEvent,
    InstanceState,
    StepState,
    WaitInfo,
    records_for_message,
)
from wfcli.engine.callbacks import (
    AttemptTimedOut,
    Callback,
    CallbackRaised,
    CallbackRunner,
    InlineRunner,
    in_step_callback,
    wants_context,
)
from wfcli.engine.history import HistoryMatcher
from wfcli.engine.rollback import Rollback
from wfcli.engine.signals import (
    Abandoned,
    Cancelled,
    DeadlinePassed,
    RegistrationDone,
    Restart,
    RollingBack,
    Stop,
    StoreFailed,
    StoreFailure,
    Suspend,
)
from wfcli.engine.workflow import ReceivedEvent, StepConfig, StepContext
from wfcli.errors import (
    AttemptLostError,
    JournalCorruptError,
    LeaseLostError,
    NonRetryableError,
    StepFailedError,
    StepTimeoutError,
    StoreFaultError,
    WorkflowInputError,
    WorkflowTimeoutError,
)
from wfcli.store.contract import Lease

__all__ = [
    "CHILD_POLL",
    "SETTLED",
    "Callback",
    "Instances",
    "RunObserver",
    "StepInterceptor",
    "StepRun",
    "StepSource",
    "WorkflowStep",
    "check_step_kind",
    "copy_json",
    "served",
    "step_failure",
]


class RunObserver(Protocol):
    """Hooks for live views of a run (the CLI's progress display, tests)."""

    def step_started(self, name: str, kind: StepKind, attempt: int) -> None: ...

    def step_finished(self, name: str, kind: StepKind, ok: bool, replayed: bool) -> None: ...

    def attempt_failed(
        self,
        name: str,
        attempt: int,
        error: ErrorInfo,
        retry_at: datetime | None,
        *,
        retryable: bool,
    ) -> None:
        """An attempt failed: retried at ``retry_at``, else the step failed, because its
        retries ran out (``retryable``) or the error is never retried."""

    def waiting(self, name: str, kind: str, until: datetime) -> None: ...


class StepInterceptor(Protocol):
    """Test hooks (:mod:`wfcli.testing`), consulted before each attempt and each wait."""

    def stand_in(self, name: str, attempt: int, timeout: timedelta) -> Callback | None:
        """A no-argument callable to run instead of this attempt's callback, or None."""

    def end_wait(
        self, name: str, kind: Literal["sleep", "retry", "event"], until: datetime
    ) -> bool:
        """True to end this wait now (a fake clock may be moved to ``until`` first)."""


class NullObserver:
    """An observer that ignores everything."""

    def step_started(self, name: str, kind: StepKind, attempt: int) -> None:
        pass

    def step_finished(self, name: str, kind: StepKind, ok: bool, replayed: bool) -> None:
        pass

    def attempt_failed(
        self,
        name: str,
        attempt: int,
        error: ErrorInfo,
        retry_at: datetime | None,
        *,
        retryable: bool,
    ) -> None:
        pass

    def waiting(self, name: str, kind: str, until: datetime) -> None:
        pass


class Instances(Protocol):
    """What a run needs of other instances of its store (children it waits for)."""

    def state(self, instance_id: str) -> InstanceState | None:
        """The instance's state, None if there is no such instance."""

    def run(self, instance_id: str) -> None:
        """Execute the instance here if it is due and nobody else does."""

    def wake(self, instance_id: str) -> None:
        """Make the instance due (it waits for one that just finished)."""


CHILD_POLL = timedelta(minutes=1)
"""How often a parent waiting for an instance looks at it when nothing wakes it sooner
(a finished child wakes the parent that created it through its inbox)."""

# A step whose journal says "completed" or "failed" is replayed, not run.
SETTLED = ("completed", "failed")
_NO_TIME = timedelta(0)
_TIMED_OUT = WorkflowTimeoutError.__name__


def copy_json(value: JsonValue) -> Any:
    """A fresh copy of a JSON value (what a step hands back is never the journal's)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


_SELF_COPYING = (str, int, float, bool, type(None))


def _decoded_copy(value: object, encoded: str) -> Any:
    """A fresh JSON-decoded copy of ``value``, whose JSON is ``encoded``.

    A value of exactly one of the immutable JSON scalar types decodes to an equal
    value of the same type, so it is its own copy and ``json.loads`` is skipped.
    """
    return value if type(value) in _SELF_COPYING else json.loads(encoded)


def _event_from_output(output: JsonValue) -> ReceivedEvent:
    assert isinstance(output, dict)
    timestamp = output.get("timestamp")
    event_type = output.get("type")
    assert isinstance(timestamp, str)
    assert isinstance(event_type, str)
    return ReceivedEvent(
        type=event_type, payload=copy_json(output.get("payload")), timestamp=parse_time(timestamp)
    )


def step_failure(step: StepState) -> StepFailedError:
    """The :class:`StepFailedError` of a step that failed for good."""
    assert step.error is not None
    return StepFailedError(step.name, step.error.name, step.error.message, step.attempts)


def served(step: StepState, event_type: str = "") -> Any:
    """What a settled step hands back to ``run``, whoever serves it.

    A ``do`` step's result (a fresh copy) or its :class:`StepFailedError`, a
    ``wait_for_event`` step's event or its :class:`WorkflowTimeoutError` (for
    ``event_type``, the type the code waits for), None for a finished sleep.
    """
    if step.status == "completed":
        if step.kind in ("do", "instance"):
            return copy_json(step.output)
        return _event_from_output(step.output) if step.kind == "event" else None
    if step.kind == "event":
        raise WorkflowTimeoutError(step.name, event_type)
    if step.kind == "instance" and step.error is not None and step.error.name == _TIMED_OUT:
        raise WorkflowTimeoutError(step.name, instance_id=step.instance_id)
    raise step_failure(step)


def check_step_kind(state: InstanceState, name: str, kind: StepKind) -> None:
    """Refuse a step name the journal already has for another kind of step."""
    known = state.steps.get(name)
    if known is not None and known.kind != kind:
        raise WorkflowInputError("step name", f"{name!r} is already used by a {known.kind!r} step")


# --- what happens at each step ------------------------------------------------------


class StepSource(Protocol):
    """What happens at each step of a run: serve its recorded outcome, run it, or halt.

    :class:`WorkflowStep` validates a call and then asks its source. The live
    source (:class:`StepRun`) serves settled steps and runs the rest; a replay
    serves every step from history and halts where the code leaves it. A source
    halts by raising a :class:`~wfcli.engine.signals.RunSignal`.
    """

    @property
    def settings(self) -> Settings:
        """The defaults of step options and the limits on values."""

    @property
    def instance_id(self) -> str:
        """The instance whose run this is."""

    def enter(self, name: str, kind: StepKind) -> int:
        """Before a step: take note of the call; returns how often ``name`` was called."""

    def enter_parallel(self, names: Sequence[str]) -> list[int]:
        """:meth:`enter` for the ``do`` steps of one ``parallel`` call."""

    def do(
        self,
        name: str,
        callback: Callback,
        *,
        policy: RetryPolicy,
        timeout: timedelta,
        count: int,
        runner: CallbackRunner | None = None,
        sensitive: bool = False,
        rollback: Rollback | None = None,
    ) -> Any:
        """The result of step ``name``; ``runner`` is a ``parallel`` branch's own (its
        callbacks run on threads of their own, abandoned alone on a timeout);
        ``sensitive`` marks the result for views to redact."""

    def sleep(self, name: str, until: Callable[[datetime], datetime]) -> None:
        """Sleep step ``name``; ``until(now)`` is its wake time when it first starts."""

    def wait_for_event(self, name: str, event_type: str, timeout: timedelta) -> ReceivedEvent:
        """The event step ``name`` waits for."""

    def wait_for_instance(self, name: str, instance_id: str, timeout: timedelta) -> Any:
        """The output of the instance step ``name`` waits for."""

    def patched(self, name: str) -> bool:
        """The instance's answer to patch ``name``, decided once."""

    def deprecate_patch(self, name: str) -> None:
        """Patch ``name``'s old branch is gone: halt if the instance took it."""


# --- one run of one instance -------------------------------------------------------


class StepRun:
    """The live :class:`StepSource`: journal, state, clock, waits and inbox.

    The one place that writes records, calls callbacks and waits. Settled steps
    are served from the journal; the inbox is applied before a step that runs.
    While the code is inside the recorded history, each call is checked against it
    (:class:`HistoryMatcher`); where the code departs from it, the instance is
    paused with a ``diverged`` record before anything new runs.

    A ``do`` callback runs inline on the thread that runs the workflow (``runner``,
    whose deadline another thread watches). When an attempt times out, that thread
    is abandoned (:meth:`abandon`: nothing it does afterwards reaches the store) and
    the run goes on in its :meth:`successor`, which runs the code again from the
    top on a fresh thread, replaying the journal up to the step that timed out.
    """

    def __init__(
        self,
        lease: Lease,
        state: InstanceState,
        clock: Clock,
        settings: Settings,
        observer: RunObserver,
        *,
        cancel: Callable[[], bool] | None = None,
        interceptor: StepInterceptor | None = None,
        timed_out: tuple[str, int] | None = None,
        instances: Instances | None = None,
    ) -> None:
        self.lease = lease
        self.instances = instances
        self.cancel = cancel
        self.interceptor = interceptor
        self.state = state
        self.clock = clock
        self.settings = settings
        self.observer = observer
        self.calls: dict[str, int] = {}
        self.runner = InlineRunner(Abandoned, state.instance_id)
        self.running_attempt: tuple[str, int] | None = None
        """The step and attempt whose callback ``runner`` runs or ran last."""
        self.timed_out = timed_out
        """The attempt whose timeout abandoned the run before this one: it failed."""
        self._announce_replays = timed_out is None  # the abandoned run announced them
        self.carries_on = timed_out is not None
        """Whether the code's next run goes on with the abandoned one's (no ``run_started``)."""
        self._abandoned = False
        self.rollbacks: dict[str, Rollback] = {}
        """The rollbacks of the steps the code has reached, by step name."""
        self.registering = False
        """Whether the code runs only to collect rollbacks (every step served or halted)."""
        self.store_failure: StoreFailure | None = None
        self.matcher = HistoryMatcher(state)
        self.following = False
        """Whether the code is still inside the recorded history (the matcher runs)."""
        self.diverged = False
        self._mutex = threading.RLock()
        self._main_thread = threading.get_ident()

    @property
    def instance_id(self) -> str:
        return self.state.instance_id

    def begin(self) -> None:
        """Before each run of the workflow's code: match it against the history anew."""
        self.calls.clear()  # duplicate-name detection counts calls within one run
        self._main_thread = threading.get_ident()  # the thread that runs the code
        self.matcher = HistoryMatcher(self.state)
        self.following = self.matcher.inside
        self.diverged = False

    def abandon(self) -> None:
        """Give this run up: from now on none of its records or discards reach the store.

        Waits for a write in progress to end; the observer hears nothing more.
        """
        with self._mutex:
            self._abandoned = True
            self.observer = NullObserver()

    def successor(self) -> StepRun:
        """A run that carries on after this one was abandoned for its running attempt."""
        return StepRun(
            self.lease,
            self.state,
            self.clock,
            self.settings,
            self.observer,
            cancel=self.cancel,
            interceptor=self.interceptor,
            timed_out=self.running_attempt,
            instances=self.instances,
        )

    # journal --------------------------------------------------------------------

    def record(self, *records: Record, sync: bool = True) -> None:
        """Append records and fold them into the state, as one step of the run.

        A store that fails stops the run (:class:`StoreFailed`), and every later
        record of the run fails the same way without reaching the store: what could
        not be journaled never counts as done, so nothing runs twice in this process.
        """
        with self._mutex:
            if self._abandoned:
                raise Abandoned
            if self.store_failure is not None:
                raise StoreFailed(self.store_failure)
            try:
                self.lease.append(records, sync=sync)
            except (StoreFaultError, LeaseLostError, JournalCorruptError) as error:
                self.store_failure = error
                raise StoreFailed(error) from None
            state = self.state
            was_terminal = state.terminal
            for record in records:
                state.apply(record)
        # The end of a child wakes its parent (a crash first leaves the parent to its poll).
        parent = state.parent
        if (
            parent is not None
            and self.instances is not None
            and state.terminal
            and not was_terminal
        ):
            self.instances.wake(parent)

    def _pending(self) -> list[InboxMessage]:
        """The inbox, as the lease sees it; a store that fails stops the run."""
        try:
            return self.lease.pending()
        except (StoreFaultError, LeaseLostError, JournalCorruptError) as error:
            self.store_failure = error
            raise StoreFailed(error) from None

    def apply_inbox(self) -> bool:
        """Apply pending inbox messages one at a time; True if any changed the state.

        Each message's records are journaled before the message is discarded, and
        a journaled message is never applied twice, so a crash anywhere here is safe.
        """
        changed = False
        for message in self._pending():
            changed |= self._apply_message(message)
        return changed

    def _apply_message(self, message: InboxMessage) -> bool:
        records = records_for_message(self.state, message, self.clock.now())
        if records:
            self.record(*records)
        with self._mutex:
            if self._abandoned:
                raise Abandoned
            try:
                self.lease.discard([message.message_id])
            except (StoreFaultError, LeaseLostError) as error:
                self.store_failure = error
                raise StoreFailed(error) from None
        return bool(records)

    def checkpoint(self) -> None:
        """Between steps: apply the inbox and stop, pause or restart if it says so."""
        if threading.get_ident() != self._main_thread:
            return
        if self.cancel is not None and self.cancel():
            raise Cancelled
        messages = self._pending()
        if not messages:  # nearly always
            return
        records_before = self.state.record_count
        rolling_back = self.state.rolling_back
        restarted = False
        for message in messages:
            if self._apply_message(message) and message.action == "restart":
                restarted = True
        if self.state.record_count == records_before:
            return
        if restarted:
            raise Restart
        if self.state.status in ("paused", "terminated"):
            raise Stop
        if self.state.rolling_back and not rolling_back:
            raise RollingBack
        if self.state.status == "queued":  # paused and resumed in one go: carry on
            self.record(
                RunStarted(
                    at=self.clock.now(), pid=self.lease.owner.pid, host=self.lease.owner.host
                )
            )

    def replays(self, name: str) -> bool:
        """Whether a call of step ``name`` now only hands back its journaled outcome."""
        step = self.state.steps.get(name)
        return step is not None and step.status in SETTLED

    def enter(self, name: str, kind: StepKind) -> int:
        """Apply the inbox before a step that will run, then count and check the call.

        A replayed step touches nothing outside the journal's copy in memory, so
        the inbox waits for the first step that runs (or waits): a message posted
        during a long replay still takes effect before anything new happens, and
        replaying costs no folder listing per step.
        """
        if self.registering:
            return self._count(name)
        step = self.state.steps.get(name)  # replays(name), inlined: this path is hot
        if step is None or step.status not in SETTLED:
            self.checkpoint()
            self._check_deadline(name)
        count = self._count(name)
        if self.following:
            if count == 1 and not self.diverged and self.matcher.takes(name, kind):
                self.following = self.matcher.inside
            else:
                self._follow([(name, kind, count)])
        self._check_call(name, kind, count)
        return count

    def enter_parallel(self, names: Sequence[str]) -> list[int]:
        if self.registering:
            return [self._count(name) for name in names]
        if not all(self.replays(name) for name in names):
            self.checkpoint()
            self._check_deadline(names[0] if names else "parallel")
        counts = [self._count(name) for name in names]
        if self.following:
            self._follow([(name, "do", count) for name, count in zip(names, counts, strict=True)])
        for name, count in zip(names, counts, strict=True):
            self._check_call(name, "do", count)
        return counts

    def _check_deadline(self, name: str) -> None:
        deadline = self.state.deadline
        if deadline is not None and self.clock.now() >= deadline:
            raise DeadlinePassed(name, deadline)

    def _count(self, name: str) -> int:
        with self._mutex:
            count = self.calls.get(name, 0) + 1
            self.calls[name] = count
        return count

    def _check_call(self, name: str, kind: StepKind, count: int) -> None:
        """Refuse a name reused for another kind; warn once about a duplicate name."""
        check_step_kind(self.state, name, kind)
        if count == 2 and not any(w.step == name for w in self.state.warnings):
            self.record(
                Warned(
                    at=self.clock.now(),
                    step=name,
                    message=f"step name {name!r} is used more than once; "
                    "later calls return the first call's result",
                ),
                sync=False,
            )

    # matching the history ---------------------------------------------------------------

    def _follow(self, calls: Sequence[tuple[str, StepKind, int]]) -> None:
        """Match one group of calls against the history; diverge, or go on."""
        if self.diverged:  # the code caught the Stop and went on
            raise Stop
        matcher = self.matcher
        for name, kind, count in calls:
            if count > 1:  # a name reused for another kind is the workflow's error, as live
                check_step_kind(self.state, name, kind)
            if not matcher.called(name, kind, count):
                self._diverge()
        if matcher.match() == "divergence":
            self._diverge()
        self.following = matcher.inside

    def _diverge(self) -> NoReturn:
        """Journal the matcher's divergence, which pauses the instance, and stop the run."""
        finding = self.matcher.divergence
        assert finding is not None
        self.diverged = True
        self.record(
            Diverged(
                at=self.clock.now(),
                kind=finding.kind,
                step=finding.step,
                position=finding.position,
                expected=finding.expected,
                found=finding.found,
            )
        )
        raise Stop

    def patched(self, name: str) -> bool:
        if self.registering:
            decision = self.state.patches.get(name)
            if decision is None:
                raise RegistrationDone
            return decision.applied
        if self.diverged:
            raise Stop
        applied = self.matcher.patch(name)
        if name not in self.state.patches:
            reached = self.matcher.matched if self.following else len(self.state.steps)
            self.record(
                PatchMarked(at=self.clock.now(), patch=name, applied=applied, steps_before=reached)
            )
        return applied

    def deprecate_patch(self, name: str) -> None:
        if self.registering:
            return
        if self.diverged:
            raise Stop
        if not self.matcher.deprecated(name):
            self._diverge()

    # waits ------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        kind: Literal["sleep", "retry", "event", "instance"],
        until: datetime,
        event_type: str | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """Wait inline until ``until`` (or until ``ready()``), or raise :class:`Suspend`.

        A wait that goes past the instance's deadline ends there with
        :class:`DeadlinePassed` (a suspended one is due at the deadline); rollbacks
        are not bound by it.
        """
        deadline = None if self.state.rolling_back else self.state.deadline
        if deadline is None or until <= deadline:
            self._wait(name, kind, until, event_type, ready)
            return
        self._wait(name, kind, deadline, event_type, ready)
        if ready is None or not ready():
            raise DeadlinePassed(name, deadline)

    def _wait(
        self,
        name: str,
        kind: Literal["sleep", "retry", "event", "instance"],
        until: datetime,
        event_type: str | None,
        ready: Callable[[], bool] | None,
    ) -> None:
        now = self.clock.now()
        if now >= until or (ready is not None and ready()):
            return
        if (
            self.interceptor is not None
            and kind != "instance"
            and self.interceptor.end_wait(name, kind, until)
        ):
            return
        if until - now > self.settings.max_inline_wait:
            raise Suspend(WaitInfo(kind, name, until, event_type))
        self.observer.waiting(name, kind, until)
        # Slept by the monotonic clock too, so a wall clock set back mid-wait never
        # keeps it past the inline wait it was admitted as.
        deadline = self.clock.monotonic() + (until - now).total_seconds()
        while True:
            remaining = min(
                (until - self.clock.now()).total_seconds(), deadline - self.clock.monotonic()
            )
            if remaining <= 0:
                return
            self.clock.sleep(min(remaining, self.settings.poll_interval))
            self.checkpoint()
            if ready is not None and ready():
                return

    # steps --------------------------------------------------------------------------

    def do(
        self,
        name: str,
        callback: Callback,
        *,
        policy: RetryPolicy,
        timeout: timedelta,
        count: int,
        runner: CallbackRunner | None = None,
        sensitive: bool = False,
        rollback: Rollback | None = None,
    ) -> Any:
        step = self.state.steps.get(name)
        if rollback is not None and count == 1:
            with self._mutex:
                self.rollbacks.setdefault(name, rollback)
        if self.registering:
            if step is not None and step.status in SETTLED:
                return served(step)
            raise RegistrationDone
        if step is not None and step.status in SETTLED:
            if step.status == "completed" and self._announce_replays:
                self.observer.step_finished(name, "do", ok=True, replayed=True)
            return served(step)
        attempt = 1
        if step is not None:
            attempt = step.attempts + 1 if step.status == "waiting" else max(step.attempts, 1)
            if step.status == "running" and step.attempts:
                # Its last attempt started and has no outcome: it timed out and the run
                # that ran it was abandoned, or the process running it died (or lost its
                # lease). Either counts as a failed attempt.
                lost: Exception = (
                    StepTimeoutError(name, step.attempts, timeout.total_seconds())
                    if self.timed_out == (name, step.attempts)
                    else AttemptLostError(name, step.attempts, step.lost_attempts + 1)
                )
                attempt = self._attempt_failed(name, step.attempts, lost, policy)
            elif step.retry_at is not None:
                self.wait(name, "retry", step.retry_at)
        takes_context = wants_context(callback)
        has_rollback = True if rollback is not None else None
        seconds = timeout.total_seconds()
        active: CallbackRunner | InlineRunner = self.runner if runner is None else runner
        while True:
            self.record(
                AttemptStarted(
                    at=self.clock.now(), step=name, attempt=attempt, rollback=has_rollback
                ),
                sync=False,
            )
            self.observer.step_started(name, "do", attempt)
            function = callback
            args: tuple[object, ...] = ()
            if takes_context:
                config = StepConfig(policy, timeout)
                args = (StepContext(attempt=attempt, name=name, count=count, config=config),)
            if self.interceptor is not None:
                stand_in = self.interceptor.stand_in(name, attempt, timeout)
                if stand_in is not None:
                    function, args = stand_in, ()
            if runner is None:
                self.running_attempt = (name, attempt)
            try:
                result = active.call(function, args, seconds)
                encoded = check_json(result, f"step {name!r} result", self.settings.max_value_bytes)
            except AttemptTimedOut:
                error: Exception = StepTimeoutError(name, attempt, timeout.total_seconds())
            except Exception as caught:
                error = caught
            else:
                output = _decoded_copy(result, encoded)
                self.record(
                    StepCompleted(
                        at=self.clock.now(),
                        step=name,
                        kind="do",
                        attempt=attempt,
                        output=output,
                        sensitive=sensitive or None,
                    )
                )
                self.observer.step_finished(name, "do", ok=True, replayed=False)
                return _decoded_copy(result, encoded)
            attempt = self._attempt_failed(name, attempt, error, policy)

    def _attempt_failed(
        self, name: str, attempt: int, error: Exception, policy: RetryPolicy
    ) -> int:
        """Journal a failed attempt; wait for the retry and return its number, or raise.

        An attempt lost with its process is retried at once: the retry delay is for
        errors the step raised, not for a crash or a Ctrl-C.
        """
        info = ErrorInfo.of(error.error if isinstance(error, CallbackRaised) else error)
        now = self.clock.now()
        final = isinstance(error, (NonRetryableError, WorkflowInputError))
        lost = isinstance(error, AttemptLostError)
        retry_at = next_attempt_at(policy, attempt, now, final=final, lost=lost)
        if retry_at is None:
            self.record(
                AttemptFailed(at=now, step=name, attempt=attempt, error=info, retry_at=None),
                StepFailed(at=now, step=name, kind="do", attempts=attempt, error=info),
            )
            self.observer.attempt_failed(name, attempt, info, None, retryable=not final)
            self.observer.step_finished(name, "do", ok=False, replayed=False)
            raise step_failure(self.state.steps[name])
        self.record(
            AttemptFailed(at=now, step=name, attempt=attempt, error=info, retry_at=retry_at)
        )
        self.observer.attempt_failed(name, attempt, info, retry_at, retryable=True)
        self.wait(name, "retry", retry_at)
        return attempt + 1

    def _served(self, step: StepState, event_type: str = "") -> Any:
        if step.status == "completed" and self._announce_replays:
            self.observer.step_finished(step.name, step.kind, ok=True, replayed=True)
        return served(step, event_type)

    def _registered(self, name: str, event_type: str = "") -> Any:
        """While collecting rollbacks: a settled step's outcome, or the end of it."""
        step = self.state.steps.get(name)
        if step is not None and step.status in SETTLED:
            return served(step, event_type)
        raise RegistrationDone

    def sleep(self, name: str, until: Callable[[datetime], datetime]) -> None:
        if self.registering:
            self._registered(name)
            return
        step = self.state.steps.get(name)
        if step is not None and step.status in SETTLED:
            self._served(step)
            return
        if step is None or step.until is None:
            now = self.clock.now()
            self.record(
                WaitStarted(at=now, step=name, kind="sleep", until=until(now), event_type=None)
            )
            step = self.state.steps[name]
        assert step.until is not None
        self.observer.step_started(name, "sleep", 1)
        self.wait(name, "sleep", step.until)
        self.record(
            StepCompleted(at=self.clock.now(), step=name, kind="sleep", attempt=1, output=None)
        )
        self.observer.step_finished(name, "sleep", ok=True, replayed=False)

    def wait_for_event(self, name: str, event_type: str, timeout: timedelta) -> ReceivedEvent:
        if self.registering:
            registered: ReceivedEvent = self._registered(name, event_type)
            return registered
        step = self.state.steps.get(name)
        if step is not None and step.status in SETTLED:
            received: ReceivedEvent = self._served(step, event_type)
            return received
        # A recorded wait in flight (first called in this run: history has it) must be
        # for the same event type, so that the wait and the step agree.
        if (
            step is not None
            and self.calls.get(name) == 1
            and not self.matcher.wait(name, event_type, timeout)
        ):
            self._diverge()
        if step is None or step.until is None:
            now = self.clock.now()
            self.record(
                WaitStarted(
                    at=now, step=name, kind="event", until=now + timeout, event_type=event_type
                )
            )
            step = self.state.steps[name]
        assert step.until is not None
        self.observer.step_started(name, "event", 1)

        deadline = step.until

        def in_time() -> list[BufferedEvent]:
            # An event received after the deadline is late even if no run was there to
            # see the deadline pass; it stays buffered for a later wait.
            return [e for e in self.state.buffered_events(event_type) if e.received <= deadline]

        self.wait(name, "event", deadline, event_type, ready=lambda: bool(in_time()))
        buffered = in_time()
        now = self.clock.now()
        if not buffered:
            error = WorkflowTimeoutError(name, event_type)
            self.record(
                StepFailed(at=now, step=name, kind="event", attempts=1, error=ErrorInfo.of(error))
            )
            self.observer.step_finished(name, "event", ok=False, replayed=False)
            raise error
        event = buffered[0]
        output: JsonValue = {
            "id": event.message_id,
            "type": event.event_type,
            "payload": event.payload,
            "timestamp": format_time(event.received),
        }
        self.record(
            StepCompleted(
                at=now,
                step=name,
                kind="event",
                attempt=1,
                output=output,
                sensitive=event.sensitive or None,
            )
        )
        self.observer.step_finished(name, "event", ok=True, replayed=False)
        return _event_from_output(output)

    def wait_for_instance(self, name: str, instance_id: str, timeout: timedelta) -> Any:
        if self.registering:
            return self._registered(name)
        step = self.state.steps.get(name)
        if step is not None and step.status in SETTLED:
            return self._served(step)
        if step is None or step.until is None:
            now = self.clock.now()
            self.record(
                WaitStarted(
                    at=now,
                    step=name,
                    kind="instance",
                    until=now + timeout,
                    event_type=None,
                    instance_id=instance_id,
                )
            )
            step = self.state.steps[name]
        assert step.until is not None
        waited_for = step.instance_id or instance_id
        self.observer.step_started(name, "instance", 1)
        while True:
            child = self._instance(waited_for)
            if child is not None and not child.terminal and self.instances is not None:
                self._run_instance(waited_for, child)
                child = self._instance(waited_for)
            if child is None or child.terminal:
                return self._instance_finished(name, waited_for, child)
            now = self.clock.now()
            if now >= step.until:
                error = WorkflowTimeoutError(name, instance_id=waited_for)
                self.record(
                    StepFailed(
                        at=now, step=name, kind="instance", attempts=1, error=ErrorInfo.of(error)
                    )
                )
                self.observer.step_finished(name, "instance", ok=False, replayed=False)
                raise error

            def finished() -> bool:
                state = self._instance(waited_for)
                return state is None or state.terminal

            self.wait(name, "instance", min(step.until, now + CHILD_POLL), ready=finished)

    def _instance(self, instance_id: str) -> InstanceState | None:
        if self.instances is None:
            raise WorkflowInputError("wait_for_instance", "this run cannot see other instances")
        return self.instances.state(instance_id)

    def _run_instance(self, instance_id: str, child: InstanceState) -> None:
        """Execute a child that is due here (a foreground ``wf run`` runs its children)."""
        assert self.instances is not None
        waiting = child.waiting
        if child.status in ("queued", "running") or (
            child.status == "waiting" and waiting is not None and waiting.until <= self.clock.now()
        ):
            self.instances.run(instance_id)

    def _instance_finished(self, name: str, instance_id: str, child: InstanceState | None) -> Any:
        now = self.clock.now()
        if child is not None and child.status == "complete":
            output = child.output
            self.record(StepCompleted(at=now, step=name, kind="instance", attempt=1, output=output))
            self.observer.step_finished(name, "instance", ok=True, replayed=False)
            return copy_json(output)
        if child is None:
            info = ErrorInfo("InstanceNotFoundError", f"no instance with ID {instance_id!r}")
        elif child.status == "errored" and child.error is not None:
            info = child.error
        else:
            info = ErrorInfo("Terminated", f"instance {instance_id!r} was terminated")
        self.record(StepFailed(at=now, step=name, kind="instance", attempts=1, error=info))
        self.observer.step_finished(name, "instance", ok=False, replayed=False)
        raise step_failure(self.state.steps[name])

    # rollbacks (run by wfcli.engine.rollback) -----------------------------------------

    def collect_rollbacks(self, code: Callable[[WorkflowStep], object]) -> None:
        """Run the workflow's ``code`` only to collect its rollbacks: every step is
        served from the journal, and the first one without an outcome ends it."""
        self.begin()
        self.registering = True
        try:
            code(WorkflowStep(self))
        except (RegistrationDone, Exception):
            pass  # what it raises was journaled when it first ran
        finally:
            self.registering = False


# --- the object workflows receive ------------------------------------------------------


class WorkflowStep:
    """The ``step`` argument of ``run``: durable steps, sleeps and event waits."""

    def __init__(self, source: StepSource) -> None:
        self._source = source

    def _enter(self, name: object, kind: StepKind) -> tuple[str, int]:
        """Check the call and tell the source a step begins."""
        if in_step_callback():
            raise WorkflowInputError("step", "steps cannot be started inside a step callback")
        checked = validate_step_name(name)
        return checked, self._source.enter(checked, kind)

    def _options(self, retries: object, timeout: Duration | None) -> tuple[RetryPolicy, timedelta]:
        defaults = self._source.settings
        policy = (
            defaults.retries
            if retries is None
            else RetryPolicy.from_value(retries, defaults.retries)
        )
        limit = defaults.timeout if timeout is None else parse_duration(timeout, "timeout")
        if limit <= _NO_TIME:
            raise WorkflowInputError("timeout", "must be longer than zero")
        return policy, limit

    def _rollback(self, rollback: Callback | None, config: object) -> Rollback | None:
        if rollback is None:
            if config is not None:
                raise WorkflowInputError("rollback_config", "given without a rollback")
            return None
        if not callable(rollback):
            raise WorkflowInputError("rollback", f"{type(rollback).__name__} is not callable")
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise WorkflowInputError(
                "rollback_config", f"expected a mapping, got {type(config).__name__}"
            )
        unknown = sorted(set(map(str, config)) - {"retries", "timeout"})
        if unknown:
            raise WorkflowInputError("rollback_config", f"unknown key {unknown[0]!r}")
        policy, limit = self._options(config.get("retries"), config.get("timeout"))
        return Rollback(rollback, policy, limit)

    def do(
        self,
        name: str,
        callback: Callback,
        *,
        retries: Mapping[str, object] | RetryPolicy | None = None,
        timeout: Duration | None = None,
        sensitive: bool = False,
        rollback: Callback | None = None,
        rollback_config: Mapping[str, object] | None = None,
    ) -> Any:
        """Run ``callback`` once, durably, and return its JSON result.

        ``callback`` (a function or ``async def``) takes no argument or a
        :class:`StepContext`. ``retries`` (``limit``, ``delay``, ``backoff``) and
        ``timeout`` (per attempt) default to the project's settings (5 retries, 10
        seconds, exponential; 10 minutes). On replay the journaled result is
        returned without calling ``callback``. A step that fails for good raises
        :class:`StepFailedError`.

        With ``sensitive=True`` every view shows its result as ``"[REDACTED]"``; the
        journal keeps it (replay and later steps get the real value), and its errors
        are shown as they are.

        ``rollback`` undoes the step when the instance fails for good or is
        terminated with ``--rollback``: it takes no argument or a
        :class:`RollbackContext`; ``rollback_config`` (``retries``, ``timeout``)
        gives its own options, with the same defaults.
        """
        policy, limit = self._options(retries, timeout)
        if not callable(callback):
            raise WorkflowInputError("callback", f"{type(callback).__name__} is not callable")
        undo = (
            None
            if rollback is None and rollback_config is None
            else self._rollback(rollback, rollback_config)
        )
        checked, count = self._enter(name, "do")
        return self._source.do(
            checked,
            callback,
            policy=policy,
            timeout=limit,
            count=count,
            sensitive=sensitive,
            rollback=undo,
        )

    def parallel(
        self,
        calls: Mapping[str, Callback],
        *,
        retries: Mapping[str, object] | RetryPolicy | None = None,
        timeout: Duration | None = None,
        sensitive: bool = False,
        rollbacks: Mapping[str, Callback] | None = None,
        rollback_config: Mapping[str, object] | None = None,
    ) -> list[Any]:
        """Run several ``do`` steps at once, each journaled under its own name.

        Returns their results in the order of ``calls``. On replay only the
        steps without a journaled result run. If any fails for good, the first
        failure in ``calls`` order is raised after all have finished. ``sensitive``
        is as for :meth:`do`, for every one of them. ``rollbacks`` maps some of the
        names to their rollbacks (see :meth:`do`); they roll back in the order the
        steps started, the last first.
        """
        policy, limit = self._options(retries, timeout)
        undo = {
            name: self._rollback(callback, rollback_config)
            for name, callback in (rollbacks or {}).items()
        }
        if not set(undo) <= set(calls):
            extra = sorted(set(undo) - set(calls))[0]
            raise WorkflowInputError("rollbacks", f"{extra!r} is not one of the steps")
        named = [(validate_step_name(name), callback) for name, callback in calls.items()]
        for name, callback in named:
            if not callable(callback):
                raise WorkflowInputError(
                    "callback", f"{type(callback).__name__} given for step {name!r} is not callable"
                )
        if in_step_callback():
            raise WorkflowInputError("step", "steps cannot be started inside a step callback")
        counts = self._source.enter_parallel([name for name, _ in named])
        outcomes: list[tuple[bool, object]] = [(False, None)] * len(named)

        def branch(index: int) -> None:
            name, callback = named[index]
            runner = CallbackRunner(self._source.instance_id)
            try:
                outcomes[index] = (
                    True,
                    self._source.do(
                        name,
                        callback,
                        policy=policy,
                        timeout=limit,
                        count=counts[index],
                        runner=runner,
                        sensitive=sensitive,
                        rollback=undo.get(name),
                    ),
                )
            except BaseException as error:
                outcomes[index] = (False, error)
            finally:
                runner.close()

        threads = [
            threading.Thread(
                target=branch, args=(index,), name=f"wfcli-parallel-{index}", daemon=True
            )
            for index in range(len(named))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [value for ok, value in outcomes if not ok]
        for error in errors:  # a failed store ends the run whatever else happened
            if isinstance(error, StoreFailed):
                raise error
        for error in errors:  # then the end of a deadline, or of collecting rollbacks
            if isinstance(error, (DeadlinePassed, RegistrationDone)):
                raise error
        suspends = [error for error in errors if isinstance(error, Suspend)]
        if suspends:
            raise min(suspends, key=lambda signal: signal.wait.until)
        for error in errors:
            assert isinstance(error, BaseException)
            raise error
        return [value for _, value in outcomes]

    def sleep(self, name: str, duration: Duration) -> None:
        """Sleep durably for ``duration``; the wake time is journaled before the wait."""
        delta = parse_duration(duration, "sleep duration")
        checked, _ = self._enter(name, "sleep")
        self._source.sleep(checked, lambda now: now + delta)

    def sleep_until(self, name: str, when: datetime | float | int) -> None:
        """Sleep durably until ``when`` (a timezone-aware datetime or epoch seconds)."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise WorkflowInputError("sleep_until", "pass a timezone-aware datetime")
            moment = when.astimezone(timezone.utc)
        elif isinstance(when, (int, float)) and not isinstance(when, bool):
            try:
                moment = datetime.fromtimestamp(when, timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise WorkflowInputError("sleep_until", f"{when!r} is not a valid time") from None
        else:
            raise WorkflowInputError(
                "sleep_until", f"expected a datetime or epoch seconds, got {type(when).__name__}"
            )
        checked, _ = self._enter(name, "sleep")
        self._source.sleep(checked, lambda now: moment)

    def wait_for_event(
        self, name: str, *, type: str, timeout: Duration = "24 hours"
    ) -> ReceivedEvent:
        """Wait for an event of ``type``; events sent earlier are taken first in, first out.

        Raises :class:`WorkflowTimeoutError` if none arrives within ``timeout``.
        """
        event_type = validate_event_type(type)
        limit = parse_duration(timeout, "timeout")
        checked, _ = self._enter(name, "event")
        return self._source.wait_for_event(checked, event_type, limit)

    def wait_for_instance(
        self, name: str, instance_id: str, *, timeout: Duration = "24 hours"
    ) -> Any:
        """Wait for instance ``instance_id`` (a child) to finish; returns its output.

        Raises :class:`StepFailedError` if it errored (with its error) or was
        terminated, and :class:`WorkflowTimeoutError` if it is not finished within
        ``timeout``. A child that this instance created wakes it when it finishes;
        otherwise it looks every :data:`CHILD_POLL`.
        """
        child = validate_instance_id(instance_id)
        limit = parse_duration(timeout, "timeout")
        checked, _ = self._enter(name, "instance")
        return self._source.wait_for_instance(checked, child, limit)

    def patched(self, name: str) -> bool:
        """Whether this instance takes the new branch of patch ``name``.

        True for an instance that reaches this point doing new work (its recorded
        history is all behind it), False for one whose history goes on past this
        point, recorded under the old code. The answer is journaled the first
        time, so it never changes for an instance.
        """
        return self._source.patched(self._patch_name(name))

    def deprecate_patch(self, name: str) -> None:
        """Mark patch ``name`` as having only its new branch left (see :meth:`patched`).

        Journals nothing; an instance that took the old branch stops there, paused
        as diverged, before anything new runs.
        """
        self._source.deprecate_patch(self._patch_name(name))

    def _patch_name(self, name: object) -> str:
        if in_step_callback():
            raise WorkflowInputError(
                "patch", "patches cannot be asked about inside a step callback"
            )
        try:
            return validate_step_name(name)
        except WorkflowInputError as error:
            raise WorkflowInputError("patch name", error.reason) from None
