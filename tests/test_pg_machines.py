"""Several machines sharing one PostgreSQL store, while workers are SIGKILLed at random
and the server crashes and restarts once (figures in docs/reliability.md)::

    WF_TEST_POSTGRES=... python -m pytest -q -s tests/test_pg_machines.py

Two of the four worker slots run in network namespaces of their own, each joined to
this one by a veth pair on a private /30; the test's own PostgreSQL cluster (initdb,
as user nobody) listens on the two host-side addresses only, and every process,
this one included, reaches it there. Needs root (namespaces); skipped otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.pg_cluster import restart_cluster, start_cluster, stop_cluster
from tests.pg_machines_workflows import WORKFLOWS, expected_output, waits_for_event
from tests.postgres_support import check_one_holder_at_a_time, journal_with_epochs, require_driver
from wfcli import WorkflowClient
from wfcli.core.codec import AttemptFailed, AttemptStarted, Record, RunStarted, StepCompleted
from wfcli.errors import StoreFaultError

require_driver()
from wfcli.store.postgres import PgStore  # noqa: E402 - after the skip without a driver

pytestmark = pytest.mark.slow

INSTANCES = 500
WORKERS = 4  # slots 2 and 3 run in the two namespaces
LEASE_SECONDS = 2
SUBNET = "10.231.77"  # two /30s: .0/30 (namespace a) and .4/30 (namespace b)
PORT = 54391
DEADLINE_SECONDS = 200
FINISHED_BETWEEN_KILLS = (5, 25)  # instances finished between two SIGKILLs (at random)
REPO = Path(__file__).resolve().parent.parent


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Network:
    """Two namespaces, each with a veth pair to this one: ``server_hosts[i]`` is the
    host side of namespace ``i``'s link."""

    token: str = field(default_factory=lambda: secrets.token_hex(2))
    namespaces: list[str] = field(default_factory=list)
    server_hosts: list[str] = field(default_factory=list)

    def up(self) -> None:
        for index in range(2):
            namespace = f"wfpg{self.token}{index}"
            host_end, far_end = f"wfh{self.token}{index}", f"wfn{self.token}{index}"
            host_address, far_address = f"{SUBNET}.{4 * index + 1}", f"{SUBNET}.{4 * index + 2}"
            _ip("netns", "add", namespace)
            self.namespaces.append(namespace)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", far_end)
            _ip("link", "set", far_end, "netns", namespace)
            _ip("addr", "add", f"{host_address}/30", "dev", host_end)
            _ip("link", "set", host_end, "up")
            _ip(
                "netns", "exec", namespace, "ip", "addr", "add", f"{far_address}/30", "dev", far_end
            )
            _ip("netns", "exec", namespace, "ip", "link", "set", far_end, "up")
            _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
            self.server_hosts.append(host_address)

    def down(self) -> None:
        for index, namespace in enumerate(self.namespaces):
            for command in (
                ["link", "del", f"wfh{self.token}{index}"],
                ["netns", "del", namespace],
            ):
                subprocess.run(["ip", *command], check=False, capture_output=True)


@pytest.fixture
def network() -> Iterator[Network]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces (ip netns add) need root")
    made = Network()
    try:
        made.up()
    except subprocess.CalledProcessError as error:
        made.down()
        pytest.skip(f"ip netns is not permitted here: {error.stderr.decode().strip()}")
    yield made
    made.down()


@pytest.fixture
def cluster(network: Network) -> Iterator[tuple[Path, str]]:
    parent = Path(tempfile.mkdtemp(prefix="wfpg-machines-"))
    folder = parent / "pg"
    # durable: an immediate restart must not lose a commit the store was told of
    start_cluster(
        folder, ",".join(network.server_hosts), PORT, durable=True, trusted=[f"{SUBNET}.0/29"]
    )
    try:
        yield (
            folder,
            f"postgresql://postgres@{{host}}:{PORT}/postgres?lease_seconds={LEASE_SECONDS}",
        )
    finally:
        stop_cluster(folder)
        parent.rmdir()


class Workers:
    """The worker processes (``tests/drivers/pg_worker.py``), one per slot, each
    restarted at once after it is killed."""

    def __init__(self, url: str, network: Network, folder: Path) -> None:
        self.url = url
        self.network = network
        self.folder = folder
        self.effects = folder / "effects"
        self.effects.mkdir()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self.killed: set[int] = set()
        self.generation = 0

    def start(self, slot: int) -> None:
        namespace_index = slot - 2
        host = self.network.server_hosts[max(namespace_index, 0)]
        self.generation += 1
        log = self.logs[slot] = self.folder / f"worker-{self.generation:03d}.jsonl"
        command = [sys.executable, "-m", "tests.drivers.pg_worker"]
        command += [self.url.format(host=host), str(self.effects), str(log)]
        if namespace_index >= 0:  # ip netns exec execs: the PID is the worker's
            command = ["ip", "netns", "exec", self.network.namespaces[namespace_index], *command]
        self.processes[slot] = subprocess.Popen(command, cwd=REPO)

    def working(self, slot: int) -> bool:
        """Whether the slot's worker is past its start-up (it logged its start)."""
        log = self.logs[slot]
        return log.exists() and bool(log.read_text(encoding="utf-8"))

    def kill_one(self, chooser: random.Random) -> bool:
        """SIGKILL a random worker past its start-up and start another in its slot; False
        if none is past it (on a loaded machine start-up can take longer than the time
        between kills, and killing workers that never worked would stall the test)."""
        slots = [slot for slot in range(WORKERS) if self.working(slot)]
        if not slots:
            return False
        slot = chooser.choice(slots)
        process = self.processes[slot]
        process.kill()
        process.wait()
        self.killed.add(process.pid)
        self.start(slot)
        return True

    def stop(self) -> list[int | None]:
        for slot, process in self.processes.items():
            for _ in range(300):  # a SIGTERM before its handler is set would kill it
                if self.working(slot):
                    break
                time.sleep(0.1)
            process.terminate()
        return [process.wait(timeout=60) for process in self.processes.values()]

    def log_lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for path in sorted(self.folder.glob("worker-*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]


def retried(action: Callable[[], object]) -> Any:
    """``action()`` until the database answers (it is restarted once meanwhile)."""
    for _ in range(300):
        try:
            return action()
        except StoreFaultError:
            time.sleep(0.1)
    raise AssertionError("the database never came back")


def control(client: WorkflowClient, stop: threading.Event, errors: list[BaseException]) -> None:
    """From another process than the workers: terminate the event waiters with
    n % 10 == 5; pause those with n % 10 == 0, resume each once its pause took
    effect, then send it its event."""
    try:
        eventful = [n for n in range(INSTANCES) if waits_for_event(n)]
        for n in eventful:
            name = f"c{n:03d}"
            if n % 10 == 0:
                retried(functools.partial(client.pause, name))
            else:
                retried(functools.partial(client.terminate, name))
        for n in eventful:
            if n % 10 == 0:
                name = f"c{n:03d}"
                while retried(functools.partial(client.status, name)).status != "paused":
                    if stop.wait(0.1):
                        return
                retried(functools.partial(client.resume, name))
                retried(functools.partial(client.send_event, name, "go", n))
    except BaseException as error:  # reported by the test
        errors.append(error)


def test_workers_on_several_machines_drain_everything_through_kills_and_a_db_crash(
    network: Network, cluster: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = cluster
    chooser = random.Random(20300101)
    store = PgStore(url.format(host=network.server_hosts[0]))
    client = WorkflowClient(store, WORKFLOWS)
    for n in range(INSTANCES):
        client.create("chaos", params={"n": n}, instance_id=f"c{n:03d}")
    workers = Workers(url, network, tmp_path)
    started = time.monotonic()
    for slot in range(WORKERS):
        workers.start(slot)
    errors: list[BaseException] = []
    stop = threading.Event()
    controller = threading.Thread(target=control, args=(client, stop, errors))
    controller.start()
    restarted_at: float | None = None
    kills = 0
    finished = 0
    try:
        # Kills are paced by progress, not by the clock: on a loaded machine a fixed
        # rate would kill workers faster than they get any work done.
        next_kill_at = chooser.randint(*FINISHED_BETWEEN_KILLS)
        while time.monotonic() - started < DEADLINE_SECONDS:
            time.sleep(chooser.uniform(0.1, 0.3))
            if finished >= next_kill_at and workers.kill_one(chooser):
                kills += 1
                next_kill_at = finished + chooser.randint(*FINISHED_BETWEEN_KILLS)
            crashed = [p.args for p in workers.processes.values() if p.poll() is not None]
            assert not crashed, f"a worker exited by itself: {crashed}"
            try:
                finished = count_finished(store)
            except StoreFaultError:
                continue
            if restarted_at is None and finished >= INSTANCES * 0.4:
                restart_cluster(folder, "immediate")  # a crash: recovery replays the WAL
                restarted_at = round(time.monotonic() - started, 1)
            if finished == INSTANCES and not controller.is_alive():
                break
        drained = time.monotonic() - started
    finally:
        stop.set()
        controller.join()
        exits = workers.stop()
    assert not errors, errors
    assert finished == INSTANCES, f"{finished} of {INSTANCES} finished in {DEADLINE_SECONDS} s"
    assert restarted_at is not None
    assert exits == [0] * WORKERS  # the last generation, stopped by SIGTERM
    report = check_everything(client, store, workers)
    assert report["in_flight_reruns_after_a_kill"] > 0, "no kill landed in a step in flight"
    report.update(kills=kills, db_restart_at_seconds=restarted_at, wall_seconds=round(drained, 1))
    print(json.dumps(report))
    store.close()


def count_finished(store: PgStore) -> int:
    row = store.run(
        lambda conn: conn.execute(
            "SELECT count(*) FROM wf_instance WHERE status IN ('complete', 'terminated')"
        ).fetchone()
    )
    return int(row[0]) if row else 0


def check_everything(client: WorkflowClient, store: PgStore, workers: Workers) -> dict[str, Any]:
    """Outputs, side effects, lease epochs and leftovers; returns the figures."""
    logs = workers.log_lines()
    failed = {(e["instance"], e["pid"]) for e in logs if e["event"] == "failed"}

    def failed_by(instance_id: str) -> set[int]:
        return {pid for instance, pid in failed if instance == instance_id}

    assert all(
        e["error"].startswith(("StoreFaultError", "LeaseLostError"))
        for e in logs
        if e["event"] == "failed"
    ), [e for e in logs if e["event"] == "failed"]
    reruns = {"kill": 0, "lease": 0}
    for n in range(INSTANCES):
        instance_id = f"c{n:03d}"
        shown = client.status(instance_id)
        if waits_for_event(n) and n % 10 == 5:
            assert shown.status == "terminated", instance_id
        else:
            assert (shown.status, shown.output) == ("complete", expected_output(n)), instance_id
        calls: dict[str, list[tuple[int, int]]] = defaultdict(list)
        path = workers.effects / instance_id
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            pid, step, attempt = line.split()
            calls[step].append((int(pid), int(attempt)))
        if shown.status == "complete":
            assert set(calls) == {"a", "b", "c"}, calls
        check_one_holder_at_a_time(store, instance_id)
        history = History(journal_with_epochs(store, instance_id))
        for step, made in calls.items():
            for cause in history.repeats(step, made, workers.killed, failed_by(instance_id)):
                reruns[cause] += 1
    live = {process.pid for process in workers.processes.values()}
    held = store.run(
        lambda conn: conn.execute(
            "SELECT instance_id, lease_pid FROM wf_instance WHERE lease_expires > now()"
        ).fetchall()
    )
    assert not [row for row in held if row[1] in live], held  # released by the live workers
    time.sleep(LEASE_SECONDS)  # what killed workers held expires
    assert store.holder("c000") is None
    leftovers = store.run(
        lambda conn: conn.execute(
            "SELECT count(*) FROM wf_instance WHERE lease_expires > now()"
        ).fetchone()
    )
    assert leftovers == (0,)  # nothing is left claimed
    health = store.check()
    assert health.healthy, [str(problem) for problem in health.problems]
    return {
        "instances": INSTANCES,
        "worker_slots": WORKERS,
        "worker_processes": workers.generation,
        "runs": sum(1 for e in logs if e["event"] == "started"),
        "failed_runs": len([e for e in logs if e["event"] == "failed"]),
        "double_executions": 0,  # asserted above: every repeat was in flight
        "in_flight_reruns_after_a_kill": reruns["kill"],
        "in_flight_reruns_after_a_lost_lease": reruns["lease"],
    }


@dataclass
class History:
    """What an instance's journal says each worker process did with each attempt."""

    journal: list[tuple[int, Record]]
    runner: dict[int, int] = field(default_factory=dict)  # epoch -> the PID that ran it
    started: set[tuple[int, int, str, int]] = field(default_factory=set)  # epoch, pid, step, #
    settled: set[tuple[int, str, int]] = field(default_factory=set)  # epoch, step, attempt
    own_failures: set[tuple[int, str, int]] = field(default_factory=set)  # pid, step, attempt
    completed: dict[str, tuple[int, int]] = field(default_factory=dict)  # step -> pid, attempt

    def __post_init__(self) -> None:
        for epoch, record in self.journal:
            if isinstance(record, RunStarted):
                self.runner[epoch] = record.pid
            pid = self.runner.get(epoch, 0)
            if isinstance(record, AttemptStarted):
                self.started.add((epoch, pid, record.step, record.attempt))
            elif isinstance(record, StepCompleted) and record.kind == "do":
                self.settled.add((epoch, record.step, record.attempt))
                self.completed[record.step] = (pid, record.attempt)
            elif isinstance(record, AttemptFailed):
                self.settled.add((epoch, record.step, record.attempt))
                if record.error.name != "AttemptLostError":  # the step's own error
                    self.own_failures.add((pid, record.step, record.attempt))

    def in_flight(self, pid: int, step: str, attempt: int) -> bool:
        """Whether ``pid`` started the attempt (in the journal) and never settled it in
        that lease."""
        return any(
            (epoch, step, attempt) not in self.settled
            for epoch, who, name, number in self.started
            if (who, name, number) == (pid, step, attempt)
        )

    def repeats(
        self, step: str, made: list[tuple[int, int]], killed: set[int], failed: set[int]
    ) -> list[str]:
        """Check every callback call of ``step`` against the journal and say why each
        repeat happened: one call is the journaled result; every other failed on its
        own in the journal, or was in flight (started in the journal, never settled in
        that lease) in a process that was then killed, or in one that lost its lease
        (a start sent as the lease went may be refused: then the journal lacks it)."""
        rest = list(made)
        if step in self.completed:
            assert self.completed[step] in rest, (step, made, self.completed[step])
            del rest[len(rest) - 1 - rest[::-1].index(self.completed[step])]
        causes = []
        for pid, attempt in rest:
            if (pid, step, attempt) in self.own_failures:
                continue
            if pid in killed and self.in_flight(pid, step, attempt):
                causes.append("kill")
            else:
                assert pid in failed, ("a repeat not in flight at a kill", step, pid, made)
                causes.append("lease")
        return causes
