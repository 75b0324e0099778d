"""The workflows of the multi-machine tests. ``chaos``: counted side effects, a retry,
a durable sleep, and for some instances an event (sent, or never sent and terminated
instead). ``held``: a step that takes ``params["hold"]`` seconds between two quick ones.

Every callback call appends ``PID STEP ATTEMPT`` to ``$WF_PG_EFFECTS/ID`` before it
returns, so the test can count and attribute each side effect.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from wfcli import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

__all__ = ["WORKFLOWS", "Chaos", "Held", "expected_output", "slow_step", "waits_for_event"]


def waits_for_event(n: int) -> bool:
    return n % 5 == 0


def slow_step(n: int) -> bool:
    """Whether instance ``n``'s step ``c`` takes long (so that kills land in it)."""
    return n % 4 == 1


def expected_output(n: int) -> dict[str, Any]:
    return {"a": n + 1, "b": 2 * (n + 1), "event": n if waits_for_event(n) else None, "c": "done"}


def _effect(instance_id: str, step: str, attempt: int, seconds: float = 0.02) -> None:
    path = Path(os.environ["WF_PG_EFFECTS"]) / instance_id
    with path.open("a", encoding="utf-8") as effects:
        effects.write(f"{os.getpid()} {step} {attempt}\n")
    time.sleep(seconds)  # the step stays in flight, so that kills may land in it


class Chaos(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        n = event.payload["n"]
        me = event.instance_id

        def a(context: StepContext) -> int:
            _effect(me, "a", context.attempt)
            return n + 1

        def b(context: StepContext) -> int:
            _effect(me, "b", context.attempt)
            if context.attempt == 1:
                raise ConnectionError("the first attempt always fails")
            return 2 * (n + 1)

        def c(context: StepContext) -> str:
            _effect(me, "c", context.attempt, 0.4 if slow_step(n) else 0.02)
            return "done"

        first = step.do("a", a)
        second = step.do("b", b, retries={"limit": 5, "delay": "0.2 seconds"})
        step.sleep("nap", "0.3 seconds")
        got = None
        if waits_for_event(n):
            got = step.wait_for_event("go", type="go", timeout="10 minutes").payload
        last = step.do("c", c)
        return {"a": first, "b": second, "event": got, "c": last}


class Held(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        me = event.instance_id

        def effect(name: str, seconds: float) -> Any:
            def call(context: StepContext) -> str:
                _effect(me, name, context.attempt, seconds)
                return name

            return step.do(name, call)

        return [effect("before", 0), effect("held", event.payload["hold"]), effect("after", 0)]


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {"chaos": Chaos, "held": Held}
