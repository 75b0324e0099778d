"""Running step callbacks with a per-attempt timeout.

Two runners: :class:`InlineRunner` calls a callback on the thread that runs the
workflow and posts the attempt's deadline to a watcher on another thread, which
abandons that whole thread if the deadline passes (no handoff per step);
:class:`CallbackRunner` hands each callback to a thread of its own that can be
abandoned alone (a ``parallel`` branch, whose siblings go on).
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AttemptTimedOut",
    "Callback",
    "CallbackRaised",
    "CallbackRunner",
    "InlineRunner",
    "in_step_callback",
    "wants_context",
]

Callback = Callable[..., Any]


class _ThreadFlags(threading.local):
    """Per-thread flags; class attributes give every thread its defaults (a missing
    attribute of a ``threading.local`` costs an exception on every look)."""

    active = False  # this thread is running a step callback


_callback_thread = _ThreadFlags()


def in_step_callback() -> bool:
    """Whether the calling thread is running a step callback (steps cannot nest)."""
    return _callback_thread.active


@dataclass(slots=True)
class _Call:
    function: Callback
    args: tuple[object, ...]
    done: threading.Event
    result: object = None
    error: BaseException | None = None

    def run(self) -> None:
        _callback_thread.active = True
        try:
            self.result = self.function(*self.args)
        except BaseException as error:  # handed to the waiting thread, which decides
            self.error = error
        finally:
            _callback_thread.active = False
            self.done.set()


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

    def __init__(self) -> None:
        self._worker: _CallbackWorker | None = None

    def call(self, function: Callback, args: tuple[object, ...], timeout: float) -> object:
        if self._worker is None:
            self._worker = _CallbackWorker()
        call = _Call(function, args, threading.Event())
        self._worker.calls.put(call)
        if not self._wait(call.done, timeout):
            self._worker.calls.put(None)  # the thread exits once the callback returns
            self._worker = None
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

    def __init__(self, abandoned: Callable[[], BaseException]) -> None:
        self._abandoned = abandoned
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
        error: BaseException | None = None
        result: object = None
        try:
            result = function(*args)
        except BaseException as raised:  # decided below, once the watcher cannot expire it
            error = raised
        finally:
            _callback_thread.active = False
        with self._lock:
            self._deadline = None
            expired = self._expired
        if expired:
            raise self._abandoned()
        if time.monotonic() > deadline:
            raise AttemptTimedOut
        return _outcome(error, result)

    def expire(self) -> bool:
        """If the running attempt is past its deadline, mark it so (its thread is then
        abandoned) and return True; otherwise note when to look again."""
        now = time.monotonic()
        with self._lock:
            deadline = self._deadline
            if deadline is not None and now >= deadline:
                self._expired = True
                return True
            left = _WAKE_SECONDS if deadline is None else min(_WAKE_SECONDS, deadline - now)
            self._next_look = now + left
            return False

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
    if inspect.isfunction(callback):
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
