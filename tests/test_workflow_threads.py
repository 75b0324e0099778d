"""The threads that run workflows' code are kept between runs: each run still gets a thread
of its own, in a copy of its caller's context, and a fork starts without the parent's."""

from __future__ import annotations

import contextvars
import gc
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wfcli import FileStore, WorkflowClient, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wfcli.engine.step import NullObserver

WAIT = 10.0
caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var", default="unset")
run_var: contextvars.ContextVar[str] = contextvars.ContextVar("run_var", default="unset")


class Notes(WorkflowEntrypoint):
    """Notes the thread it runs on and the context variables it sees, then sets one."""

    seen: ClassVar[list[tuple[threading.Thread, str, str, str]]] = []

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        thread = threading.current_thread()  # kept here: no other thread gets its identity
        self.seen.append((thread, thread.name, caller_var.get(), run_var.get()))
        run_var.set("set by a run")
        return step.do("one", lambda: 1)


def client(store: Path, workflow: type[WorkflowEntrypoint] = Notes) -> WorkflowClient:
    return WorkflowClient(FileStore(store, durable=False), {"w": workflow})


def test_runs_one_after_another_share_a_thread_each_with_its_callers_context(
    tmp_path: Path,
) -> None:
    Notes.seen.clear()
    workflows = client(tmp_path)
    for name in ("first", "second", "third"):
        caller_var.set(name)
        handle = workflows.create("w", instance_id=name)
        assert workflows.execute(handle.id).output == 1

    threads = {thread for thread, _, _, _ in Notes.seen}
    assert len(threads) == 1  # kept, not started again
    assert threads != {threading.current_thread()}
    assert [(name, caller, run) for _, name, caller, run in Notes.seen] == [
        ("wfcli-workflow", "first", "unset"),  # a variable a run set stays in that run
        ("wfcli-workflow", "second", "unset"),
        ("wfcli-workflow", "third", "unset"),
    ]


def test_a_kept_thread_keeps_nothing_of_the_run_it_ran(tmp_path: Path) -> None:
    workflows = client(tmp_path)
    observer = NullObserver()  # the run holds it, as it holds its state and its lease
    assert workflows.execute(workflows.create("w").id, observer=observer).output == 1
    observed = weakref.ref(observer)
    del observer
    gc.collect()
    assert observed() is None


class Meets(WorkflowEntrypoint):
    """Waits in a step until every run in progress has reached it."""

    barrier: ClassVar[threading.Barrier]
    threads: ClassVar[set[threading.Thread]] = set()

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        Meets.threads.add(threading.current_thread())
        return step.do("meet", lambda: Meets.barrier.wait(WAIT))


def test_runs_at_the_same_time_get_a_thread_each(tmp_path: Path) -> None:
    runs = 5  # more than are kept idle
    Meets.barrier = threading.Barrier(runs)
    Meets.threads = set()
    workflows = client(tmp_path, Meets)
    ids = [workflows.create("w").id for _ in range(runs)]
    outputs: dict[str, object] = {}

    def execute(instance_id: str) -> None:
        outputs[instance_id] = workflows.execute(instance_id).status

    callers = [threading.Thread(target=execute, args=(each,)) for each in ids]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(WAIT * 2)

    assert outputs == dict.fromkeys(ids, "complete")
    assert len(Meets.threads) == runs
    others = client(tmp_path / "others")
    for _ in range(3):  # and afterwards, runs go on as before
        assert others.execute(others.create("w").id).output == 1


def test_a_forked_process_runs_workflows_on_threads_of_its_own(tmp_path: Path) -> None:
    workflows = client(tmp_path)
    workflows.execute(workflows.create("w", instance_id="before").id)  # a thread kept idle
    workflows.create("w", instance_id="in-child")

    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        code = 1
        try:
            code = 0 if client(tmp_path).execute("in-child").output == 1 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + WAIT
    while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked process's run never ran: it waited for a thread it lacks")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert client(tmp_path).status("in-child").output == 1
