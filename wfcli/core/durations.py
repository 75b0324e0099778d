"""Durations as users write them: seconds, ``timedelta`` or ``"<n> <unit>"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias, Union

from wfcli.errors import WorkflowInputError

__all__ = ["Duration", "format_duration", "parse_duration"]

Duration: TypeAlias = Union[int, float, timedelta, str]  # noqa: UP007 (evaluated at runtime)

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
# Compiled on first use (``re``'s cache): most processes parse no duration text.
_DURATION_TEXT = r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>second|minute|hour|day|week)s?\s*$"
# timedelta's own ceiling is ~2.7 million years; keep a saner bound that still
# leaves room for adding a duration to "now" without overflowing datetime.
_MAX_SECONDS = 100 * 366 * 86400


def parse_duration(value: object, what: str = "duration") -> timedelta:
    """Return ``value`` as a non-negative ``timedelta``.

    Accepts seconds (int or finite float), a ``timedelta``, or text such as
    ``"30 seconds"``, ``"1 minute"``, ``"2.5 hours"`` (units second, minute, hour,
    day, week; singular or plural). Raises :class:`WorkflowInputError` (a
    ``ValueError``) naming ``what`` for anything else.
    """
    if isinstance(value, bool):
        raise WorkflowInputError(what, f"expected a duration, got a boolean ({value})")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise WorkflowInputError(what, f"{value} is not a finite number of seconds")
    elif isinstance(value, str):
        match = re.match(_DURATION_TEXT, value, re.IGNORECASE)
        if match is None:
            raise WorkflowInputError(
                what,
                f"{value!r} is not a duration; write '<number> <unit>' with unit "
                "second, minute, hour, day or week",
            )
        seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"].lower()]
    else:
        raise WorkflowInputError(
            what, f"expected seconds, a timedelta or text, got {type(value).__name__}"
        )
    if seconds < 0:
        raise WorkflowInputError(what, f"{value!r} is negative")
    if seconds > _MAX_SECONDS:
        raise WorkflowInputError(what, f"{value!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly for people, the one way ``wf`` writes durations:
    ``'450ms'``, ``'2.5s'``, ``'42s'``, ``'1h 2m'`` (two units at most), rounded to
    what is shown (0.9996 seconds is ``'1.0s'``, never ``'1000ms'``)."""
    total = max(delta.total_seconds(), 0.0)
    milliseconds = round(total * 1000)
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    tenths = round(total * 10)
    if tenths < 100:
        return f"{tenths / 10:.1f}s"
    whole = round(total)
    if whole < 60:
        return f"{whole}s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n
    ]
    return " ".join(parts[:2])
