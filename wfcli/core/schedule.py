"""Schedules: cron expressions, their fire times and the instance ID of each fire (pure).

Fire times come from `cronsim <https://pypi.org/project/cronsim/>`_ (the ``cron``
extra), imported only when a fire time is computed, so commands that never look at
schedules never load it. DST follows Debian's cron, as cronsim does: a daily fire in
an hour that a spring-forward skips happens at the end of the gap, once; a daily
fire in an hour that a fall-back repeats happens once; a fire more often than
hourly happens at each wall-clock match, so twice in the repeated hour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal

from wfcli.core.codec import JsonValue, format_time
from wfcli.errors import WorkflowInputError

__all__ = [
    "CATCHUP_POLICIES",
    "DEFAULT_CATCHUP_WINDOW",
    "MAX_CATCHUP_FIRES",
    "ON_TIME",
    "OVERLAP_POLICIES",
    "Fire",
    "Schedule",
]

CatchupPolicy = Literal["latest", "none", "all"]
OverlapPolicy = Literal["skip", "allow"]
CATCHUP_POLICIES: tuple[CatchupPolicy, ...] = ("latest", "none", "all")
OVERLAP_POLICIES: tuple[OverlapPolicy, ...] = ("skip", "allow")
MAX_CATCHUP_FIRES = 100
"""``catchup = "all"`` starts at most this many missed fires at once (the latest ones)."""
DEFAULT_CATCHUP_WINDOW = timedelta(days=1)
ON_TIME = timedelta(minutes=1)
"""A fire found no later than this after its time is on time; later ones were missed."""


@dataclass(frozen=True, slots=True)
class Fire:
    """One fire of a schedule: when it was due, and the ID of the instance it starts."""

    schedule: Schedule
    scheduled_time: datetime
    instance_id: str
    manual: bool = False

    def event_schedule(self) -> dict[str, JsonValue]:
        """``event.schedule`` of the instance it starts (journaled in ``created``)."""
        document: dict[str, JsonValue] = {
            "schedule": self.schedule.name,
            "cron": self.schedule.cron,
            "timezone": self.schedule.timezone,
            "scheduled_time": format_time(self.scheduled_time),
        }
        if self.manual:
            document["manual"] = True
        return document


@dataclass(frozen=True, slots=True)
class Schedule:
    """One entry of a workflow's ``schedules``.

    ``name`` is how ``wf schedules`` names it: the workflow's name, with ``#N``
    (from 1) when the workflow has several. ``catchup``: which fires missed while no
    worker ran are started (``latest``, the default: only the most recent; ``none``;
    ``all``: every one, at most :data:`MAX_CATCHUP_FIRES`), looking back at most
    ``catchup_window``. ``overlap``: ``skip`` (the default) starts nothing while the
    previous fire's instance is not finished, and counts a skip; ``allow`` starts it.
    """

    workflow: str
    name: str
    cron: str
    timezone: str = "UTC"
    params: JsonValue = None
    catchup: CatchupPolicy = "latest"
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    overlap: OverlapPolicy = "skip"
    _zone: list[tzinfo] = field(default_factory=list, repr=False, compare=False)

    @property
    def key(self) -> str:
        """What fire IDs and the kept state are keyed by: a digest of the workflow, cron,
        timezone and params, so that changing any of them makes a new schedule."""
        import hashlib  # only where schedules run: hashlib loads OpenSSL

        text = "\0".join(
            (self.workflow, self.cron, self.timezone, json.dumps(self.params, sort_keys=True))
        )
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def fire_id(self, moment: datetime, *, manual: bool = False) -> str:
        """``cron-<key>-<epoch ms>`` (``-m<epoch ms>`` for a fire triggered by hand)."""
        millis = round(moment.timestamp() * 1000)
        return f"cron-{self.key}-{'m' if manual else ''}{millis}"

    def fire(self, moment: datetime, *, manual: bool = False) -> Fire:
        utc = moment.astimezone(timezone.utc)
        return Fire(self, utc, self.fire_id(utc, manual=manual), manual)

    def check(self) -> None:
        """Raise :class:`WorkflowInputError` if the cron or the timezone is not valid
        (imports cronsim: the ``cron`` extra)."""
        self.zone()
        self._times(datetime(2000, 1, 1, tzinfo=timezone.utc), reverse=False)

    def zone(self) -> tzinfo:
        """The schedule's time zone (UTC needs no time zone database)."""
        if not self._zone and self.timezone == "UTC":
            self._zone.append(timezone.utc)
        if not self._zone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                self._zone.append(ZoneInfo(self.timezone))
            except (ZoneInfoNotFoundError, ValueError):
                raise WorkflowInputError(
                    "timezone", f"{self.timezone!r} is not an IANA time zone name"
                ) from None
        return self._zone[0]

    def _times(self, start: datetime, *, reverse: bool) -> Iterator[datetime]:
        try:
            from cronsim import CronSim, CronSimError
        except ImportError:
            raise WorkflowInputError(
                "schedules", "need the cron extra: pip install 'wfcli[cron]'"
            ) from None
        local = start.astimezone(self.zone())
        try:
            times = CronSim(self.cron, local, reverse=reverse)
        except CronSimError as error:
            raise WorkflowInputError("cron", f"{self.cron!r}: {error}") from None
        return (moment.astimezone(timezone.utc) for moment in times)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time after ``moment`` (UTC), None if it never fires again."""
        return next(self._times(moment, reverse=False), None)

    def latest_at(self, moment: datetime) -> datetime | None:
        """The last fire time at or before ``moment`` (UTC)."""
        for fire_time in self._times(moment + timedelta(microseconds=1), reverse=True):
            if fire_time <= moment:
                return fire_time
        return None

    def due(self, after: datetime | None, now: datetime) -> list[Fire]:
        """The fires to start at ``now`` when fires up to ``after`` were evaluated already,
        by the catch-up policy; oldest first. A schedule never evaluated (``after`` is
        None) has missed nothing: only a fire on time (:data:`ON_TIME`) starts.

        Only ``(max(after, now - catchup_window), now]`` is looked at, walking back
        from ``now``: never tick by tick from an old position.
        """
        start = now - (ON_TIME if after is None else self.catchup_window)
        if after is not None and after > start:
            start = after
        fires: list[Fire] = []
        for fire_time in self._times(now + timedelta(microseconds=1), reverse=True):
            if fire_time <= start:
                break
            if fire_time > now:
                continue
            missed = now - fire_time > ON_TIME
            if self.catchup == "none" and missed:
                break
            fires.append(self.fire(fire_time))
            if self.catchup != "all" or len(fires) == MAX_CATCHUP_FIRES:
                break
        fires.reverse()
        return fires
