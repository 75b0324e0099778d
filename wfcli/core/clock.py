"""Clocks are injected: the executor never reads time from globals."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """What the executor needs of time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back (unlike :meth:`now`,
        which follows the wall clock when it is set back or forward)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a fake clock just moves forward)."""


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Time that moves only when told to: ``sleep`` and ``advance`` jump forward at once."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=timezone.utc)
        self._elapsed = 0.0
        self._mutex = threading.Lock()

    def now(self) -> datetime:
        with self._mutex:
            return self._now

    def monotonic(self) -> float:
        with self._mutex:
            return self._elapsed

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=max(seconds, 0)))

    def advance(self, delta: timedelta) -> None:
        with self._mutex:
            self._now += delta
            self._elapsed += max(delta.total_seconds(), 0.0)
