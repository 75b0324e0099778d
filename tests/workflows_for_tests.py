"""Workflows the core tests run, in-process and in subprocesses, and shared helpers.

Side effects go to files in a folder named by the instance's params (``"dir"``),
so a test can count how often each callback really ran, across processes. A
subprocess can be told to block at a named point (environment variable
:data:`BLOCK_ENV`): the callback writes ``blocked-<point>`` and waits for
``release-<point>``, so the test can kill it, or act on it, at a known moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wfcli import (
    FileStore,
    Settings,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.core.clock import Clock
from wfcli.core.codec import (
    AttemptStarted,
    Created,
    Finished,
    Record,
    RunStarted,
    StepCompleted,
    decode_record,
)

__all__ = [
    "BLOCK_ENV",
    "PATIENCE_SECONDS",
    "WORKFLOWS",
    "Approval",
    "Children",
    "Collector",
    "Effects",
    "FanOut",
    "Flaky",
    "Pipeline",
    "Sleeper",
    "assert_journal_sane",
    "journal_path",
    "make_client",
    "outputs",
    "read_journal_strictly",
    "wait_for_file",
    "wait_until",
]

BLOCK_ENV = "WFTEST_BLOCK_AT"
PATIENCE_SECONDS = 20.0  # only a hung or broken process takes this long
_GIVE_UP_SECONDS = 60.0  # a blocked child never outlives a test run by much
_REPO_ROOT = Path(__file__).resolve().parent.parent


def wait_for_file(path: Path, give_up_after: float = _GIVE_UP_SECONDS) -> None:
    """Block until ``path`` exists (polling); raise if it never appears."""
    deadline = time.monotonic() + give_up_after
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


class Effects:
    """Countable side effects and blocking points, kept as files in one folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def call(self, name: str, value: Any) -> Any:
        """Record one real call of ``name``, block there if asked, and return ``value``."""
        with open(self.folder / f"{name}.calls", "a", encoding="utf-8") as calls:
            calls.write(f"{os.getpid()}\n")
        self.block_if_asked(name)
        return value

    def count(self, name: str) -> int:
        """How many times ``name`` really ran."""
        try:
            return len((self.folder / f"{name}.calls").read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            return 0

    def block_if_asked(self, point: str) -> None:
        """Block the first time this process passes ``point`` if the environment asks."""
        if os.environ.get(BLOCK_ENV) != point:
            return
        marker = self.blocked_marker(point)
        if marker.exists():
            return
        marker.touch()
        wait_for_file(self.release_file(point))

    def blocked_marker(self, point: str) -> Path:
        return self.folder / f"blocked-{point}"

    def release_file(self, point: str) -> Path:
        return self.folder / f"release-{point}"


class Pipeline(WorkflowEntrypoint):
    """Three dependent steps; the output is built from every step's result."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        a = step.do("a", lambda: effects.call("a", event.payload["n"] + 1))
        b = step.do("b", lambda: effects.call("b", {"double": a * 2}))
        c = step.do("c", lambda: effects.call("c", [a, b["double"], "done"]))
        return {"a": a, "b": b, "c": c}


class FanOut(WorkflowEntrypoint):
    """Three parallel steps, then one that sums them."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        results = step.parallel(
            {
                name: (lambda name=name, value=value: effects.call(name, value))
                for name, value in (("p1", 1), ("p2", 20), ("p3", 300))
            }
        )
        total = step.do("total", lambda: effects.call("total", sum(results)))
        return {"results": results, "total": total}


class Approval(WorkflowEntrypoint):
    """A step, a wait for an ``approve`` event, and a step using its payload."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        step.do("prepare", lambda: effects.call("prepare", "ready"))
        approval = step.wait_for_event(
            "approval", type="approve", timeout=event.payload.get("timeout", "1 hour")
        )
        by = step.do("record", lambda: effects.call("record", approval.payload["by"]))
        return {"approved_by": by}


class Collector(WorkflowEntrypoint):
    """Waits for ``count`` events of type ``item`` and returns their payloads in order."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return [
            step.wait_for_event(f"item-{index}", type="item", timeout="5 minutes").payload
            for index in range(event.payload["count"])
        ]


class Sleeper(WorkflowEntrypoint):
    """A step, a durable sleep of ``seconds``, and a step."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        step.do("before", lambda: effects.call("before", 1))
        step.sleep("nap", event.payload["seconds"])
        return step.do("after", lambda: effects.call("after", 2))


class Flaky(WorkflowEntrypoint):
    """Step ``charge`` fails the first time it ever runs; its retry is an hour later."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])

        def charge() -> str:
            effects.call("charge", None)
            if effects.count("charge") == 1:
                raise ConnectionError("gateway timeout")
            return "charged"

        retries = {"limit": 2, "delay": "1 hour", "backoff": "constant"}
        return step.do("charge", charge, retries=retries)


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {
    "pipeline": Pipeline,
    "fan-out": FanOut,
    "approval": Approval,
    "collector": Collector,
    "sleeper": Sleeper,
    "flaky": Flaky,
}


def make_client(
    store_dir: str | Path, *, clock: Clock | None = None, settings: Settings | None = None
) -> WorkflowClient:
    """A client over a file store in ``store_dir`` that knows :data:`WORKFLOWS`."""
    return WorkflowClient(FileStore(store_dir), WORKFLOWS, clock=clock, settings=settings)


# --- helpers for the tests themselves ---------------------------------------------------


def wait_until(
    condition: Callable[[], bool], what: str, child: subprocess.Popen[str] | None = None
) -> None:
    """Poll ``condition`` until it holds; fail if ``child`` dies first or nothing happens."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if child is not None and child.poll() is not None:
            _, stderr = child.communicate()
            raise AssertionError(f"child exited with {child.returncode} before {what}:\n{stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


class Children:
    """Driver scripts run as child processes; any still running at teardown are killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, driver: str, *args: object, block_at: str | None = None
    ) -> subprocess.Popen[str]:
        """Start ``tests/drivers/<driver>.py``; ``block_at`` names a point where it blocks."""
        env = {**os.environ, "PYTHONPATH": str(_REPO_ROOT)}
        env.pop(BLOCK_ENV, None)
        if block_at is not None:
            env[BLOCK_ENV] = block_at
        child = subprocess.Popen(
            [
                sys.executable,
                str(_REPO_ROOT / "tests" / "drivers" / f"{driver}.py"),
                *map(str, args),
            ],
            cwd=_REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(child)
        return child

    @staticmethod
    def finish(child: subprocess.Popen[str]) -> tuple[int, Any]:
        """Wait for ``child``; return its exit status and its JSON output."""
        stdout, stderr = child.communicate(timeout=PATIENCE_SECONDS)
        assert child.returncode in (0, 5), f"child failed ({child.returncode}):\n{stderr}"
        return child.returncode, json.loads(stdout) if stdout.strip() else None

    def run(self, driver: str, *args: object) -> Any:
        """Run a driver to its end; return its JSON output."""
        code, output = self.finish(self.start(driver, *args))
        assert code == 0, output
        return output

    @staticmethod
    def kill(child: subprocess.Popen[str]) -> None:
        """SIGKILL ``child`` and reap it."""
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=PATIENCE_SECONDS)
        assert child.returncode == -signal.SIGKILL

    def close(self) -> None:
        for child in self.started:
            if child.poll() is None:
                self.kill(child)


def journal_path(store_dir: Path, instance_id: str) -> Path:
    return store_dir / "journals" / f"{instance_id}.jsonl"


def read_journal_strictly(path: Path) -> list[Record]:
    """Decode every line of a journal, requiring each to be complete."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "journal ends in a torn line"
    return [decode_record(json.loads(line)) for line in data.split(b"\n")[:-1]]


def assert_journal_sane(path: Path) -> list[Record]:
    """Every line parses, and records come in an order one writer could have made."""
    records = read_journal_strictly(path)
    assert isinstance(records[0], Created)
    assert not any(isinstance(record, Created) for record in records[1:])
    started_attempts: set[tuple[str, int]] = set()
    running = False
    for record in records[1:]:
        if isinstance(record, RunStarted):
            running = True
        elif isinstance(record, AttemptStarted):
            assert running, f"attempt of {record.step!r} before any run started"
            started_attempts.add((record.step, record.attempt))
        elif isinstance(record, StepCompleted) and record.kind == "do":
            assert (record.step, record.attempt) in started_attempts, record
    return records


def outputs(records: list[Record]) -> list[Any]:
    """The outputs of every ``finished`` record, oldest first."""
    return [record.output for record in records if isinstance(record, Finished)]
