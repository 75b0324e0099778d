"""The executor: runs one instance from its journal to its next suspension point.

Synchronous and deterministic. It takes the instance's lease (one executor per
instance, across processes), folds the journal, applies the inbox, and calls
the workflow's ``run`` with a :class:`~wfcli.step.WorkflowStep` that serves
journaled steps from the record and runs the rest. The run ends complete,
errored, terminated, paused or waiting, and that ending is journaled.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from wfcli.core.clock import Clock
from wfcli.core.codec import (
    Errored,
    ErrorInfo,
    Finished,
    InboxMessage,
    RollbackStarted,
    RunStarted,
    Stopped,
    Suspended,
    Terminated,
    check_json,
    format_time,
    traceback_of,
)
from wfcli.core.settings import Settings
from wfcli.core.state import InstanceState, fold
from wfcli.engine.callbacks import workflow_code
from wfcli.engine.rollback import roll_back
from wfcli.engine.signals import (
    Abandoned,
    Cancelled,
    DeadlinePassed,
    Restart,
    RollingBack,
    Stop,
    StoreFailed,
    Suspend,
)
from wfcli.engine.step import NullObserver, RunObserver, StepInterceptor, StepRun, WorkflowStep
from wfcli.engine.workflow import Env, WorkflowEntrypoint, WorkflowEvent, freeze
from wfcli.errors import (
    InstanceBusyError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
    StepFailedError,
    StoreFaultError,
    WorkflowTimeoutError,
)
from wfcli.store.contract import JournalStore, Lease, Owner

__all__ = ["Executor", "WorkflowResolver"]

WorkflowResolver = Callable[[str], type[WorkflowEntrypoint]]


class _WorkflowThreads:
    """Daemon threads that run workflows' code, kept between runs (at most ``keep`` of
    them idle): handing a run to a thread that waits for one costs a wake-up, where
    starting a thread costs its creation and a handshake with the starting thread."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[_WorkflowThreads._Thread] = []
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child: none of the parent's threads is there (nor its lock's holder)."""
        self._lock = threading.Lock()
        self._idle = []

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` (which raises nothing) on an idle thread, or on a new one."""
        with self._lock:
            thread = self._idle.pop() if self._idle else None
        if thread is None:
            thread = self._Thread(self)
        thread.give(job)

    def _rest(self, thread: _WorkflowThreads._Thread) -> bool:
        """Keep ``thread`` for a later run, unless enough are kept; whether it was."""
        with self._lock:
            if len(self._idle) >= self._keep:
                return False
            self._idle.append(thread)
            return True

    class _Thread:
        def __init__(self, threads: _WorkflowThreads) -> None:
            self._threads = threads
            self._job: Callable[[], None] | None = None
            self._given = threading.Lock()  # held while there is no job
            self._given.acquire()
            threading.Thread(target=self._serve, name="wfcli-workflow", daemon=True).start()

        def give(self, job: Callable[[], None]) -> None:
            self._job = job
            self._given.release()

        def _serve(self) -> None:
            while True:
                self._given.acquire()
                job, self._job = self._job, None
                assert job is not None
                job()
                job = None  # nothing of the run stays alive while the thread waits
                if not self._threads._rest(self):
                    return


_THREADS = _WorkflowThreads(keep=2)  # one per run in progress; a child run inline needs one more


class _WorkflowThread:
    """A run of ``target`` on a thread of its own, in a copy of the caller's context."""

    def __init__(self, target: Callable[[], None], wake: threading.Event) -> None:
        self._target = target
        self._wake = wake
        self._done = False
        self._error: BaseException | None = None
        _THREADS.run(functools.partial(contextvars.copy_context().run, self._main))

    def _main(self) -> None:
        try:
            self._target()
        except Abandoned:
            pass
        except BaseException as error:  # raised again on the waiting thread
            self._error = error
        finally:
            self._done = True
            self._wake.set()

    def ended(self) -> bool:
        return self._done

    def outcome(self) -> None:
        """Raise what the thread raised, if anything."""
        if self._error is not None:
            raise self._error


class Executor:
    """Runs instances of the workflows that ``resolve`` finds by name."""

    def __init__(
        self,
        store: JournalStore,
        resolve: WorkflowResolver,
        env: Callable[[], Env],
        clock: Clock,
        settings: Settings,
    ) -> None:
        self.store = store
        self.resolve = resolve
        self.env = env
        self.clock = clock
        self.settings = settings

    def execute(
        self,
        instance_id: str,
        *,
        observer: RunObserver | None = None,
        max_inline_wait: timedelta | None = None,
        cancel: Callable[[], bool] | None = None,
        interceptor: StepInterceptor | None = None,
        lease: Lease | None = None,
    ) -> InstanceState:
        """Run the instance until it completes, errors, pauses, stops or must wait.

        Raises :class:`InstanceBusyError` if another process executes it, and the
        store's error (:class:`StoreFaultError`, :class:`LeaseLostError`, or
        :class:`JournalCorruptError` for a damaged inbox) if the store fails under the
        run: then nothing more is journaled (never ``errored``: it is not the
        workflow's error) and the instance is resumable. A
        ``KeyboardInterrupt`` or crash leaves the instance ``running`` in its
        journal (it shows as interrupted and any later ``execute`` recovers it).
        ``cancel`` is checked between steps; when it returns true the run stops
        there without running the next step and journals ``Stopped``: the instance
        is ``queued`` again. ``interceptor`` is
        for :mod:`wfcli.testing` (mocked steps, skipped waits). ``lease`` is one
        already taken on the instance (a worker's claim); it is released at the end.
        """
        settings = self.settings
        if max_inline_wait is not None:
            settings = replace(settings, max_inline_wait=max_inline_wait)
        if lease is None:
            lease = self.store.acquire(instance_id, Owner.current())
        try:
            state = self._execute(lease, settings, observer or NullObserver(), cancel, interceptor)
        except StoreFailed as failure:
            raise failure.error from None
        finally:
            lease.release()
        return self.settle_inbox(instance_id) or state

    def _execute(
        self,
        lease: Lease,
        settings: Settings,
        observer: RunObserver,
        cancel: Callable[[], bool] | None,
        interceptor: StepInterceptor | None,
    ) -> InstanceState:
        state = fold(lease.read())
        run = StepRun(
            lease,
            state,
            self.clock,
            settings,
            observer,
            cancel=cancel,
            interceptor=interceptor,
            instances=_Instances(self, settings, cancel),
        )
        run.apply_inbox()
        if state.terminal or state.status == "paused":
            return state
        workflow = self.resolve(state.workflow)
        while True:
            thread = _WorkflowThread(functools.partial(self._run, run, workflow), run.runner.wake)
            try:
                ended = run.runner.watch(thread.ended)
            except BaseException:  # Ctrl-C, SIGTERM's exit: stop here, write nothing more
                run.abandon()
                raise
            if ended:
                thread.outcome()
                return state
            successor = run.successor()
            run.abandon()  # its callback outlived the attempt: carry on without that thread
            run = successor

    def _run(self, run: StepRun, workflow: type[WorkflowEntrypoint]) -> None:
        """Run the code until it ends (again from the top after a restart)."""
        while True:
            try:
                self._run_once(run, workflow)
            except Restart:
                continue
            return

    def _run_once(self, run: StepRun, workflow: type[WorkflowEntrypoint]) -> None:
        state = run.state
        owner = run.lease.owner
        run.begin()
        if run.carries_on:
            run.carries_on = False  # a successor goes on with the abandoned run's run
        else:
            run.record(RunStarted(at=self.clock.now(), pid=owner.pid, host=owner.host))
        event = WorkflowEvent(
            payload=freeze(state.params),
            timestamp=state.created,
            instance_id=state.instance_id,
            workflow_name=state.workflow,
            schedule=freeze(state.schedule),
        )

        def code(step: WorkflowStep) -> object:
            with workflow_code(state.instance_id):
                return workflow(self.env()).run(event, step)

        try:
            if state.rolling_back:  # after a crash, a wait or a terminate --rollback
                self._roll_back(run, code)
            else:
                self._run_code(run, code)
        except Suspend as signal:
            wait = signal.wait
            run.record(
                Suspended(
                    at=self.clock.now(),
                    wait=wait.kind,
                    step=wait.step,
                    until=wait.until,
                    event_type=wait.event_type,
                )
            )
        except Stop:
            pass  # a pause or termination is journaled already
        except Cancelled:
            run.record(Stopped(at=self.clock.now(), pid=owner.pid, host=owner.host))
        except (StoreFaultError, LeaseLostError) as error:  # from a binding, say: not the run's
            raise StoreFailed(error) from None

    def _run_code(self, run: StepRun, code: Callable[[WorkflowStep], object]) -> None:
        """Run the workflow's code and journal how it ended (rolling back if it must)."""
        try:
            output = code(WorkflowStep(run))
            encoded = check_json(output, "workflow output", run.settings.max_value_bytes)
        except RollingBack:
            self._roll_back(run, code)
        except DeadlinePassed as passed:
            timeout = WorkflowTimeoutError(passed.step, deadline=format_time(passed.deadline))
            self._fail(run, code, ErrorInfo.of(timeout))
        except (StoreFaultError, LeaseLostError):
            raise  # from a binding, say: not the run's error
        except Exception as error:
            if not run.diverged:  # the code caught the Stop of a divergence: nothing ends
                info = (
                    self._step_failure(run.state, error)
                    if isinstance(error, StepFailedError)
                    else ErrorInfo.of(error)
                )
                self._fail(run, code, info)
        else:
            if not run.diverged:
                run.record(Finished(at=self.clock.now(), output=json.loads(encoded)))

    @staticmethod
    def _step_failure(state: InstanceState, error: StepFailedError) -> ErrorInfo:
        """The instance's error when a failed step ends it: the step's error, traced from
        ``run`` down into the step's callback."""
        step = state.steps.get(error.step)
        inner = None if step is None or step.error is None else step.error.traceback
        return ErrorInfo(error.error_name, error.error_message, traceback_of(error, inner))

    def _fail(self, run: StepRun, code: Callable[[WorkflowStep], object], error: ErrorInfo) -> None:
        """The instance fails for good with ``error``: roll back, then journal ``errored``."""
        plan = run.state.rollback_plan()
        if not plan:
            run.record(Errored(at=self.clock.now(), error=error))
            return
        run.record(
            RollbackStarted(
                at=self.clock.now(), reason="errored", plan=plan, error=error, message_id=None
            )
        )
        self._roll_back(run, code)

    def _roll_back(self, run: StepRun, code: Callable[[WorkflowStep], object]) -> None:
        """Run what is left of the instance's rollback, then journal how the instance ends.

        The code runs first with every step served from the journal, so that each
        step it reaches hands over its rollback (callbacks are not journaled).
        """
        run.collect_rollbacks(code)
        roll_back(run)
        rollback = run.state.rollback
        assert rollback is not None
        now = self.clock.now()
        if rollback.reason == "terminated":
            assert rollback.message_id is not None
            run.record(Terminated(at=now, message_id=rollback.message_id))
        else:
            assert rollback.error is not None
            run.record(Errored(at=now, error=rollback.error))

    def apply_inbox(self, instance_id: str) -> InstanceState:
        """Apply pending messages now if no process executes the instance.

        Raises :class:`InstanceBusyError` if one does (it applies them itself).
        """
        with self.store.acquire(instance_id, Owner.current()) as lease:
            state = fold(lease.read())
            try:
                StepRun(
                    lease,
                    state,
                    self.clock,
                    self.settings,
                    NullObserver(),
                    instances=_Instances(self, self.settings),
                ).apply_inbox()
            except StoreFailed as failure:
                raise failure.error from None
            return state

    def settle_inbox(self, instance_id: str) -> InstanceState | None:
        """Apply messages posted while the lease was being released.

        A sender posts first and then tries the lock, and a lease holder looks at
        the inbox after releasing, so no message is left unapplied. Returns the
        state after the last message applied here, None if none was.
        """
        state = None
        while self.store.pending(instance_id):
            try:
                state = self.apply_inbox(instance_id)
            except (InstanceBusyError, InstanceNotFoundError):
                break
        return state


class _Instances:
    """The other instances of the executor's store, as a run sees them (children)."""

    def __init__(
        self, executor: Executor, settings: Settings, cancel: Callable[[], bool] | None = None
    ) -> None:
        self.executor = executor
        self.settings = settings
        self.cancel = cancel

    def state(self, instance_id: str) -> InstanceState | None:
        try:
            return fold(self.executor.store.read(instance_id))
        except InstanceNotFoundError:
            return None
        except (StoreFaultError, LeaseLostError, JournalCorruptError) as error:
            raise StoreFailed(error) from None

    def run(self, instance_id: str) -> None:
        with contextlib.suppress(InstanceBusyError, InstanceNotFoundError):
            try:
                self.executor.execute(
                    instance_id, max_inline_wait=self.settings.max_inline_wait, cancel=self.cancel
                )
            except (StoreFaultError, LeaseLostError, JournalCorruptError) as error:
                raise StoreFailed(error) from None

    def wake(self, instance_id: str) -> None:
        message = InboxMessage(
            message_id=uuid.uuid4().hex, action="wake", sent_at=self.executor.clock.now()
        )
        # The parent also looks by itself (CHILD_POLL): a failed post only delays it.
        with contextlib.suppress(StoreFaultError, InstanceNotFoundError, JournalCorruptError):
            self.executor.store.post(instance_id, message)
