"""A worker paused by the OS (SIGSTOP) past its lease, on a real PostgreSQL server:
another worker takes the instance over within the lease time, and when the paused one
resumes its next write is refused and it stops working that instance, writing nothing.
Both workers are real processes (``tests/drivers/pg_worker.py``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pg_machines_workflows import WORKFLOWS
from tests.postgres_support import PgServer, check_one_holder_at_a_time, require_driver
from wfcli import WorkflowClient
from wfcli.core.codec import RunStarted

require_driver()
from wfcli.store.postgres import PgStore  # noqa: E402 - after the skip without a driver

pytestmark = pytest.mark.slow

LEASE_SECONDS = 1.0
POLL_SECONDS = 0.2  # the driver's poll
HOLD_SECONDS = 2.0  # how long the paused worker's step takes
REPO = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def log_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def effects_of(folder: Path, instance_id: str) -> list[tuple[int, str, int]]:
    path = folder / instance_id
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(int(pid), step, int(attempt)) for pid, step, attempt in map(str.split, lines)]


def test_a_worker_paused_past_its_lease_is_taken_over_and_writes_nothing_after(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.store_url(lease_seconds=str(LEASE_SECONDS))
    store = PgStore(url)
    client = WorkflowClient(store, WORKFLOWS)
    client.create("held", params={"hold": HOLD_SECONDS}, instance_id="held")
    effects = tmp_path / "effects"
    effects.mkdir()

    def worker(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.jsonl"
        command = [sys.executable, "-m", "tests.drivers.pg_worker", url, str(effects), str(log)]
        return subprocess.Popen(command, cwd=REPO), log

    paused, paused_log = worker("paused")
    taker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: ("before", 1) in [e[1:] for e in effects_of(effects, "held")], "a claim")
        taker, taker_log = worker("taker")  # idle: the only instance is held
        wait_for(lambda: log_events(taker_log), "the second worker to start")
        wait_for(lambda: ("held", 1) in [e[1:] for e in effects_of(effects, "held")], "step held")
        paused.send_signal(signal.SIGSTOP)
        stopped_at = time.time()

        wait_for(lambda: client.status("held").status == "complete", "the takeover to finish")
        journal = store.read("held")
        runs = [r for r in journal if isinstance(r, RunStarted)]
        assert [r.pid for r in runs] == [paused.pid, taker.pid]
        took_over_after = runs[1].at.timestamp() - stopped_at
        assert took_over_after < LEASE_SECONDS + POLL_SECONDS + 2.0, took_over_after  # load

        paused.send_signal(signal.SIGCONT)
        refused = wait_for(
            lambda: [e for e in log_events(paused_log) if e["event"] == "failed"],
            "the resumed worker's write to be refused",
        )
        assert [(e["instance"], e["error"].split(":")[0]) for e in refused] == [
            ("held", "LeaseLostError")
        ]
        assert store.read("held") == journal  # it wrote nothing
        assert client.status("held").output == ["before", "held", "after"]
        # It stopped at once: the step in flight at the pause ran twice, nothing else.
        by_pid = {
            pid: [(step, n) for who, step, n in effects_of(effects, "held") if who == pid]
            for pid in (paused.pid, taker.pid)
        }
        assert by_pid == {
            paused.pid: [("before", 1), ("held", 1)],
            taker.pid: [("held", 2), ("after", 1)],
        }
        check_one_holder_at_a_time(store, "held")
        print(json.dumps({"took_over_after_seconds": round(took_over_after, 2)}))
    finally:
        paused.send_signal(signal.SIGCONT)
        for process in (paused, taker):
            if process is not None:
                process.terminate()
        codes = [process.wait(timeout=60) for process in (paused, taker) if process is not None]
        store.close()
    assert codes == [0, 0]
