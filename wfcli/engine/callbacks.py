"""Running step callbacks with a per-attempt timeout, on a thread that can be abandoned."""

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


class CallbackRunner:
    """Runs callbacks with a per-attempt timeout.

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
        error = call.error
        if error is None:
            return call.result
        if isinstance(error, Exception):
            raise error
        raise CallbackRaised(error)  # SystemExit, KeyboardInterrupt, ... of the callback

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
