"""Several real ``wf worker`` processes on one store (files, PostgreSQL), SIGKILLed at
random and replaced: a schedule's fires are each started once, with none missed, and a
concurrency limit is never exceeded. Both are counted from the journals afterwards.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_support import wf_executable
from tests.postgres_support import PgServer
from tests.workflows_for_tests import PATIENCE_SECONDS, wait_until
from wfcli import WorkflowClient
from wfcli.core.codec import Created, RunStarted
from wfcli.project import load_project, open_client

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")

LIMIT = 2
LIMITED = 20
WORKERS = 3

WORKFLOWS = """
import time

from wfcli import WorkflowEntrypoint


class Limited(WorkflowEntrypoint):
    def run(self, event, step):
        for n in range(3):
            step.do(f"s{n}", lambda: time.sleep(0.15) or n)
        return "ok"


class Ticker(WorkflowEntrypoint):
    def run(self, event, step):
        return step.do("tick", lambda: event.schedule["scheduled_time"])
"""

CONFIG = """
name = "fleet"
main = "fleet_workflows.py"

[store]
{store}
fsync = false

[[workflows]]
name = "limited"
binding = "LIMITED"
class_name = "Limited"
concurrency = {{ limit = {limit} }}

[[workflows]]
name = "ticker"
binding = "TICKER"
class_name = "Ticker"
schedules = [{{ cron = "* * * * * *", catchup = "all", overlap = "allow" }}]
"""


def make_fleet_project(root: Path, store_line: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fleet_workflows.py").write_text(WORKFLOWS, encoding="utf-8")
    config = root / "workflows.toml"
    config.write_text(CONFIG.format(store=store_line, limit=LIMIT), encoding="utf-8")
    return config


def start_worker(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    return subprocess.Popen(
        [wf_executable(), "worker", "--concurrency", "3", "--poll", "0.1"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def most_at_once(runs: list[tuple[datetime, datetime]]) -> int:
    """The most intervals that overlap at any moment."""
    edges = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
    busiest = current = 0
    for _, change in edges:
        current += change
        busiest = max(busiest, current)
    return busiest


def drive_fleet(config: Path) -> None:
    project = load_project(config)
    client = open_client(project, project.store_location or "")
    for n in range(LIMITED):
        client.create("limited", instance_id=f"lim-{n:02d}")
    chance = random.Random(15)
    workers = [start_worker(config) for _ in range(WORKERS)]
    try:
        for _ in range(6):  # kill one at random every ~0.7 s, and replace it
            time.sleep(0.4 + chance.random() * 0.6)
            victim = workers.pop(chance.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            workers.append(start_worker(config))

        def limited_done() -> bool:
            done = client.list_instances(workflow="limited", statuses=["complete"])
            return len(done) == LIMITED

        wait_until(limited_done, "every limited instance to complete")
        first = client.list_instances(workflow="ticker")
        wait_until(  # and a few more fires after the kills, for the schedule's check
            lambda: len(client.list_instances(workflow="ticker")) >= len(first) + 2,
            "more fires",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(PATIENCE_SECONDS)
    try:
        check_journals(client)
    finally:
        close = getattr(client.store, "close", None)  # a PostgreSQL store's connections
        if close is not None:
            close()


def check_journals(client: WorkflowClient) -> None:
    """Each limited instance's runs, from ``run_started`` to the run's last record (a
    killed run held its slot at least that long), never overlap more than the limit;
    the fires' scheduled times are one second apart, each once."""
    runs: list[tuple[datetime, datetime]] = []
    for summary in client.list_instances(workflow="limited"):
        assert summary.status == "complete"
        records = client.history(summary.id)
        segment: list[datetime] = []
        for record in records[1:]:
            if isinstance(record, RunStarted) and segment:
                runs.append((segment[0], segment[-1]))
                segment = []
            if isinstance(record, RunStarted) or segment:
                segment.append(record.at)
        runs.append((segment[0], segment[-1]))
    assert len(runs) >= LIMITED
    assert most_at_once(runs) <= LIMIT
    scheduled = []
    for summary in client.list_instances(workflow="ticker"):
        first = client.history(summary.id)[0]
        assert isinstance(first, Created)
        assert isinstance(first.schedule, dict)
        scheduled.append(datetime.fromisoformat(str(first.schedule["scheduled_time"])))
    scheduled.sort()
    assert len(scheduled) == len(set(scheduled))  # no fire twice
    gaps = [b - a for a, b in itertools.pairwise(scheduled)]
    assert set(gaps) == {timedelta(seconds=1)}, gaps  # and none missed


def test_workers_killed_at_random_on_a_file_store_start_each_fire_once_within_the_limit(
    tmp_path: Path,
) -> None:
    drive_fleet(make_fleet_project(tmp_path / "fleet", 'dir = "store"'))


def test_workers_killed_at_random_on_postgresql_start_each_fire_once_within_the_limit(
    tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.store_url(lease_seconds="2")
    drive_fleet(make_fleet_project(tmp_path / "fleet", f"url = '{url}'"))


DRAINED = 60
DRAIN_WORKFLOWS = """
from wfcli import WorkflowEntrypoint


class Steps(WorkflowEntrypoint):
    def run(self, event, step):
        for n in range(3):
            step.do(f"s{n}", lambda: n)
        return "ok"
"""
DRAIN_CONFIG = """
name = "drain"
main = "drain_workflows.py"

[store]
dir = "store"
fsync = false

[[workflows]]
name = "steps"
binding = "STEPS"
class_name = "Steps"
"""


def test_workers_draining_one_queue_run_each_instance_once_and_report_only_those_runs(
    tmp_path: Path,
) -> None:
    """Three ``wf worker --once --json`` on one queue: every instance runs exactly once
    (one ``run_started`` in its journal), and the runs the workers report add up to
    the instances: none was handed an instance a peer had finished meanwhile."""
    (tmp_path / "drain_workflows.py").write_text(DRAIN_WORKFLOWS, encoding="utf-8")
    config = tmp_path / "workflows.toml"
    config.write_text(DRAIN_CONFIG, encoding="utf-8")
    project = load_project(config)
    client = open_client(project, project.store_location or "")
    for n in range(DRAINED):
        client.create("steps", instance_id=f"q-{n:02d}")
    env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    workers = [
        subprocess.Popen(
            [wf_executable(), "worker", "--once", "--concurrency", "1", "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(WORKERS)
    ]
    outputs = [worker.communicate(timeout=PATIENCE_SECONDS) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * WORKERS, outputs
    finished = [
        line["id"]
        for stdout, _ in outputs
        for line in map(json.loads, stdout.splitlines())
        if line["event"] == "finished"
    ]
    assert sorted(finished) == [f"q-{n:02d}" for n in range(DRAINED)]
    for summary in client.list_instances(workflow="steps"):
        assert summary.status == "complete"
        starts = [r for r in client.history(summary.id) if isinstance(r, RunStarted)]
        assert len(starts) == 1, summary.id
