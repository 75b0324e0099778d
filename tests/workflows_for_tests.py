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
    NonRetryableError,
    RollbackContext,
    Settings,
    StepContext,
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
    "BINDINGS",
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


_QUICK_RETRY = {"limit": 2, "delay": "0.01 seconds", "backoff": "constant"}


class Saga(WorkflowEntrypoint):
    """``reserve``, ``charge`` and ``ship``, each with a rollback (``undo-<step>``).

    Params: ``fail`` names the step that fails for good (else the saga completes,
    unless ``wait`` makes it wait for an ``approval`` event after ``charge``);
    ``broken`` names a rollback that fails for good, ``flaky`` one whose first
    call fails. Each rollback returns what it was given, to the effects folder.
    """

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        fail = event.payload.get("fail")

        def forward(name: str, value: Any) -> Callable[[], Any]:
            def call() -> Any:
                effects.call(name, value)
                if fail == name:
                    raise NonRetryableError(f"{name} is out of order")
                return value

            return call

        def undo(name: str) -> Callable[[RollbackContext], None]:
            def call(rollback: RollbackContext) -> None:
                effects.call(f"undo-{name}", None)
                given = {
                    "output": rollback.output,
                    "error": None if rollback.error is None else rollback.error.error_message,
                    "attempt": rollback.attempt,
                    "limit": rollback.config.retries.limit,
                }
                (effects.folder / f"undo-{name}.given").write_text(json.dumps(given))
                if event.payload.get("broken") == name:
                    raise NonRetryableError(f"cannot undo {name}")
                if event.payload.get("flaky") == name and effects.count(f"undo-{name}") == 1:
                    raise ConnectionError("refund service busy")

            return call

        config = {"retries": _QUICK_RETRY, "timeout": "10 seconds"}
        order = step.do("reserve", forward("reserve", "R-1"), rollback=undo("reserve"))
        charge = step.do(
            "charge",
            forward("charge", {"id": "C-1", "order": order}),
            rollback=undo("charge"),
            rollback_config=config,
        )
        if event.payload.get("wait"):
            step.wait_for_event("approval", type="approve", timeout="1 hour")
        shipped = step.do("ship", forward("ship", "S-1"), rollback=undo("ship"))
        return {"order": order, "charge": charge["id"], "shipped": shipped}


class ParallelSaga(WorkflowEntrypoint):
    """Three parallel steps with rollbacks, then ``settle`` fails."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        names = ("p1", "p2", "p3")
        step.parallel(
            {name: (lambda name=name: effects.call(name, name)) for name in names},
            rollbacks={
                name: (lambda name=name: effects.call(f"undo-{name}", None)) for name in names
            },
        )

        def settle() -> None:
            raise NonRetryableError("settlement refused")

        step.do("settle", settle)


class Deadline(WorkflowEntrypoint):
    """``book`` (with a rollback), then per ``wait``: a ``sleep``, an ``event`` wait, or
    a ``slow`` step; then ``late``. Its deadline comes from ``--timeout``/``timeout``."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        step.do(
            "book",
            lambda: effects.call("book", 1),
            rollback=lambda: effects.call("undo-book", None),
        )
        wait = event.payload["wait"]
        if wait == "sleep":
            step.sleep("nap", "1 hour")
        elif wait == "event":
            step.wait_for_event("approval", type="approve", timeout="1 hour")
        else:
            step.do("slow", lambda: time.sleep(event.payload.get("seconds", 0.3)))
        return step.do("late", lambda: effects.call("late", 2))


class Parent(WorkflowEntrypoint):
    """Creates instance ``child`` (params ``child``) in a step and waits for its output."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        child_id = event.payload["child_id"]
        step.do(
            "spawn",
            lambda: self.env.CHILD.create(params=event.payload["child"], id=child_id).id,
        )
        result = step.wait_for_instance("join", child_id, timeout="1 hour")
        return {"child said": result}


class Child(WorkflowEntrypoint):
    """``work`` (fails for good with ``fail``), after a ``sleep`` of ``nap`` seconds."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        effects = Effects(event.payload["dir"])
        if event.payload.get("nap"):
            step.sleep("nap", event.payload["nap"])

        def work() -> str:
            effects.call("work", None)
            if event.payload.get("fail"):
                raise NonRetryableError("child broke")
            return "hello"

        return step.do("work", work)


class Careless(WorkflowEntrypoint):
    """Creates an instance outside a step (refused)."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return self.env.CHILD.create(params={"dir": event.payload["dir"]}).id


class AsyncSteps(WorkflowEntrypoint):
    """An ``async def`` step, one that times out on its first attempt, and an async
    rollback (whose first attempt times out with ``slow_undo``)."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        import asyncio

        effects = Effects(event.payload["dir"])

        async def fetch(ctx: StepContext) -> Any:
            await asyncio.sleep(0.01)
            return {"attempt": ctx.attempt, "timeout": ctx.config.timeout.total_seconds()}

        async def slow_then_quick(ctx: StepContext) -> int:
            effects.call("slow", None)
            if ctx.attempt == 1:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    effects.call("cancelled", None)
                    raise
            return ctx.attempt

        async def undo(rollback: RollbackContext) -> None:
            effects.call("undo-fetch", None)
            if event.payload.get("slow_undo") and rollback.attempt == 1:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    effects.call("undo-cancelled", None)
                    raise

        fetched = step.do(
            "fetch",
            fetch,
            rollback=undo,
            rollback_config={"timeout": "0.3 seconds", "retries": _QUICK_RETRY},
        )
        attempts = step.do("slow", slow_then_quick, timeout="0.3 seconds", retries=_QUICK_RETRY)
        if event.payload.get("fail"):
            step.do("boom", lambda: (_ for _ in ()).throw(NonRetryableError("boom")))
        return {"fetched": fetched, "attempts": attempts}


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {
    "pipeline": Pipeline,
    "fan-out": FanOut,
    "approval": Approval,
    "collector": Collector,
    "sleeper": Sleeper,
    "flaky": Flaky,
    "saga": Saga,
    "parallel-saga": ParallelSaga,
    "deadline": Deadline,
    "parent": Parent,
    "child": Child,
    "careless": Careless,
    "async-steps": AsyncSteps,
}
BINDINGS = {"CHILD": "child"}


def make_client(
    store_dir: str | Path, *, clock: Clock | None = None, settings: Settings | None = None
) -> WorkflowClient:
    """A client over a file store in ``store_dir`` that knows :data:`WORKFLOWS`."""
    return WorkflowClient(
        FileStore(store_dir), WORKFLOWS, bindings=BINDINGS, clock=clock, settings=settings
    )


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
