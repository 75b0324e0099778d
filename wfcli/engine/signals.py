"""The engine's control-flow signals: ``BaseException`` subclasses, so that a workflow's
``except Exception`` lets them pass and they reach the executor."""

from __future__ import annotations

from datetime import datetime
from typing import Union

from wfcli.core.codec import format_time
from wfcli.core.state import WaitInfo
from wfcli.errors import JournalCorruptError, LeaseLostError, StoreFaultError

__all__ = [
    "Abandoned",
    "Cancelled",
    "DeadlinePassed",
    "RegistrationDone",
    "Restart",
    "RollingBack",
    "RunSignal",
    "Stop",
    "StoreFailed",
    "StoreFailure",
    "Suspend",
]

StoreFailure = Union[StoreFaultError, LeaseLostError, JournalCorruptError]  # noqa: UP007
"""What the store can fail with under a run: a fault, a lost lease, a damaged inbox."""


class RunSignal(BaseException):
    """Base of the executor's internal signals that unwind ``run``."""


class Suspend(RunSignal):
    """The run must stop and wait; the executor journals ``Suspended``."""

    def __init__(self, wait: WaitInfo) -> None:
        self.wait = wait
        super().__init__(f"waiting for {wait.kind} {wait.step!r} until {format_time(wait.until)}")


class Stop(RunSignal):
    """The instance was paused or terminated; its record is already journaled."""


class Cancelled(RunSignal):
    """The process is shutting down: stop between steps.

    The executor journals ``Stopped``: the instance is ``queued`` again (not shown as
    interrupted) and the next ``wf resume``/worker carries on.
    """


class Abandoned(RunSignal):
    """This run was given up (a callback outlived its attempt's timeout, or the caller
    stopped waiting): the thread that runs it may no longer write anything."""


class Restart(RunSignal):
    """The instance was restarted; the executor runs it again from the top."""


class StoreFailed(RunSignal):
    """The store failed under the run (``error``): nothing more is journaled by it.

    Not the workflow's error: workflow code cannot catch it, the run stops without
    journaling ``errored``, and the executor raises ``error`` to its caller. The
    instance stays resumable from what its journal says.
    """

    def __init__(self, error: StoreFailure) -> None:
        self.error = error
        super().__init__(str(error))


class DeadlinePassed(RunSignal):
    """The instance reached its workflow deadline at step ``step``: it errors with
    :class:`~wfcli.errors.WorkflowTimeoutError`, which workflow code cannot catch."""

    def __init__(self, step: str, deadline: datetime) -> None:
        self.step = step
        self.deadline = deadline
        super().__init__(f"deadline {format_time(deadline)} passed at step {step!r}")


class RollingBack(RunSignal):
    """``wf terminate --rollback`` was applied during the run: it rolls back now."""


class RegistrationDone(RunSignal):
    """A run that only collects rollbacks reached a step with no outcome: every
    started step has been seen."""
