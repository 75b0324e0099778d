"""The worker: executes whatever is due, in a loop, a few instances at a time.

:class:`Worker` claims due instances (:meth:`WorkflowClient.claim_due`), runs each on a
thread of its pool with its lease, and tells a :class:`WorkerEvents` what happens; ``wf
worker`` renders those events, and a program or a test can drive a worker the same way.

Waiting for work: between scans a worker sleeps the poll interval. A store that can
tell when new work may be there gives itself a method ``wait_for_work(timeout: float)
-> object`` (a PostgreSQL store listening for notifications, say) that blocks until
then or until ``timeout`` seconds pass; the worker then waits with it instead. It is a
duck-typed hook, not part of :class:`~wfcli.store.contract.JournalStore`: a store
without it is polled.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from wfcli.errors import (
    JournalCorruptError,
    LeaseLostError,
    StoreFaultError,
    WorkflowError,
    WorkflowInputError,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from wfcli.client.client import WorkflowClient
    from wfcli.client.schedules import FireOutcome
    from wfcli.client.views import InstanceStatus
    from wfcli.core.schedule import Schedule
    from wfcli.engine.step import RunObserver
    from wfcli.store.contract import Damage, Lease

__all__ = ["NullWorkerEvents", "Worker", "WorkerEvents"]

_FIRST_BACKOFF = 1.0  # seconds before an instance whose store failed is tried again
_LONGEST_BACKOFF = 60.0


class WorkerEvents(Protocol):
    """What a :class:`Worker` reports (``wf worker`` prints a line for each).

    :meth:`started`, :meth:`finished` and :meth:`failed` are called from the worker's
    pool threads, several at once; the others from the thread in :meth:`Worker.run`.
    Subclass :class:`NullWorkerEvents` to hear only some of them.
    """

    def started(self, instance_id: str) -> RunObserver | None:
        """The instance is about to run; return an observer of its steps, or None."""

    def finished(self, status: InstanceStatus) -> None:
        """The run ended (complete, errored, suspended, paused, or stopped by the worker)."""

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        """The instance could not be executed. After a store failure (a
        :class:`StoreFaultError` or a lost lease) the worker tries it again after a
        backoff, once the store may have recovered; after any other error, not again."""

    def skipped(self, error: Damage) -> None:
        """A journal cannot be read, so its instance is not executed; or the store could
        not be scanned at all, so nothing is claimed until the next scan (said once
        per problem)."""

    def stopping(self, in_flight: Sequence[str]) -> None:
        """The worker was stopped while these instances run; it returns once their steps end."""

    def fired(self, outcome: FireOutcome) -> None:
        """A schedule's fire was evaluated: its instance started, found, or skipped."""


class NullWorkerEvents:
    """Worker events that are ignored."""

    def started(self, instance_id: str) -> RunObserver | None:
        return None

    def finished(self, status: InstanceStatus) -> None:
        pass

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        pass

    def skipped(self, error: Damage) -> None:
        pass

    def stopping(self, in_flight: Sequence[str]) -> None:
        pass

    def fired(self, outcome: FireOutcome) -> None:
        pass


class Worker:
    """Executes due instances of ``client``'s store until stopped.

    Up to ``concurrency`` instances run at once, each on its own thread; the store
    is scanned every ``poll_interval`` while there is room. With ``once``,
    :meth:`run` returns as soon as nothing is due and nothing runs.

    A worker never holds a slot through a wait: a sleep, retry delay or event wait
    longer than the poll interval (or the client's max inline wait, if shorter)
    suspends its instance as ``waiting`` and frees the slot for other work; the
    instance is claimed again once it is due, noticed within a poll.

    ``schedules`` are evaluated at every poll (:class:`~wfcli.client.schedules.Scheduler`):
    each due fire's instance is created, then claimed like any queued one.
    """

    def __init__(
        self,
        client: WorkflowClient,
        *,
        concurrency: int = 1,
        poll_interval: timedelta = timedelta(seconds=1),
        once: bool = False,
        events: WorkerEvents | None = None,
        schedules: Sequence[Schedule] = (),
    ) -> None:
        if concurrency < 1:
            raise WorkflowInputError("concurrency", f"must be at least 1, got {concurrency}")
        self.client = client
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.once = once
        self.events: WorkerEvents = events or NullWorkerEvents()
        self._stop = threading.Event()
        # Instances that failed here: not claimed again before this monotonic time (for
        # ever after an error of their own, which would recur on every scan).
        self._held_off: dict[str, float] = {}
        self._store_failures: dict[str, int] = {}  # in a row, per instance
        self._reported: set[str] = set()  # damaged journals' problems, said once each
        self._max_inline_wait = min(client.settings.max_inline_wait, poll_interval)
        self._scheduler = None
        if schedules:
            from wfcli.client.schedules import Scheduler

            self._scheduler = Scheduler(client, schedules)

    def stop(self) -> None:
        """Ask :meth:`run` to return: steps in flight finish, no next step or instance
        starts. Safe from any thread and from a signal handler."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Claim and execute due instances until stopped (or, with ``once``, until
        nothing is due); returns after the runs in flight end.

        A stop is noticed within the poll interval. A store that cannot be scanned is
        reported (:meth:`WorkerEvents.skipped`) and scanned again at the next poll;
        with ``once`` its :class:`StoreFaultError` is raised instead.
        """
        # concurrent.futures loads logging: ~5 ms that only a worker pays.
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        interval = self.poll_interval.total_seconds()
        running: dict[Future[WorkflowError | OSError | None], str] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="wf-worker") as pool:
            while not self._stop.is_set():
                self._fire_schedules()
                free = self.concurrency - len(running)
                if free:
                    for lease in self._claim(free):
                        running[pool.submit(self._execute, lease)] = lease.instance_id
                if self.once and not running:
                    return
                if running:
                    done, _ = wait(running, timeout=interval, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._settle(running.pop(future), future.result())
                else:
                    self._wait_for_work(interval)
            if running:
                self.events.stopping(sorted(running.values()))

    def _fire_schedules(self) -> None:
        """Start what the schedules have due; a store that fails is reported once and
        the schedules are evaluated again at the next poll."""
        if self._scheduler is None:
            return
        try:
            outcomes = self._scheduler.tick()
        except (StoreFaultError, JournalCorruptError) as error:
            if self.once:
                raise
            self._report(error)
            return
        for outcome in outcomes:
            self.events.fired(outcome)

    def _claim(self, free: int) -> list[Lease]:
        """Leases on up to ``free`` due instances that are not held off here."""
        now = time.monotonic()
        held_off = {i for i, until in self._held_off.items() if until > now}
        try:
            claim = self.client.claim_due(free, skip=held_off)
        except StoreFaultError as error:
            if self.once:  # returning would say "nothing is due"
                raise
            # The database restarting, say: scan again after the poll interval.
            self._report(error)
            return []
        for damage in claim.damaged:
            self._report(damage)
        return claim.leases

    def _report(self, error: Damage) -> None:
        problem = str(error)
        if problem not in self._reported:
            self._reported.add(problem)
            self.events.skipped(error)

    def _execute(self, lease: Lease) -> WorkflowError | OSError | None:
        """Run one claimed instance; its error if it failed (it was reported)."""
        instance_id = lease.instance_id
        with lease:  # released by the run; here too if it never starts
            try:
                observer = self.events.started(instance_id)
                outcome = self.client.execute(
                    instance_id,
                    observer=observer,
                    cancel=self._stop.is_set,
                    lease=lease,
                    max_inline_wait=self._max_inline_wait,
                )
            except (WorkflowError, OSError) as error:
                self.events.failed(instance_id, error)
                return error
        self.events.finished(outcome)
        return None

    def _settle(self, instance_id: str, error: WorkflowError | OSError | None) -> None:
        """Hold off an instance that failed: a while after a store failure (doubling
        from 1 s to a minute while it recurs), for good after its own error."""
        if error is None:
            self._held_off.pop(instance_id, None)
            self._store_failures.pop(instance_id, None)
        elif isinstance(error, (StoreFaultError, LeaseLostError)):
            count = self._store_failures[instance_id] = self._store_failures.get(instance_id, 0) + 1
            backoff = min(_FIRST_BACKOFF * 2 ** (count - 1), _LONGEST_BACKOFF)
            self._held_off[instance_id] = time.monotonic() + backoff
        else:
            self._held_off[instance_id] = math.inf

    def _wait_for_work(self, timeout: float) -> None:
        hook: Callable[[float], object] | None = getattr(self.client.store, "wait_for_work", None)
        if hook is None:
            self._stop.wait(timeout)
        else:
            hook(timeout)
