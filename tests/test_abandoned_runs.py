"""Callbacks run inline on the workflow's thread; a timeout abandons that whole thread.

The run goes on on a fresh thread that replays the journal up to the step that
timed out; the abandoned thread, whatever its code does once its callback
returns, never writes to the store again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wfcli import (
    FakeClock,
    FileStore,
    InstanceHandle,
    StepContext,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.client.replay import replay_instance
from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    InboxMessage,
    MessageAction,
    RunStarted,
    StepCompleted,
    Warned,
)
from wfcli.core.settings import Settings
from wfcli.core.state import fold
from wfcli.engine.signals import Abandoned
from wfcli.engine.step import NullObserver, StepRun
from wfcli.store.contract import Owner

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
WAIT = 30  # seconds a test waits for something that happens at once unless broken


def client_for(store_dir: Path, workflow: type[WorkflowEntrypoint]) -> WorkflowClient:
    return WorkflowClient(FileStore(store_dir, durable=False), {"wf": workflow}, clock=FakeClock())


def start(store_dir: Path, workflow: type[WorkflowEntrypoint]) -> InstanceHandle:
    return client_for(store_dir, workflow).create("wf")


def kinds(handle: InstanceHandle) -> list[str]:
    return [type(record).__name__ for record in handle.client.history(handle.id)]


class TriesToWriteWhenAbandoned(WorkflowEntrypoint):
    """Attempt 1 of ``stuck`` hangs past its timeout. Attempt 2, on the fresh thread,
    lets attempt 1's callback return and waits until the abandoned thread has done
    its worst: its code catches what it is told, and tries another step."""

    release_first: ClassVar[threading.Event]
    abandoned_done: ClassVar[threading.Event]
    seen: ClassVar[list[str]]

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        cls = type(self)

        def stuck(context: StepContext) -> str:
            if context.attempt == 1:
                cls.release_first.wait(WAIT)
                return "from the abandoned attempt"
            cls.release_first.set()
            cls.abandoned_done.wait(WAIT)
            return "from the retry"

        step.do("before", lambda: "before")
        try:
            # Attempt 2 waits for the abandoned thread: the timeout leaves it ample time.
            value = step.do("stuck", stuck, retries={"limit": 1, "delay": 0}, timeout=2)
        except BaseException as error:  # the abandoned thread: swallow it and carry on
            cls.seen.append(type(error).__name__)
            try:
                step.do("after", lambda: cls.seen.append("after ran") or "after")
            except BaseException as again:
                cls.seen.append(type(again).__name__)
            cls.abandoned_done.set()
            raise
        step.do("after", lambda: "after")
        return value


def test_a_timed_out_thread_can_never_write_even_when_its_code_tries(store_dir: Path) -> None:
    TriesToWriteWhenAbandoned.release_first = threading.Event()
    TriesToWriteWhenAbandoned.abandoned_done = threading.Event()
    TriesToWriteWhenAbandoned.seen = []
    handle = start(store_dir, TriesToWriteWhenAbandoned)

    final = handle.execute()

    assert TriesToWriteWhenAbandoned.abandoned_done.is_set()
    assert TriesToWriteWhenAbandoned.seen == ["Abandoned", "Abandoned"]  # "after" never ran
    assert (final.status, final.output) == ("complete", "from the retry")
    assert kinds(handle) == [
        "Created",
        "RunStarted",
        "AttemptStarted",
        "StepCompleted",  # before
        "AttemptStarted",  # stuck, attempt 1: timed out
        "AttemptFailed",
        "AttemptStarted",
        "StepCompleted",  # stuck, attempt 2
        "AttemptStarted",
        "StepCompleted",  # after
        "Finished",
    ]
    history = handle.client.history(handle.id)
    failure = next(r for r in history if isinstance(r, AttemptFailed))
    assert (failure.step, failure.attempt, failure.error.name) == ("stuck", 1, "StepTimeoutError")
    assert failure.retry_at is not None  # a timeout is retried after its delay, not at once


class Steps(WorkflowEntrypoint):
    release: ClassVar[threading.Event]
    calls: ClassVar[list[str]]

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        cls = type(self)

        def call(name: str) -> Any:
            def callback(context: StepContext) -> str:
                cls.calls.append(f"{name}#{context.attempt}")
                if name == "b" and context.attempt < 3:
                    cls.release.wait(WAIT)
                return name

            return callback

        retries = {"limit": 3, "delay": 0}
        return [
            step.do(name, call(name), retries=retries, timeout=0.5 if name == "b" else None)
            for name in "abc"
        ]


def test_after_each_timeout_the_run_replays_and_no_settled_step_runs_again(
    store_dir: Path,
) -> None:
    Steps.release, Steps.calls = threading.Event(), []
    handle = start(store_dir, Steps)
    try:
        final = handle.execute()
    finally:
        Steps.release.set()

    assert (final.status, final.output) == ("complete", ["a", "b", "c"])
    assert Steps.calls == ["a#1", "b#1", "b#2", "b#3", "c#1"]
    history = handle.client.history(handle.id)
    assert [r.attempt for r in history if isinstance(r, AttemptFailed)] == [1, 2]
    assert sum(isinstance(r, StepCompleted) for r in history) == 3
    # A fresh thread carries the same run on: one run_started.
    assert sum(isinstance(r, RunStarted) for r in history) == 1
    report = replay_instance(client_for(store_dir, Steps), handle.id)
    assert report.outcome == "returned"
    assert report.steps_replayed == report.history_steps == 3


class Announces(NullObserver):
    def __init__(self) -> None:
        self.finished: list[tuple[str, bool]] = []

    def step_finished(self, name: str, kind: str, ok: bool, replayed: bool) -> None:  # type: ignore[override]
        self.finished.append((name, replayed))


class HangsOnce(WorkflowEntrypoint):
    release: ClassVar[threading.Event]

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.do("first", lambda: 1)

        def hangs(context: StepContext) -> int:
            if context.attempt == 1:
                type(self).release.wait(WAIT)
            return 2

        return step.do("hangs", hangs, retries={"limit": 1, "delay": 0}, timeout=0.5)


def test_the_steps_replayed_after_a_timeout_are_not_announced_again(store_dir: Path) -> None:
    HangsOnce.release = threading.Event()
    observer = Announces()
    handle = start(store_dir, HangsOnce)
    try:
        final = handle.client.execute(handle.id, observer=observer)
    finally:
        HangsOnce.release.set()

    assert final.output == 2
    assert observer.finished == [("first", False), ("hangs", False)]


def test_a_ctrl_c_delivered_to_the_workflow_thread_stops_the_run(store_dir: Path) -> None:
    """Linux may deliver a process's SIGINT to any thread; Python handles it on the main
    thread, which watches the workflow's thread and must notice in time."""

    class InterruptsItself(WorkflowEntrypoint):
        def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            def callback() -> None:
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # this thread only
                release.wait(WAIT)

            step.do("interrupted", callback)
            return "never"

    release = threading.Event()
    handle = start(store_dir, InterruptsItself)
    try:
        with pytest.raises(KeyboardInterrupt):
            handle.execute()
        written = kinds(handle)
    finally:
        release.set()

    assert written == ["Created", "RunStarted", "AttemptStarted"]
    assert handle.client.status(handle.id).interrupted


_CHILD = """
import os, signal, sys, threading
from wfcli import FileStore, StepContext, WorkflowClient, WorkflowEntrypoint

class KilledInRetry(WorkflowEntrypoint):
    def run(self, event, step):
        def callback(context: StepContext) -> str:
            if context.attempt == 1:
                threading.Event().wait(60)  # hangs: timed out, its thread abandoned
            if context.attempt == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return f"attempt {context.attempt}"
        return step.do("step", callback, retries={"limit": 3, "delay": 0}, timeout=1)

client = WorkflowClient(FileStore(sys.argv[1]), {"wf": KilledInRetry})
client.execute(sys.argv[2])
"""


def test_a_process_killed_while_an_abandoned_thread_runs_resumes_with_attempt_three(
    store_dir: Path,
) -> None:
    client = WorkflowClient(FileStore(store_dir), {"wf": KilledInRetry})
    handle = client.create("wf")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store_dir), handle.id],
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL
    history = client.history(handle.id)
    assert [type(r).__name__ for r in history[2:]] == [
        "AttemptStarted",
        "AttemptFailed",
        "AttemptStarted",
    ]
    assert client.status(handle.id).interrupted

    final = client.execute(handle.id)

    assert (final.status, final.output) == ("complete", "attempt 3")
    history = client.history(handle.id)
    failures = [r.error.name for r in history if isinstance(r, AttemptFailed)]
    assert failures == ["StepTimeoutError", "AttemptLostError"]
    assert [r.attempt for r in history if isinstance(r, AttemptStarted)] == [1, 2, 3]


class KilledInRetry(WorkflowEntrypoint):
    """The parent's copy of the child's workflow, to resume it in this process."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def callback(context: StepContext) -> str:
            return f"attempt {context.attempt}"

        return step.do("step", callback, retries={"limit": 3, "delay": 0}, timeout=1)


@pytest.mark.parametrize("action", ["pause", "resume"])  # a record to journal; none, a discard
def test_an_abandoned_run_reaches_the_store_neither_by_records_nor_by_discards(
    store_dir: Path, action: MessageAction
) -> None:
    store = FileStore(store_dir, durable=False)
    client = WorkflowClient(store, {"wf": Steps}, clock=FakeClock())
    instance_id = client.create("wf").id
    store.post(instance_id, InboxMessage(message_id="m1", action=action, sent_at=START))
    before = store.journal_path(instance_id).read_bytes()
    with store.acquire(instance_id, Owner.current()) as lease:
        run = StepRun(lease, fold(lease.read()), FakeClock(), Settings(), NullObserver())
        run.abandon()
        with pytest.raises(Abandoned):
            run.record(Warned(at=START, step="s", message="never"))
        with pytest.raises(Abandoned):
            run.apply_inbox()
        assert run.successor().timed_out is None  # no attempt was running
    assert store.journal_path(instance_id).read_bytes() == before
    assert [message.message_id for message in store.pending(instance_id)] == ["m1"]
