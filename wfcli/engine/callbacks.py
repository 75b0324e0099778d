"""Running step callbacks with a per-attempt timeout.

Two runners: :class:`InlineRunner` calls a callback on the thread that runs the
workflow and posts the attempt's deadline to a watcher on another thread, which
abandons that whole thread if the deadline passes (no handoff per step);
:class:`CallbackRunner` hands each callback to a thread of its own that can be
abandoned alone (a ``parallel`` branch, whose siblings go on).

An ``async def`` callback is awaited on the thread that calls it, in an event loop
of its own.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import CoroutineType, FunctionType
from typing import Any

__all__ = [
    "AttemptTimedOut",
    "Callback",
    "CallbackRaised",
    "CallbackRunner",
    "InlineRunner",
    "in_step_callback",
    "running_workflow",
    "step_instance",
    "wants_context",
    "workflow_code",
]

Callback = Callable[..., Any]


class _ThreadFlags(threading.local):
    """Per-thread flags; class attributes give every thread its defaults (a missing
    attribute of a ``threading.local`` costs an exception on every look)."""

    active = False  # this thread is running a step callback
    instance_id: str | None = None  # the instance whose step it runs
    running: str | None = None  # the instance whose workflow code this thread runs


_callback_thread = _ThreadFlags()


def in_step_callback() -> bool:
    """Whether the calling thread is running a step callback (steps cannot nest)."""
    return _callback_thread.active


def step_instance() -> str | None:
    """The instance whose step callback the calling thread runs, if any."""
    return _callback_thread.instance_id if _callback_thread.active else None


def running_workflow() -> str | None:
    """The instance whose workflow code (outside a step callback) the calling thread runs."""
    return _callback_thread.running


@contextlib.contextmanager
def workflow_code(instance_id: str) -> Iterator[None]:
    """Marks the calling thread as running ``instance_id``'s workflow code."""
    outer = _callback_thread.running
    _callback_thread.running = instance_id
    try:
        yield
    finally:
        _callback_thread.running = outer


def _awaited(
    result: Coroutine[object, object, object], on_cancel: Callable[[Callable[[], object]], None]
) -> object:
    """What an ``async def`` callback's coroutine returns, run in an event loop of its own
    on this thread; ``on_cancel`` is given a way to cancel its task (from any thread)
    while it runs."""
    import asyncio  # only for async callbacks: it costs every run's start

    async def awaited(coroutine: Coroutine[object, object, object]) -> object:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        on_cancel(lambda: loop.call_soon_threadsafe(task.cancel))
        return await coroutine

    return asyncio.run(awaited(result))


@dataclass(slots=True)
class _Call:
    function: Callback
    args: tuple[object, ...]
    done: threading.Event
    instance_id: str | None
    result: object = None
    error: BaseException | None = None
    cancel: Callable[[], object] | None = None
    """Cancels an ``async`` callback's task (set while it runs)."""

    def run(self) -> None:
        _callback_thread.active = True
        _callback_thread.instance_id = self.instance_id
        try:
            result = self.function(*self.args)
            if isinstance(result, CoroutineType):  # an async def callback's
                result = _awaited(result, self._cancellable)
            self.result = result
        except BaseException as error:  # handed to the waiting thread, which decides
            self.error = error
        finally:
            _callback_thread.active = False
            _callback_thread.instance_id = None
            self.done.set()

    def _cancellable(self, cancel: Callable[[], object]) -> None:
        self.cancel = cancel


class _CallbackWorker:
    """One daemon thread that runs callbacks handed to it, one at a time."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="wfcli-step", daemon=True).start()

    def _loop(self) -> None:
        while (call := self.calls.get()) is not None:
            call.run()


_WAKE_SECONDS = 0.25  # how soon a waiting step notices a signal handled elsewhere


class AttemptTimedOut(Exception):
    """The callback did not return within the attempt's timeout (private to the runner,
    so a callback's own ``TimeoutError`` is not mistaken for one)."""


class CallbackRaised(Exception):
    """A callback raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit``, ...): its attempt fails with ``error``
    like with any error. A real Ctrl-C reaches the thread that waits, not the
    callback's, so it still stops the process."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        super().__init__(str(error))


def _outcome(error: BaseException | None, result: object) -> object:
    """A callback's result, or its error raised as the step sees it."""
    if error is None:
        return result
    if isinstance(error, Exception):
        raise error
    raise CallbackRaised(error)  # SystemExit, KeyboardInterrupt, ... of the callback


class CallbackRunner:
    """Runs callbacks with a per-attempt timeout, each on a thread of its own.

    A timed-out callback cannot be killed in Python: its thread is abandoned (it
    keeps running in the background until the callback returns, and its result
    is discarded) and a fresh thread takes the next call.
    """

    def __init__(self, instance_id: str | None = None) -> None:
        self._worker: _CallbackWorker | None = None
        self.instance_id = instance_id

    def call(self, function: Callback, args: tuple[object, ...], timeout: float) -> object:
        """``function(*args)`` on the runner's thread (awaited if it is ``async def``);
        raises :class:`AttemptTimedOut` after ``timeout`` seconds."""
        if self._worker is None:
            self._worker = _CallbackWorker()
        call = _Call(function, args, threading.Event(), self.instance_id)
        self._worker.calls.put(call)
        if not self._wait(call.done, timeout):
            self._worker.calls.put(None)  # the thread exits once the callback returns
            self._worker = None
            if call.cancel is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    call.cancel()
            raise AttemptTimedOut
        return _outcome(call.error, call.result)

    @staticmethod
    def _wait(done: threading.Event, timeout: float) -> bool:
        """``done.wait(timeout)`` in slices: the kernel may hand a Ctrl-C or SIGTERM to
        the callback's thread instead of this one, and then only a wait that comes back
        lets Python run the handler here (it runs signal handlers on the main thread)."""
        if done.wait(min(timeout, _WAKE_SECONDS)):
            return True
        deadline = time.monotonic() + timeout - _WAKE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if done.wait(min(left, _WAKE_SECONDS)):
                return True
        return done.is_set()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.calls.put(None)
            self._worker = None


class InlineRunner:
    """Runs callbacks on the calling thread, the workflow's, with their deadlines watched.

    Another thread (the one waiting for the workflow, see :meth:`watch`) checks the
    deadline of the attempt in progress. Past it, that thread abandons the calling
    thread as a whole: :meth:`expire` marks the attempt, the workflow carries on on
    a fresh thread, and the abandoned one, if its callback ever returns, gets
    ``abandoned()`` raised instead of the result. A callback that returns late
    before the watcher looked times out on its own thread, as with
    :class:`CallbackRunner`.
    """

    def __init__(
        self, abandoned: Callable[[], BaseException], instance_id: str | None = None
    ) -> None:
        self._abandoned = abandoned
        self.instance_id = instance_id
        self._cancel: Callable[[], object] | None = None  # an async callback's task's
        self._lock = threading.Lock()
        self._deadline: float | None = None  # time.monotonic() of the running attempt's end
        self._next_look = float("inf")  # when the watcher looks next, unless woken
        self._expired = False
        self.wake = threading.Event()
        """Set to make the watcher look now (a nearer deadline, or the workflow ended)."""

    def call(self, function: Callback, args: tuple[object, ...], timeout: float) -> object:
        deadline = time.monotonic() + timeout
        with self._lock:
            self._deadline = deadline
            sooner = deadline < self._next_look
        if sooner:
            self.wake.set()
        _callback_thread.active = True
        _callback_thread.instance_id = self.instance_id
        error: BaseException | None = None
        result: object = None
        try:
            result = function(*args)
            if isinstance(result, CoroutineType):  # an async def callback's
                result = _awaited(result, self._cancellable)
        except BaseException as raised:  # decided below, once the watcher cannot expire it
            error = raised
        finally:
            _callback_thread.active = False
            _callback_thread.instance_id = None
        with self._lock:
            self._deadline = None
            self._cancel = None
            expired = self._expired
        if expired:
            raise self._abandoned()
        if time.monotonic() > deadline:
            raise AttemptTimedOut
        if error is None:  # _outcome's common case, without its call
            return result
        return _outcome(error, result)

    def expire(self) -> bool:
        """If the running attempt is past its deadline, mark it so (its thread is then
        abandoned) and return True; otherwise note when to look again."""
        now = time.monotonic()
        with self._lock:
            deadline = self._deadline
            if deadline is not None and now >= deadline:
                self._expired = True
                if self._cancel is not None:
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        self._cancel()
                return True
            left = _WAKE_SECONDS if deadline is None else min(_WAKE_SECONDS, deadline - now)
            self._next_look = now + left
            return False

    def _cancellable(self, cancel: Callable[[], object]) -> None:
        with self._lock:
            self._cancel = cancel

    def watch(self, ended: Callable[[], bool]) -> bool:
        """Wait until ``ended()`` (True) or the running attempt expires (False).

        Sleeps in slices of at most a quarter second, so that a signal handled on
        this thread (Ctrl-C, SIGTERM) interrupts the wait in time.
        """
        while True:
            self.wake.clear()
            if ended():
                return True
            if self.expire():
                return False
            self.wake.wait(max(0.0, self._next_look - time.monotonic()))


def wants_context(callback: Callback) -> bool:
    """Whether ``callback`` has a required positional parameter (for the context)."""
    if isinstance(callback, FunctionType):  # inspect.isfunction, without its call
        required = callback.__code__.co_argcount - len(callback.__defaults__ or ())
        return required >= 1
    if inspect.ismethod(callback) and inspect.isfunction(callback.__func__):
        function = callback.__func__
        return function.__code__.co_argcount - len(function.__defaults__ or ()) >= 2
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        for p in parameters
    )
