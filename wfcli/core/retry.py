"""Retry policies and the pure backoff schedule (Cloudflare Workflows' formulas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from wfcli.core.durations import parse_duration
from wfcli.errors import WorkflowInputError

__all__ = ["Backoff", "RetryPolicy", "backoff_delay", "next_attempt_at"]

Backoff = Literal["constant", "linear", "exponential"]
_BACKOFFS: tuple[Backoff, ...] = ("constant", "linear", "exponential")
_MAX_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step is retried: ``limit`` retries after the first attempt."""

    limit: int = 5
    delay: timedelta = timedelta(seconds=10)
    backoff: Backoff = "exponential"

    @property
    def max_attempts(self) -> int:
        return self.limit + 1

    @classmethod
    def from_value(cls, value: object, base: RetryPolicy | None = None) -> RetryPolicy:
        """Build a policy from ``{"limit", "delay", "backoff"}``; missing keys come from ``base``.

        Raises :class:`WorkflowInputError` for unknown keys or bad values.
        """
        base = base or cls()
        if value is None:
            return base
        if isinstance(value, RetryPolicy):
            return value
        if not isinstance(value, Mapping):
            raise WorkflowInputError(
                "retries",
                f"expected a mapping with limit/delay/backoff, got {type(value).__name__}",
            )
        unknown = sorted(set(map(str, value)) - {"limit", "delay", "backoff"})
        if unknown:
            raise WorkflowInputError("retries", f"unknown key {unknown[0]!r}")
        limit = value.get("limit", base.limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= _MAX_LIMIT:
            raise WorkflowInputError(
                "retries.limit", f"expected a whole number from 0 to {_MAX_LIMIT}, got {limit!r}"
            )
        delay = parse_duration(value.get("delay", base.delay), "retries.delay")
        backoff = value.get("backoff", base.backoff)
        if backoff not in _BACKOFFS:
            raise WorkflowInputError(
                "retries.backoff", f"expected one of {', '.join(_BACKOFFS)}, got {backoff!r}"
            )
        return cls(limit=limit, delay=delay, backoff=cast(Backoff, backoff))


def backoff_delay(policy: RetryPolicy, failed_attempt: int) -> timedelta:
    """Wait after failed attempt ``n`` (1-based): delay, delay*n or delay*2^(n-1)."""
    if failed_attempt < 1:
        raise ValueError(f"failed_attempt is 1-based, got {failed_attempt}")
    if policy.backoff == "constant":
        factor = 1
    elif policy.backoff == "linear":
        factor = failed_attempt
    else:
        factor = 2 ** min(failed_attempt - 1, 40)
    seconds = min(policy.delay.total_seconds() * factor, 100 * 366 * 86400)
    return timedelta(seconds=seconds)


def next_attempt_at(
    policy: RetryPolicy, failed_attempt: int, now: datetime, *, final: bool, lost: bool
) -> datetime | None:
    """When the attempt after ``failed_attempt`` runs, or None when none does (the error
    is ``final`` or the retries ran out). An attempt ``lost`` with its process is retried
    at once: the delay is for errors the callback raised, not for a crash."""
    if final or failed_attempt >= policy.max_attempts:
        return None
    return now if lost else now + backoff_delay(policy, failed_attempt)
