"""Workflows the crash-anywhere runs execute (``wf`` imports this file by path).

Every callback counts itself in ``<dir>/<step>.calls`` (one ``PID ATTEMPT`` line
per real call) and announces where it is in the lane's trace file
(``PID INSTANCE PHASE STEP`` lines, phase ``start``, ``return`` or ``raise``), so
the driver can SIGKILL a process at a chosen moment and afterwards tell which
calls were in flight at a kill. Outputs depend only on the params' ``n`` and
``size``, never on timing, process or attempt history, so every instance of a
kind must end with the output of an uninterrupted run.

The module imports nothing but the standard library and :mod:`wfcli`; an
optional import gate (``WFREL_IMPORT_GATE``) parks a process right after it
loaded the project, so tests can make many ``wf`` processes race at one point.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from wfcli import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

__all__ = [
    "CHAOS_WORKFLOWS",
    "IMPORT_GATE_ENV",
    "Approval",
    "Bulky",
    "Chain",
    "Collector",
    "FanOut",
    "Napper",
    "Pausable",
    "Retrier",
    "Slow",
    "blob",
]

IMPORT_GATE_ENV = "WFREL_IMPORT_GATE"
_GATE_PATIENCE_SECONDS = 60.0


def _wait_for(path: str | Path) -> None:
    """Block until ``path`` exists (or a minute has passed: a test gave up)."""
    deadline = time.monotonic() + _GATE_PATIENCE_SECONDS
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait_at_import_gate() -> None:
    """With ``WFREL_IMPORT_GATE=PATH``: touch ``PATH.<pid>``, then wait for ``PATH``."""
    gate = os.environ.get(IMPORT_GATE_ENV)
    if gate:
        Path(f"{gate}.{os.getpid()}").touch()
        _wait_for(gate)


_wait_at_import_gate()


class _Probe:
    """Side-effect counters and trace lines of one instance."""

    def __init__(self, event: WorkflowEvent) -> None:
        self.folder = Path(event.payload["dir"])
        self.trace = Path(event.payload["trace"])
        self.instance_id = event.instance_id
        self.work = float(event.payload.get("work", 0.0))

    def _append(self, path: Path, line: str) -> None:
        # One small O_APPEND write: a kill cannot leave half a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def mark(self, phase: str, step: str) -> None:
        self._append(self.trace, f"{os.getpid()} {self.instance_id} {phase} {step}\n")

    def enter(self, step: str, attempt: int = 1) -> None:
        """Count one real call of ``step`` and announce it."""
        self._append(self.folder / f"{step}.calls", f"{os.getpid()} {attempt}\n")
        self.mark("start", step)

    def call(self, step: str, value: Any, *, work: float | None = None) -> Any:
        """A whole callback: count, work a while (a window to be killed in), return."""
        self.enter(step)
        time.sleep(self.work if work is None else work)
        self.mark("return", step)
        return value


def blob(n: int, size: int) -> str:
    """A deterministic text of ``size`` characters (the big step result)."""
    seed = hashlib.sha256(str(n).encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


class Chain(WorkflowEntrypoint):
    """Four dependent steps, each working for ``work`` seconds."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]
        s1 = step.do("s1", lambda: probe.call("s1", n + 1))
        s2 = step.do("s2", lambda: probe.call("s2", {"double": s1 * 2}))
        s3 = step.do("s3", lambda: probe.call("s3", [s1, s2["double"]]))
        s4 = step.do("s4", lambda: probe.call("s4", sum(s3) + n))
        return {"s1": s1, "s2": s2, "s3": s3, "s4": s4}


class Bulky(WorkflowEntrypoint):
    """A step whose result is ``size`` characters (a long journal write), then its digest."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n, size = event.payload["n"], event.payload["size"]
        text = step.do("blob", lambda: probe.call("blob", blob(n, size), work=0.0))
        digest = step.do(
            "digest", lambda: probe.call("digest", hashlib.sha256(text.encode()).hexdigest())
        )
        return {"length": len(text), "digest": digest}


class Napper(WorkflowEntrypoint):
    """A step, a durable sleep of ``nap`` seconds, a step."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]
        before = step.do("before", lambda: probe.call("before", n * 3))
        step.sleep("nap", event.payload["nap"])
        after = step.do("after", lambda: probe.call("after", before + 1))
        return {"before": before, "after": after}


class Retrier(WorkflowEntrypoint):
    """A step that fails its first two attempts (retry waits of ``delay``), then a step."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]

        def flaky(context: StepContext) -> dict[str, int]:
            probe.enter("flaky", context.attempt)
            time.sleep(probe.work)
            if context.attempt < 3:
                probe.mark("raise", "flaky")
                raise ConnectionError(f"attempt {context.attempt} refused")
            probe.mark("return", "flaky")
            return {"n": n, "attempt": context.attempt}

        # Room for attempts lost to kills too: each counts against the limit.
        retries = {"limit": 8, "delay": event.payload["delay"], "backoff": "constant"}
        result = step.do("flaky", flaky, retries=retries)
        settled = step.do("settle", lambda: probe.call("settle", result["attempt"] * 10 + n))
        return {"flaky": result, "settle": settled}


class Approval(WorkflowEntrypoint):
    """A step, a wait for an ``approve`` event (inline or suspended), a step using it."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]
        ticket = step.do("prepare", lambda: probe.call("prepare", f"ticket-{n}"))
        approval = step.wait_for_event(
            "approval", type="approve", timeout=event.payload["event_timeout"]
        )
        by = step.do("record", lambda: probe.call("record", f"{ticket}:{approval.payload['by']}"))
        return {"ticket": ticket, "approved_by": by}


class Pausable(WorkflowEntrypoint):
    """Five steps of ``work`` seconds: time for a pause to arrive while one runs."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]
        total = n
        for index in range(1, 6):
            total = step.do(f"p{index}", lambda t=total, i=index: probe.call(f"p{i}", t + i))
        return {"total": total}


class FanOut(WorkflowEntrypoint):
    """Three parallel steps (up to three calls in flight at once), then their sum."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        n = event.payload["n"]
        results = step.parallel(
            {
                name: (lambda name=name, value=value: probe.call(name, value))
                for name, value in (("f1", n), ("f2", n * 10), ("f3", n * 100))
            }
        )
        total = step.do("sum", lambda: probe.call("sum", sum(results)))
        return {"results": results, "sum": total}


class Slow(WorkflowEntrypoint):
    """``steps`` steps of ``work`` seconds; with ``hold``, the first one waits for that file."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        probe = _Probe(event)
        hold = event.payload.get("hold")

        def work(index: int) -> int:
            probe.enter(f"k{index}")
            time.sleep(probe.work)
            if hold and index == 0:
                _wait_for(hold)
            probe.mark("return", f"k{index}")
            return index

        done = [step.do(f"k{i}", lambda i=i: work(i)) for i in range(event.payload["steps"])]
        return {"done": len(done)}


class Collector(WorkflowEntrypoint):
    """Waits (inline) for ``count`` events of type ``item``; returns their payloads in order."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return [
            step.wait_for_event(f"item-{index}", type="item", timeout="50 seconds").payload
            for index in range(event.payload["count"])
        ]


# workflow name -> class name, as bound in the chaos projects' workflows.toml
CHAOS_WORKFLOWS: dict[str, str] = {
    "chain": "Chain",
    "bulky": "Bulky",
    "napper": "Napper",
    "retrier": "Retrier",
    "approval": "Approval",
    "pausable": "Pausable",
    "fanout": "FanOut",
    "slow": "Slow",
    "collector": "Collector",
}
