"""Workflows the storage-fault and hostile-callback tests run through ``wf``.

Every callback counts itself in ``<dir>/<step>.calls`` (one ``PID ATTEMPT`` line
per real call), so a test can tell how often each really ran, across processes.
``wf`` imports this file by path: it imports nothing but the standard library and
:mod:`wfcli`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from wfcli import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

__all__ = ["FAULT_WORKFLOWS", "Poisoned", "Steps", "Suicidal", "calls"]

_HOLD_PATIENCE_SECONDS = 60.0


def _count(event: WorkflowEvent, context: StepContext) -> None:
    folder = Path(event.payload["dir"])
    with open(folder / f"{context.name}.calls", "a", encoding="utf-8") as file:
        file.write(f"{os.getpid()} {context.attempt}\n")


def calls(folder: Path, step: str) -> list[tuple[int, int]]:
    """``(pid, attempt)`` of every real call of ``step`` under ``folder``."""
    try:
        text = (folder / f"{step}.calls").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [
        (int(pid), int(attempt)) for pid, attempt in (line.split() for line in text.splitlines())
    ]


class Steps(WorkflowEntrypoint):
    """``steps`` steps of ``work`` seconds each; with ``hold``, step ``s1`` touches
    ``<hold>.reached`` and waits for the file ``hold``."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        n, work, hold = event.payload["n"], event.payload.get("work", 0), event.payload.get("hold")

        def body(context: StepContext, value: int) -> int:
            _count(event, context)
            if hold and context.name == "s1":
                Path(f"{hold}.reached").touch()
                deadline = time.monotonic() + _HOLD_PATIENCE_SECONDS
                while not os.path.exists(hold) and time.monotonic() < deadline:
                    time.sleep(0.01)
            time.sleep(work)
            return value

        total = n
        for index in range(event.payload.get("steps", 3)):
            total = step.do(f"s{index}", lambda c, t=total, i=index: body(c, t + i))
        return {"total": total}


class _Custom(BaseException):
    """A BaseException of the workflow's own, not an Exception."""


_RAISED: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "Custom": _Custom,
}


class Poisoned(WorkflowEntrypoint):
    """Its step raises the ``BaseException`` named by ``raise`` on every attempt
    (``SystemExit`` with code 0); one retry, at once."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        kind = _RAISED[event.payload["raise"]]

        def poison(context: StepContext) -> None:
            _count(event, context)
            raise kind(0) if kind is SystemExit else kind("poisoned")

        return step.do("poison", poison, retries={"limit": 1, "delay": 0})


class Suicidal(WorkflowEntrypoint):
    """Its step SIGKILLs its own process on every attempt; two retries."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def die(context: StepContext) -> None:
            _count(event, context)
            os.kill(os.getpid(), signal.SIGKILL)

        return step.do("die", die, retries={"limit": 2, "delay": 0})


# workflow name -> class name, as bound in a project by ``make_chaos_project``
FAULT_WORKFLOWS = {"steps": "Steps", "poisoned": "Poisoned", "suicidal": "Suicidal"}
