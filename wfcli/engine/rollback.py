"""Rolling an instance back: the rollbacks of its plan, in order, each journaled with
its own retries and timeout (SPEC 6.3).

The plan is journaled (``rollback_started``) before this runs; a run that resumes a
rollback first collects the callbacks (:meth:`StepRun.collect_rollbacks`), then
:func:`roll_back` runs the ones without an outcome: a finished rollback never runs
again, one that was in flight counts as a lost attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from wfcli.core.codec import (
    ErrorInfo,
    RollbackAttemptFailed,
    RollbackAttemptStarted,
    RollbackCompleted,
    RollbackFailed,
    RollbackFinished,
)
from wfcli.core.retry import RetryPolicy, next_attempt_at
from wfcli.core.state import RollbackStepState
from wfcli.engine.callbacks import (
    AttemptTimedOut,
    Callback,
    CallbackRaised,
    CallbackRunner,
    wants_context,
)
from wfcli.engine.workflow import RollbackContext, StepConfig
from wfcli.errors import (
    AttemptLostError,
    NonRetryableError,
    RollbackMissingError,
    StepTimeoutError,
)

if TYPE_CHECKING:
    from wfcli.engine.step import StepRun

__all__ = ["Rollback", "roll_back"]


@dataclass(frozen=True, slots=True)
class Rollback:
    """A step's rollback: its callback and resolved options."""

    callback: Callback
    policy: RetryPolicy
    timeout: timedelta


def roll_back(run: StepRun) -> None:
    """Run the rollbacks of the plan that have not run, in order, and journal the
    end; the first one that fails for good halts the rest.

    Rollbacks are rare, so their callbacks run on a thread of their own
    (:class:`CallbackRunner`) that a timeout abandons alone, not inline on the
    workflow's thread as ``do`` callbacks do.
    """
    rollback = run.state.rollback
    assert rollback is not None
    runner = CallbackRunner(run.state.instance_id)
    try:
        for entry in rollback.steps.values():
            if entry.status == "completed":
                continue
            if entry.status == "failed":
                break
            run.checkpoint()
            if not _roll_back_step(run, entry, runner):
                break
    finally:
        runner.close()
    failed = rollback.failed_step is not None
    run.record(
        RollbackFinished(
            at=run.clock.now(),
            status="failed" if failed else "complete",
            completed=rollback.completed,
            total=len(rollback.steps),
        )
    )


def _roll_back_step(run: StepRun, entry: RollbackStepState, runner: CallbackRunner) -> bool:
    """Run one step's rollback to its end; True if it completed."""
    from wfcli.engine.step import copy_json, step_failure  # step.py imports this module

    name = entry.step
    shown = f"rollback {name}"
    rollback = run.rollbacks.get(name)
    if rollback is None:
        missing = ErrorInfo.of(RollbackMissingError(name))
        run.record(
            RollbackFailed(at=run.clock.now(), step=name, attempts=entry.attempts, error=missing)
        )
        run.observer.step_finished(shown, "do", ok=False, replayed=False)
        return False
    attempt = 1
    if entry.status == "waiting":
        assert entry.retry_at is not None
        run.wait(name, "retry", entry.retry_at)
        attempt = entry.attempts + 1
    elif entry.status == "running" and entry.attempts:
        lost = AttemptLostError(shown, entry.attempts, entry.lost_attempts + 1)
        next_attempt = _attempt_failed(run, entry, entry.attempts, lost, rollback)
        if next_attempt is None:
            return False
        attempt = next_attempt
    step = run.state.steps[name]
    config = StepConfig(rollback.policy, rollback.timeout)
    takes_context = wants_context(rollback.callback)
    while True:
        run.record(
            RollbackAttemptStarted(at=run.clock.now(), step=name, attempt=attempt), sync=False
        )
        run.observer.step_started(shown, "do", attempt)
        args: tuple[object, ...] = ()
        if takes_context:
            failure = step_failure(step) if step.status == "failed" else None
            output = copy_json(step.output) if step.status == "completed" else None
            args = (RollbackContext(output, failure, name, attempt, config),)
        try:
            runner.call(rollback.callback, args, rollback.timeout.total_seconds())
        except AttemptTimedOut:
            error: Exception = StepTimeoutError(shown, attempt, rollback.timeout.total_seconds())
        except Exception as caught:
            error = caught
        else:
            run.record(RollbackCompleted(at=run.clock.now(), step=name, attempt=attempt))
            run.observer.step_finished(shown, "do", ok=True, replayed=False)
            return True
        next_attempt = _attempt_failed(run, entry, attempt, error, rollback)
        if next_attempt is None:
            return False
        attempt = next_attempt


def _attempt_failed(
    run: StepRun, entry: RollbackStepState, attempt: int, error: Exception, rollback: Rollback
) -> int | None:
    """Journal a failed rollback attempt; wait for its retry and return its number,
    or None when the rollback failed for good."""
    name = entry.step
    info = ErrorInfo.of(error.error if isinstance(error, CallbackRaised) else error)
    now = run.clock.now()
    final = isinstance(error, NonRetryableError)
    lost = isinstance(error, AttemptLostError)
    retry_at = next_attempt_at(rollback.policy, attempt, now, final=final, lost=lost)
    if retry_at is None:
        run.record(
            RollbackAttemptFailed(at=now, step=name, attempt=attempt, error=info, retry_at=None),
            RollbackFailed(at=now, step=name, attempts=attempt, error=info),
        )
        run.observer.attempt_failed(f"rollback {name}", attempt, info, None, retryable=not final)
        run.observer.step_finished(f"rollback {name}", "do", ok=False, replayed=False)
        return None
    run.record(
        RollbackAttemptFailed(at=now, step=name, attempt=attempt, error=info, retry_at=retry_at)
    )
    run.observer.attempt_failed(f"rollback {name}", attempt, info, retry_at, retryable=True)
    run.wait(name, "retry", retry_at)
    return attempt + 1
