"""The callback runners: timeouts, and signals the kernel hands to the callback's thread."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from wfcli.engine.callbacks import AttemptTimedOut, CallbackRaised, CallbackRunner, InlineRunner


def test_a_ctrl_c_delivered_to_the_callback_thread_still_interrupts_the_waiting_thread() -> None:
    """Linux may deliver a process's SIGINT to any thread; Python handles it on the main
    thread, which must notice while it waits for the callback."""
    release, returned = threading.Event(), threading.Event()

    def callback() -> None:
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread only
        release.wait(10)
        returned.set()

    runner = CallbackRunner()
    with pytest.raises(KeyboardInterrupt):
        runner.call(callback, (), timeout=60)
    assert not returned.is_set()  # interrupted while the callback was still running
    release.set()
    runner.close()


def test_a_callback_over_its_timeout_is_abandoned() -> None:
    release = threading.Event()
    runner = CallbackRunner()
    started = time.monotonic()
    with pytest.raises(AttemptTimedOut):
        runner.call(release.wait, (5,), timeout=0.6)
    assert 0.6 <= time.monotonic() - started < 5
    release.set()
    assert runner.call(lambda: 7, (), timeout=1) == 7  # a fresh thread takes the next call
    runner.close()


class _Gone(BaseException):
    pass


def test_an_inline_callback_past_its_deadline_is_expired_by_the_watcher() -> None:
    runner = InlineRunner(_Gone)
    release = threading.Event()
    ended = threading.Event()
    raised: list[BaseException] = []

    def workflow_thread() -> None:
        try:
            runner.call(lambda: release.wait(10), (), timeout=0.3)
        except BaseException as error:
            raised.append(error)
        ended.set()

    started = time.monotonic()
    threading.Thread(target=workflow_thread, daemon=True).start()
    assert runner.watch(ended.is_set) is False  # the attempt expired, the thread runs on
    assert 0.3 <= time.monotonic() - started < 5
    release.set()
    assert ended.wait(10)
    assert [type(error) for error in raised] == [_Gone]  # not its result: abandoned


def test_an_inline_callback_returning_late_before_the_watcher_looks_times_out() -> None:
    runner = InlineRunner(_Gone)
    with pytest.raises(AttemptTimedOut):
        runner.call(time.sleep, (0.2,), timeout=0.05)
    assert runner.call(lambda: 7, (), timeout=1) == 7
    assert runner.expire() is False  # nothing running


def test_an_inline_callbacks_errors_reach_the_step() -> None:
    runner = InlineRunner(_Gone)

    def exits() -> None:
        raise SystemExit(3)

    with pytest.raises(CallbackRaised) as raised:
        runner.call(exits, (), timeout=1)
    assert isinstance(raised.value.error, SystemExit)
    with pytest.raises(ValueError, match="invalid literal"):
        runner.call(int, ("x",), timeout=1)
