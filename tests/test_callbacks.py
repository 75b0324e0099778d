"""The callback runner: timeouts, and signals the kernel hands to the callback's thread."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from wfcli.engine.callbacks import AttemptTimedOut, CallbackRunner


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
