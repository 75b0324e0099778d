"""The workflows the benchmarks run: trivial steps, so that wfcli's own cost shows.

This file is also the ``main`` of the benchmark projects' ``workflows.toml``
(loaded by path), so it imports nothing from ``bench``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from wfcli import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

__all__ = ["IoStepsWorkflow", "ParkedWorkflow", "StepsWorkflow", "TimedStepsWorkflow"]


def _one() -> int:
    return 1


class StepsWorkflow(WorkflowEntrypoint):
    """``params["steps"]`` trivial steps, then done."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        count = event.payload["steps"]
        for index in range(count):
            step.do(f"step-{index}", _one)
        return {"steps": count}


class IoStepsWorkflow(WorkflowEntrypoint):
    """``params["steps"]`` steps that each wait ``params["io_ms"]`` milliseconds (a
    sleep standing for I/O: a request, a query), then done."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        count = event.payload["steps"]
        seconds = event.payload["io_ms"] / 1000

        def wait() -> int:
            time.sleep(seconds)
            return 1

        for index in range(count):
            step.do(f"step-{index}", wait)
        return {"steps": count}


class ParkedWorkflow(WorkflowEntrypoint):
    """``params["steps"]`` trivial steps, then a wait for an event that never comes.

    Every run replays the steps and suspends at the wait again, so resuming it
    measures how resume time grows with the number of journaled steps.
    """

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        for index in range(event.payload["steps"]):
            step.do(f"step-{index}", _one)
        step.wait_for_event("go", type="go", timeout="30 days")
        return None


class TimedStepsWorkflow(WorkflowEntrypoint):
    """Like :class:`StepsWorkflow`, timing its steps after a first warm-up step.

    The seconds the timed steps took land in :attr:`elapsed` by instance ID.
    """

    elapsed: ClassVar[dict[str, float]] = {}

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        count = event.payload["steps"]
        step.do("warm-up", _one)
        started = time.perf_counter()
        for index in range(count):
            step.do(f"step-{index}", _one)
        TimedStepsWorkflow.elapsed[event.instance_id] = time.perf_counter() - started
        return None
