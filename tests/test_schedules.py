"""Schedules on a fake clock: fire times, IDs, catch-up, overlap, timezones and DST.

The scheduler runs against a memory store and a file store with a :class:`FakeClock`;
fires are counted from what the store holds (instances and their ``created`` records).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.workflows_for_tests import PATIENCE_SECONDS, wait_until
from wfcli import (
    FakeClock,
    FileStore,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.client import NullWorkerEvents, Worker
from wfcli.client.schedules import Scheduler
from wfcli.core.schedule import MAX_CATCHUP_FIRES, Schedule
from wfcli.errors import JournalCorruptError, WorkflowInputError
from wfcli.store.memory import MemoryStore

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


class Report(WorkflowEntrypoint):
    """Returns what its event says about the schedule."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return step.do("report", lambda: dict(event.schedule or {}) | {"params": event.payload})


class Endless(WorkflowEntrypoint):
    """Sleeps for a day: its fire's instance stays unfinished."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.sleep("nap", "1 day")
        return "done"


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {"report": Report, "endless": Endless}


def client_at(start: datetime, store: Any = None) -> WorkflowClient:
    return WorkflowClient(store or MemoryStore(), WORKFLOWS, clock=FakeClock(start))


def clock(client: WorkflowClient) -> FakeClock:
    assert isinstance(client.clock, FakeClock)
    return client.clock


def every(cron: str, workflow: str = "report", **options: Any) -> Schedule:
    return Schedule(workflow=workflow, name=workflow, cron=cron, **options)


def fires(client: WorkflowClient) -> list[datetime]:
    """The scheduled times of every instance a schedule started, oldest first."""
    found = []
    for summary in client.list_instances():
        schedule = summary.schedule
        assert isinstance(schedule, dict)
        found.append(datetime.fromisoformat(str(schedule["scheduled_time"])))
    return sorted(found)


def test_each_fire_time_starts_one_instance_with_an_id_from_the_schedule_and_the_time() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC))
    schedule = every("*/15 * * * *", params={"region": "eu"})
    scheduler = Scheduler(client, [schedule])
    (first,) = scheduler.tick()  # 00:00, on time
    assert first.result == "started"
    assert scheduler.tick() == []  # nothing new before 00:15
    client.execute(first.fire.instance_id)
    clock(client).advance(timedelta(minutes=15))
    (outcome,) = scheduler.tick()
    moment = datetime(2030, 1, 1, 0, 15, tzinfo=UTC)
    assert outcome.fire.instance_id == f"cron-{schedule.key}-{int(moment.timestamp() * 1000)}"
    assert fires(client) == [datetime(2030, 1, 1, 0, 0, tzinfo=UTC), moment]
    status = client.execute(outcome.fire.instance_id)
    assert status.output == {
        "schedule": "report",
        "cron": "*/15 * * * *",
        "timezone": "UTC",
        "scheduled_time": "2030-01-01T00:15:00.000000+00:00",
        "params": {"region": "eu"},
    }


def test_many_schedulers_on_one_store_start_each_fire_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store", durable=False)
    start = datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    clients = [client_at(start, store) for _ in range(4)]
    schedulers = [Scheduler(c, [every("* * * * *")]) for c in clients]
    for _ in range(30):
        for c, scheduler in zip(clients, schedulers, strict=True):
            scheduler.tick()
            clock(c).advance(timedelta(seconds=20))
    # 40 minutes of clock, each minute started once whoever saw it first
    assert len(fires(clients[0])) == len(set(fires(clients[0])))
    assert fires(clients[0])[0] == start.replace(second=0)


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("latest", [datetime(2030, 1, 3, 2, 0, tzinfo=UTC)]),
        ("none", []),
        ("all", [datetime(2030, 1, day, 2, 0, tzinfo=UTC) for day in (2, 3)]),
    ],
)
def test_fires_missed_while_no_worker_ran_follow_the_catchup_policy(
    catchup: str, expected: list[datetime]
) -> None:
    client = client_at(datetime(2030, 1, 1, 2, 0, 10, tzinfo=UTC))
    schedule = every(
        "0 2 * * *", catchup=catchup, catchup_window=timedelta(days=2), overlap="allow"
    )
    Scheduler(client, [schedule]).tick()  # the 1st's fire, on time
    for instance in client.list_instances():
        client.execute(instance.id)
    clock(client).advance(timedelta(days=2, hours=5))  # the worker was down until the 3rd, 07:00
    Scheduler(client, [schedule]).tick()  # a new worker: its state comes from the store
    assert fires(client)[1:] == expected


def test_a_window_bounds_catch_up_and_it_never_walks_from_an_old_position() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, tzinfo=UTC))
    schedule = every(
        "* * * * *", catchup="all", catchup_window=timedelta(days=365), overlap="allow"
    )
    scheduler = Scheduler(client, [schedule])
    scheduler.tick()
    clock(client).advance(timedelta(days=300))  # 432,000 minutes missed
    outcomes = scheduler.tick()
    assert len(outcomes) == MAX_CATCHUP_FIRES  # the latest 100, found walking back from now
    assert outcomes[-1].fire.scheduled_time == client.clock.now()


def test_overlap_skip_starts_nothing_while_the_previous_fire_is_not_finished() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC))
    schedule = every("0 * * * *", workflow="endless")
    scheduler = Scheduler(client, [schedule])
    (first,) = scheduler.tick()
    client.execute(first.fire.instance_id)  # now waiting for a day
    clock(client).advance(timedelta(hours=1))
    (skipped,) = scheduler.tick()
    assert (skipped.result, skipped.previous) == ("skipped", first.fire.instance_id)
    (report,) = scheduler.report()
    assert (report.skipped, report.last_skip) == (1, datetime(2030, 1, 1, 1, 0, tzinfo=UTC))
    assert (report.last_id, report.last_status) == (first.fire.instance_id, "waiting")
    assert report.next_fire == datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    client.terminate(first.fire.instance_id)
    clock(client).advance(timedelta(hours=1))
    assert [o.result for o in scheduler.tick()] == ["started"]


def test_overlap_allow_starts_every_fire() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC))
    scheduler = Scheduler(client, [every("0 * * * *", workflow="endless", overlap="allow")])
    for _ in range(3):
        scheduler.tick()
        clock(client).advance(timedelta(hours=1))
    assert len(fires(client)) == 3


def test_a_timezone_fires_at_local_time_across_dst() -> None:
    # Paris springs forward on 2030-03-31 (02:00 -> 03:00) and falls back on 2030-10-27.
    spring = client_at(datetime(2030, 3, 29, 12, 0, tzinfo=UTC))
    schedule = every("30 2 * * *", timezone="Europe/Paris", overlap="allow")
    scheduler = Scheduler(spring, [schedule])
    for _ in range(4 * 24 * 4):
        scheduler.tick()
        clock(spring).advance(timedelta(minutes=15))
    local = [moment.astimezone(PARIS).strftime("%m-%d %H:%M") for moment in fires(spring)]
    assert local == ["03-30 02:30", "03-31 03:00", "04-01 02:30", "04-02 02:30"]

    autumn = client_at(datetime(2030, 10, 26, 12, 0, tzinfo=UTC))
    scheduler = Scheduler(autumn, [schedule])
    for _ in range(3 * 24 * 4):
        scheduler.tick()
        clock(autumn).advance(timedelta(minutes=15))
    local = [moment.astimezone(PARIS).strftime("%m-%d %H:%M") for moment in fires(autumn)]
    assert local == ["10-27 02:30", "10-28 02:30", "10-29 02:30"]  # once in the repeated hour


def test_a_fire_more_often_than_hourly_happens_twice_in_the_repeated_hour() -> None:
    client = client_at(datetime(2030, 10, 26, 23, 50, tzinfo=UTC))  # 01:50 CEST
    schedule = every("*/30 * * * *", timezone="Europe/Paris", overlap="allow")
    scheduler = Scheduler(client, [schedule])
    for _ in range(3 * 12):
        scheduler.tick()
        clock(client).advance(timedelta(minutes=5))
    local = [moment.astimezone(PARIS).strftime("%H:%M") for moment in fires(client)]
    assert local == ["02:00", "02:30", "02:00", "02:30", "03:00", "03:30"]


def test_a_manual_trigger_starts_a_fire_now_with_its_own_id() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC))
    schedule = every("0 0 1 1 *")
    outcome = Scheduler(client, [schedule]).trigger(schedule)
    assert outcome.result == "started"
    assert outcome.fire.instance_id.startswith(f"cron-{schedule.key}-m")
    assert client.status(outcome.fire.instance_id).state.schedule["manual"] is True  # type: ignore[index]


def test_a_worker_starts_and_runs_the_fires() -> None:
    client = client_at(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC))
    Worker(client, once=True, schedules=[every("0 0 * * *")]).run()
    (only,) = client.list_instances()
    assert only.status == "complete"


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        (every("61 * * * *"), "Bad minute"),
        (every("* * *"), "Wrong number of fields"),
        (every("* * * * *", timezone="Mars/Olympus"), "not an IANA time zone name"),
    ],
)
def test_a_bad_cron_or_timezone_is_refused(schedule: Schedule, reason: str) -> None:
    with pytest.raises(WorkflowInputError, match=reason):
        schedule.check()


class CountingStore(FileStore):
    """A file store that counts the schedule state changes it is asked for."""

    changes = 0

    def update_schedule_state(self, key: str, change: Any) -> Any:
        self.changes += 1
        return super().update_schedule_state(key, change)


def test_a_damaged_schedule_state_is_reported_once_and_changes_nothing(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store", durable=False)
    client = client_at(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC), store)
    schedule = every("* * * * *")
    Scheduler(client, [schedule]).tick()
    state_file = tmp_path / "store" / "workers" / "schedules.json"
    state_file.write_text("{not json", encoding="utf-8")
    reported: list[str] = []

    class Events(NullWorkerEvents):
        def skipped(self, error: Any) -> None:
            reported.append(str(error))

    clock(client).advance(timedelta(minutes=1))
    worker = Worker(
        client, schedules=[schedule], events=Events(), poll_interval=timedelta(milliseconds=5)
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    before = store.changes
    wait_until(lambda: store.changes >= before + 3, "three polls to try the schedule")
    worker.stop()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()
    assert len(reported) == 1
    assert "schedules.json" in reported[0]
    assert state_file.read_text(encoding="utf-8") == "{not json"  # nothing overwritten
    assert len(fires(client)) == 1
    with pytest.raises(JournalCorruptError):
        Worker(client, once=True, schedules=[schedule]).run()  # --once says so, never hangs
