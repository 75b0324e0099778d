"""Concurrency limits and rate limits: which due instances a worker may start (pure).

A workflow's ``concurrency = { limit = N, key = "PARAM" }`` and ``rate = "10/minute"``
in ``workflows.toml`` become a :class:`ConcurrencyLimit`. A store claims work under
its admission lock (:meth:`~wfcli.store.contract.JournalStore.claim_due`) and asks a
:class:`Budget`, built from every instance's summary, which due instances fit.

What holds a slot: an instance whose lease is held while its journal says ``queued``
or ``running`` (being executed). Waiting, paused and queued instances nobody
executes hold none; an instance that suspends frees its slot at once. What a rate
counts: first starts (an instance's first ``run_started``) within the period before
now, and instances held that have not started yet (being admitted this moment).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from wfcli.core.codec import JsonValue
from wfcli.core.summary import InstanceSummary
from wfcli.errors import WorkflowInputError

__all__ = [
    "Budget",
    "ConcurrencyLimit",
    "Rate",
    "admission_key",
    "admission_order",
    "blocked_reason",
]

_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*")
_PERIODS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` first starts per rolling ``period``."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"10/minute"`` (``second``, ``minute``, ``hour`` or ``day``)."""
        match = _RATE.fullmatch(text)
        if match is None or int(match[1]) < 1:
            raise WorkflowInputError(
                "rate",
                f"expected COUNT/PERIOD such as '10/minute' (COUNT at least 1), got {text!r}",
            )
        return cls(int(match[1]), _PERIODS[match[2]])

    def __str__(self) -> str:
        unit = next(name for name, period in _PERIODS.items() if period == self.period)
        return f"{self.count}/{unit}"


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """A workflow's limits across every worker on a store.

    ``limit``: at most this many of its instances executing at once (per value of
    the param ``key``, if given: an instance without that param counts under
    ``null``). ``rate``: at most so many first starts per period. Either may be None.
    """

    limit: int | None = None
    key: str | None = None
    rate: Rate | None = None

    def key_of(self, params: JsonValue) -> str | None:
        """The slot group of an instance with ``params`` (None: the workflow's one group)."""
        if self.key is None:
            return None
        value = params.get(self.key) if isinstance(params, dict) else None
        return json.dumps(value, sort_keys=True)


def admission_key(summary: InstanceSummary) -> tuple[int, datetime, str]:
    """What :func:`admission_order` sorts by."""
    return -summary.priority, summary.created, summary.id


def admission_order(summaries: Iterable[InstanceSummary]) -> list[InstanceSummary]:
    """Due instances in the order workers admit them: higher priority first, then
    oldest first (by creation time, then ID)."""
    return sorted(summaries, key=admission_key)


def _holds_slot(summary: InstanceSummary) -> bool:
    return summary.holder is not None and summary.journal.status in ("queued", "running")


class Budget:
    """What the limits leave free now, given every instance (``everyone``)."""

    def __init__(
        self,
        limits: Mapping[str, ConcurrencyLimit],
        everyone: Iterable[InstanceSummary],
        now: datetime,
    ) -> None:
        self.limits = limits
        self.running: Counter[tuple[str, str | None]] = Counter()
        self.starts: Counter[str] = Counter()
        for summary in everyone:
            limit = limits.get(summary.workflow)
            if limit is None:
                continue
            if _holds_slot(summary):
                self.running[(summary.workflow, limit.key_of(summary.journal.shown["params"]))] += 1
            if limit.rate is not None:
                started = summary.started
                if (started is None and summary.holder is not None) or (
                    started is not None and started > now - limit.rate.period
                ):
                    self.starts[summary.workflow] += 1

    def blocked(self, summary: InstanceSummary) -> str | None:
        """Why ``summary`` may not start now, or None if it fits every limit."""
        limit = self.limits.get(summary.workflow)
        if limit is None:
            return None
        if limit.limit is not None:
            group = limit.key_of(summary.journal.shown["params"])
            running = self.running[(summary.workflow, group)]
            if running >= limit.limit:
                where = "" if group is None else f" for {limit.key} = {group}"
                return (
                    f"concurrency limit of {summary.workflow!r} reached{where}: "
                    f"{running} of {limit.limit} running"
                )
        if (
            limit.rate is not None
            and summary.started is None
            and self.starts[summary.workflow] >= limit.rate.count
        ):
            return f"rate limit of {summary.workflow!r} reached: {limit.rate}"
        return None

    def take(self, summary: InstanceSummary) -> None:
        """Count ``summary`` as started (its lease was just taken)."""
        limit = self.limits.get(summary.workflow)
        if limit is None:
            return
        self.running[(summary.workflow, limit.key_of(summary.journal.shown["params"]))] += 1
        if summary.started is None:
            self.starts[summary.workflow] += 1


def blocked_reason(
    summary: InstanceSummary,
    limits: Mapping[str, ConcurrencyLimit],
    everyone: Iterable[InstanceSummary],
    now: datetime,
) -> str | None:
    """Why a queued instance is not started by a worker now (``wf status``), or None."""
    if summary.holder is not None or summary.workflow not in limits:
        return None
    return Budget(limits, everyone, now).blocked(summary)
