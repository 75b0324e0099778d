"""The engine's control-flow signals: ``BaseException`` subclasses, so that a workflow's
``except Exception`` lets them pass and they reach the executor."""

from __future__ import annotations

from wfcli.core.codec import (
    format_time,
)
from wfcli.core.state import WaitInfo

__all__ = ["Cancelled", "Restart", "RunSignal", "Stop", "Suspend"]


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
    """The process is shutting down: stop between steps, journal nothing.

    The instance stays ``running`` in its journal with no process holding it, so
    it shows as interrupted and the next ``wf resume``/worker carries on.
    """


class Restart(RunSignal):
    """The instance was restarted; the executor runs it again from the top."""
