"""Starting the instances of schedules: what ``wf worker`` does at each poll, and what
``wf schedules`` lists and triggers.

Any number of workers, on any number of machines, evaluate every schedule; none is a
leader. A fire's instance ID is derived from the schedule and the fire time
(:meth:`Schedule.fire_id`), and the store's ``create`` refuses an ID that exists, so
a fire is started once whatever happens. Each schedule's state (the time up to which
fires were evaluated, the last fire, the skips) is changed under the store's
:meth:`~wfcli.store.contract.JournalStore.update_schedule_state`, one worker at a
time, and only saves work: the IDs are the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from wfcli.core.codec import JsonValue, format_time, parse_time
from wfcli.core.schedule import Fire, Schedule
from wfcli.errors import InstanceExistsError, InstanceNotFoundError

if TYPE_CHECKING:
    from wfcli.client.client import WorkflowClient

__all__ = ["FireOutcome", "ScheduleReport", "Scheduler"]

FireResult = Literal["started", "skipped", "exists"]


@dataclass(frozen=True, slots=True)
class FireOutcome:
    """What became of one fire: ``started`` (this process created its instance),
    ``exists`` (its instance was there already), or ``skipped`` (overlap policy
    ``skip``: ``previous``, the last fire's instance, is not finished)."""

    fire: Fire
    result: FireResult
    previous: str | None = None

    def to_json(self) -> dict[str, JsonValue]:
        """A ``wf worker --json`` line's fields (docs/cli-json.md)."""
        return {
            "schedule": self.fire.schedule.name,
            "workflow": self.fire.schedule.workflow,
            "id": self.fire.instance_id,
            "scheduled_time": format_time(self.fire.scheduled_time),
            "result": self.result,
            "previous": self.previous,
        }


@dataclass(frozen=True, slots=True)
class ScheduleReport:
    """One schedule as ``wf schedules`` lists it."""

    schedule: Schedule
    next_fire: datetime | None
    last_fire: datetime | None
    last_id: str | None
    last_status: str | None
    skipped: int
    last_skip: datetime | None

    def to_json(self) -> dict[str, JsonValue]:
        """The document of one schedule in ``wf schedules --json`` (docs/cli-json.md)."""
        schedule = self.schedule
        return {
            "schedule": schedule.name,
            "workflow": schedule.workflow,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "catchup": schedule.catchup,
            "overlap": schedule.overlap,
            "next_fire": None if self.next_fire is None else format_time(self.next_fire),
            "last_fire": None if self.last_fire is None else format_time(self.last_fire),
            "last_id": self.last_id,
            "last_status": self.last_status,
            "skipped": self.skipped,
            "last_skip": None if self.last_skip is None else format_time(self.last_skip),
        }


def _time(state: dict[str, JsonValue], key: str) -> datetime | None:
    value = state.get(key)
    return parse_time(value) if isinstance(value, str) else None


class Scheduler:
    """Starts the fires of ``schedules`` through ``client`` (on its store and clock)."""

    def __init__(self, client: WorkflowClient, schedules: Sequence[Schedule]) -> None:
        self.client = client
        self.schedules = list(schedules)
        # The next fire time of each schedule after its last evaluation here: before
        # it, a poll looks at nothing (no lock, no write).
        self._next: dict[str, datetime | None] = {}

    def tick(self) -> list[FireOutcome]:
        """Start what is due now in every schedule (a worker calls it at each poll)."""
        now = self.client.clock.now()
        outcomes: list[FireOutcome] = []
        for schedule in self.schedules:
            key = schedule.key
            if key in self._next:
                upcoming = self._next[key]
                if upcoming is None or upcoming > now:
                    continue
            outcomes += self._evaluate(schedule, now)
            self._next[key] = schedule.next_after(now)
        return outcomes

    def _evaluate(self, schedule: Schedule, now: datetime) -> list[FireOutcome]:
        outcomes: list[FireOutcome] = []

        def change(kept: JsonValue) -> JsonValue:
            outcomes.clear()  # in case a store calls it again
            state: dict[str, JsonValue] = dict(kept) if isinstance(kept, dict) else {}
            evaluated = _time(state, "evaluated")
            for fire in schedule.due(evaluated, now):
                previous = state.get("last_id")
                if (
                    schedule.overlap == "skip"
                    and isinstance(previous, str)
                    and not self._finished(previous)
                ):
                    state["skipped"] = _count(state.get("skipped")) + 1
                    state["last_skip"] = format_time(fire.scheduled_time)
                    outcomes.append(FireOutcome(fire, "skipped", previous))
                    continue
                outcomes.append(self._start(fire))
                state["last_id"] = fire.instance_id
                state["last_fire"] = format_time(fire.scheduled_time)
            if evaluated is None or evaluated < now:
                state["evaluated"] = format_time(now)
            return state

        self.client.store.update_schedule_state(schedule.key, change)
        return outcomes

    def trigger(self, schedule: Schedule) -> FireOutcome:
        """Start a fire of ``schedule`` now, by hand (``wf schedules --trigger``): its
        ID is ``cron-<key>-m<epoch ms>`` and its ``event.schedule`` says ``manual``."""
        fire = schedule.fire(self.client.clock.now(), manual=True)
        outcomes: list[FireOutcome] = []

        def change(kept: JsonValue) -> JsonValue:
            state: dict[str, JsonValue] = dict(kept) if isinstance(kept, dict) else {}
            outcomes[:] = [self._start(fire)]
            state["last_id"] = fire.instance_id
            state["last_fire"] = format_time(fire.scheduled_time)
            return state

        self.client.store.update_schedule_state(schedule.key, change)
        return outcomes[0]

    def _start(self, fire: Fire) -> FireOutcome:
        schedule = fire.schedule
        try:
            self.client.create(
                schedule.workflow,
                params=schedule.params,
                instance_id=fire.instance_id,
                schedule=fire.event_schedule(),
            )
        except InstanceExistsError:
            return FireOutcome(fire, "exists")
        return FireOutcome(fire, "started")

    def _finished(self, instance_id: str) -> bool:
        try:
            return self.client.status(instance_id).finished
        except InstanceNotFoundError:  # deleted or pruned
            return True

    def report(self) -> list[ScheduleReport]:
        """Every schedule with its next and last fires and its skips (read-only)."""
        states = self.client.store.schedule_states()
        now = self.client.clock.now()
        reports = []
        for schedule in self.schedules:
            kept = states.get(schedule.key)
            state: dict[str, JsonValue] = dict(kept) if isinstance(kept, dict) else {}
            last_id = state.get("last_id")
            last_status = None
            if isinstance(last_id, str):
                try:
                    last_status = self.client.status(last_id).status
                except InstanceNotFoundError:
                    last_status = "deleted"
            reports.append(
                ScheduleReport(
                    schedule=schedule,
                    next_fire=schedule.next_after(now),
                    last_fire=_time(state, "last_fire"),
                    last_id=last_id if isinstance(last_id, str) else None,
                    last_status=last_status,
                    skipped=_count(state.get("skipped")),
                    last_skip=_time(state, "last_skip"),
                )
            )
        return reports


def _count(value: JsonValue) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
