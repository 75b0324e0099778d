"""A store fault reaches the engine as a signal workflow code cannot catch; a callback's
``BaseException`` fails its attempt; a worker tries a store-faulted instance again."""

from __future__ import annotations

import errno
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.faults import Fault, faulty_disk
from wfcli import (
    FakeClock,
    FileStore,
    Settings,
    StepContext,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.client.worker import NullWorkerEvents, Worker
from wfcli.core.codec import AttemptFailed, Errored
from wfcli.errors import StoreFaultError, WorkflowError

CALLS: list[str] = []


class Swallower(WorkflowEntrypoint):
    """Wraps its steps in ``except Exception`` and tries another step on any error."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            a = step.do("a", lambda: CALLS.append("a") or 1)
            return step.do("b", lambda: CALLS.append("b") or a + 1)
        except Exception:
            return step.do("fallback", lambda: CALLS.append("fallback") or "swallowed")


def client_for(root: Path, **workflows: type[WorkflowEntrypoint]) -> WorkflowClient:
    return WorkflowClient(FileStore(root), workflows, clock=FakeClock())


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    CALLS.clear()


# RunStarted is the first fdatasync of the run, a's result the second, b's the third.
@pytest.mark.parametrize("at", [2, 3])
def test_a_store_fault_cannot_be_swallowed_is_not_errored_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    client = client_for(tmp_path, swallower=Swallower)
    client.create("swallower", instance_id="s")

    with faulty_disk(monkeypatch, Fault("fdatasync", at, errno.EIO)):
        with pytest.raises(StoreFaultError, match="EIO"):
            client.execute("s")
        # Exactly once: the step whose result could not be journaled did not run
        # again in this process, nor did anything after it.
        assert ["a", "b"][: at - 1] == CALLS
        assert not any(isinstance(r, Errored) for r in client.history("s"))
        assert client.status("s").status == "running"  # interrupted, resumable

    assert client.execute("s").output == 2
    assert "fallback" not in CALLS
    lost = [r for r in client.history("s") if isinstance(r, AttemptFailed)]
    assert [r.error.name for r in lost] == ["AttemptLostError"]  # the one in flight


@pytest.mark.parametrize("raised", [SystemExit(0), KeyboardInterrupt(), GeneratorExit()])
def test_a_callback_raising_a_base_exception_fails_its_attempt_and_is_retried(
    tmp_path: Path, raised: BaseException
) -> None:
    class Raiser(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            def body(context: StepContext) -> str:
                CALLS.append(f"attempt {context.attempt}")
                if context.attempt == 1:
                    raise raised
                return "ok"

            return step.do("s", body, retries={"limit": 1, "delay": 0})

    client = client_for(tmp_path, raiser=Raiser)
    client.create("raiser", instance_id="r")

    assert client.execute("r").output == "ok"
    failed = [r for r in client.history("r") if isinstance(r, AttemptFailed)]
    assert [r.error.name for r in failed] == [type(raised).__name__]
    assert CALLS == ["attempt 1", "attempt 2"]


class Poison(BaseException):
    pass


def test_a_custom_base_exception_fails_the_step_for_good_after_its_retries(
    tmp_path: Path,
) -> None:
    class Poisoned(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            def body() -> None:
                CALLS.append("poison")
                raise Poison("no")

            return step.do("s", body, retries={"limit": 2, "delay": 0})

    client = client_for(tmp_path, poisoned=Poisoned)
    client.create("poisoned", instance_id="p")

    final = client.execute("p")
    assert final.status == "errored"
    assert final.error is not None
    assert final.error.name == "Poison"
    assert CALLS == ["poison"] * 3


class Recorder(NullWorkerEvents):
    def __init__(self) -> None:
        self.failures: list[WorkflowError | OSError] = []
        self.done: list[str] = []

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        self.failures.append(error)

    def finished(self, status: Any) -> None:
        self.done.append(status.status)


class Two(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        a = step.do("a", lambda: CALLS.append("a") or 1)
        return step.do("b", lambda: CALLS.append("b") or a + 1)


def test_a_running_worker_tries_a_store_faulted_instance_again_once_the_fault_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = WorkflowClient(FileStore(tmp_path), {"two": Two})  # real time: the backoff is 1 s
    client.create("two", instance_id="t")
    events = Recorder()
    worker = Worker(client, poll_interval=timedelta(milliseconds=50), events=events)

    with faulty_disk(monkeypatch, Fault("write", 3, errno.ENOSPC)):
        thread = threading.Thread(target=worker.run)
        thread.start()
        deadline = time.monotonic() + 20
        while "complete" not in events.done and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.stop()
        thread.join(20)

    assert [type(e) for e in events.failures] == [StoreFaultError]
    assert events.done == ["complete"]
    assert client.status("t").output == 2
    assert CALLS.count("b") == 1


def test_an_inline_wait_never_sleeps_past_its_monotonic_deadline_when_the_clock_goes_back(
    tmp_path: Path,
) -> None:
    class BackwardsClock(FakeClock):
        """Each sleep moves the monotonic time on, but sets the wall clock back an hour."""

        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            with self._mutex:
                self._now -= timedelta(hours=1)

    class Napper(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            step.sleep("nap", "10 seconds")
            return "awake"

    clock = BackwardsClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    settings = Settings(max_inline_wait=timedelta(minutes=1), poll_interval=1.0)
    client = WorkflowClient(FileStore(tmp_path), {"napper": Napper}, clock=clock, settings=settings)
    client.create("napper", instance_id="n")

    done = client.execute("n")

    # By the wall clock the nap is far from over; by the monotonic one it is over.
    assert done.status == "complete"
    assert clock.monotonic() == pytest.approx(10.0)
