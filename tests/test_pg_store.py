"""The PostgreSQL store on a real server: the store contract, then what only it does
(fencing, takeover after expiry, migrations racing, NOTIFY wake-ups, SQL listings)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.postgres_support import PgServer, require_driver
from tests.workflows_for_tests import WORKFLOWS
from wfcli import FakeClock, FileStore, WorkflowClient
from wfcli.core.codec import AttemptFailed, RunStarted
from wfcli.errors import InstanceBusyError, JournalCorruptError, LeaseLostError, StoreFaultError
from wfcli.store.contract import JournalStore, Lease, ListQuery
from wfcli.testing.store_contract import (
    OTHER,
    OWNER,
    START,
    StoreContract,
    all_at_once,
    created,
    message,
    step_records,
)

require_driver()
from wfcli.store.postgres import PgStore  # noqa: E402 - after the skip when there is no driver
from wfcli.store.postgres.schema import SCHEMA_VERSION  # noqa: E402
from wfcli.store.postgres.store import _PgLease  # noqa: E402


class TestPgStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, pg_server: PgServer) -> None:
        self.server = pg_server

    def make_store(self, tmp_path: Path) -> JournalStore:
        return PgStore(self.server.store_url())

    def lose_lease(self, store: JournalStore, lease: Lease) -> bool:
        assert isinstance(store, PgStore)
        store.expire_lease(lease.instance_id)
        return True

    def close_store(self, store: JournalStore) -> None:
        assert isinstance(store, PgStore)
        store.close()


# --- what only the PostgreSQL store does -------------------------------------------------------


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgStore]:
    store = PgStore(pg_server.store_url())
    yield store
    store.close()


def journal_rows(store: PgStore, instance_id: str) -> list[tuple[int, int, str]]:
    """(line number, lease epoch, text) of every journal row, in order."""
    return store.run(
        lambda conn: conn.execute(
            "SELECT line_no, epoch, line FROM wf_journal WHERE instance_id = %s ORDER BY line_no",
            (instance_id,),
        ).fetchall()
    )


def test_journal_rows_hold_the_file_stores_exact_lines(pg: PgStore, tmp_path: Path) -> None:
    files = FileStore(tmp_path / "files")
    for store in (pg, files):
        store.create(created("same", {"b": 1, "a": [2, "ü"]}))
        with store.acquire("same", OWNER) as lease:
            lease.append(step_records(3))
    file_lines = files.journal_path("same").read_text(encoding="utf-8").splitlines()
    assert [line for _, _, line in journal_rows(pg, "same")] == file_lines
    assert pg.read("same") == files.read("same")


def test_a_lost_lease_cannot_append_even_racing_its_successor(pg: PgStore) -> None:
    pg.create(created("fenced"))
    stale = pg.acquire("fenced", OWNER)
    assert isinstance(stale, _PgLease)
    stale.append(step_records(1))
    pg.expire_lease("fenced")
    successor = pg.acquire("fenced", OTHER)
    assert isinstance(successor, _PgLease)
    assert successor.epoch == stale.epoch + 1
    outcomes = all_at_once(
        2,
        lambda n: (stale if n == 0 else successor).append(step_records(3, prefix=f"w{n}-")[1:2]),
    )
    assert isinstance(outcomes[0], LeaseLostError)
    assert outcomes[1] is None
    rows = journal_rows(pg, "fenced")
    assert [epoch for _, epoch, _ in rows] == [0, stale.epoch, successor.epoch]
    successor.release()


def test_an_unrenewed_lease_expires_and_another_worker_takes_over(pg_server: PgServer) -> None:
    store = PgStore(pg_server.store_url(lease_seconds="1"))
    try:
        store.create(created("taken"))
        lease = store.acquire("taken", OWNER)
        store._forget(lease)  # type: ignore[arg-type]  # as if its process hung: no renewals
        with pytest.raises(InstanceBusyError):
            store.acquire("taken", OTHER)
        time.sleep(1.3)
        assert store.holder("taken") is None
        assert [s.id for s in store.list_instances(ListQuery(due_at=START)).instances] == ["taken"]
        with store.acquire("taken", OTHER) as taken:
            taken.append(step_records(1))
        with pytest.raises(LeaseLostError, match="expired or another worker took it over"):
            lease.append(step_records(1))
    finally:
        store.close()


def test_the_heartbeat_keeps_a_lease_alive_past_its_expiry(pg_server: PgServer) -> None:
    store = PgStore(pg_server.store_url(lease_seconds="0.6"))
    try:
        store.create(created("kept"))
        with store.acquire("kept", OWNER) as lease:
            time.sleep(1.5)
            assert store.holder("kept") == OWNER
            lease.append(step_records(1))
    finally:
        store.close()


def test_many_stores_migrating_a_fresh_schema_at_once_all_succeed(pg_server: PgServer) -> None:
    url = pg_server.store_url()
    stores = [PgStore(url) for _ in range(8)]
    outcomes = all_at_once(8, lambda n: stores[n].create(created(f"m{n}")))
    assert outcomes == [None] * 8
    assert stores[0].instance_ids() == [f"m{n}" for n in range(8)]
    versions = stores[0].run(
        lambda conn: conn.execute(
            "SELECT version FROM wf_schema_version ORDER BY version"
        ).fetchall()
    )
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]  # each once
    for store in stores:
        store.close()


def test_processes_migrating_a_fresh_schema_at_once_all_succeed(pg_server: PgServer) -> None:
    url = pg_server.store_url()
    script = (
        "import sys; from wfcli.store.postgres import PgStore;"
        "from wfcli.testing.store_contract import created;"
        "PgStore(sys.argv[1]).create(created(sys.argv[2]))"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, url, f"p{n}"]) for n in range(6)]
    assert [child.wait(timeout=60) for child in children] == [0] * 6
    store = PgStore(url)
    assert store.instance_ids() == [f"p{n}" for n in range(6)]
    store.close()


def test_a_lease_whose_idle_connection_the_server_closed_appends_on_a_new_one(
    pg: PgStore,
) -> None:
    # A database restart between two steps (here: its backend terminated) costs nothing:
    # nothing was waiting on that connection, so the next append opens another.
    pg.create(created("reconnects"))
    with pg.acquire("reconnects", OWNER) as lease:
        first, second = step_records(2)
        lease.append([first])
        backends = pg.run(
            lambda conn: conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND query LIKE '%wf_journal%'"
            ).fetchall()
        )
        assert backends
        for (backend,) in backends:
            pg.run(lambda conn, b=backend: conn.execute("SELECT pg_terminate_backend(%s)", (b,)))
        while pg.run(
            lambda conn: conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", ([b for (b,) in backends],)
            ).fetchone()
        ):
            time.sleep(0.01)  # until the backends are gone (their sockets closed)
        lease.append([second])
    assert pg.read("reconnects") == [created("reconnects"), first, second]


_KILLED_MID_CALLBACK = """
import os, signal, sys
from pathlib import Path
from wfcli import WorkflowClient, WorkflowEntrypoint
from wfcli.store.postgres import PgStore

marker = Path(sys.argv[2])

def effect():
    if not marker.exists():  # the first process dies inside its callback
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "done"

class Once(WorkflowEntrypoint):
    def run(self, event, step):
        return step.do("effect", effect)

store = PgStore(sys.argv[1])
client = WorkflowClient(store, {"once": Once})
if sys.argv[3] == "create":
    client.create("once", instance_id="victim")
print(client.execute("victim").status)
store.close()
"""


def test_a_process_killed_inside_a_callback_has_its_attempt_counted(
    pg_server: PgServer, tmp_path: Path
) -> None:
    # The step's start is sent without waiting for it and the callback runs at once:
    # it must be committed even though its process dies before the step's result.
    url = pg_server.store_url()
    marker = tmp_path / "ran"
    first = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_CALLBACK, url, str(marker), "create"],
        check=False,
        timeout=60,
    )
    assert first.returncode == -signal.SIGKILL
    assert marker.exists()
    store = PgStore(url)
    try:
        assert [type(r).__name__ for r in store.read("victim")][-1] == "AttemptStarted"
        store.expire_lease("victim")  # the dead process's lease, without waiting it out
        second = subprocess.run(
            [sys.executable, "-c", _KILLED_MID_CALLBACK, url, str(marker), "run"],
            check=False,
            timeout=60,
            capture_output=True,
            text=True,
        )
        assert (second.returncode, second.stdout.strip()) == (0, "complete")
        steps = [r for r in store.read("victim") if getattr(r, "step", None) == "effect"]
        assert [(type(r).__name__, getattr(r, "attempt", None)) for r in steps] == [
            ("AttemptStarted", 1),
            ("AttemptFailed", 1),
            ("AttemptStarted", 2),
            ("StepCompleted", 2),
        ]
        assert isinstance(steps[1], AttemptFailed)
        assert steps[1].error.name == "AttemptLostError"
    finally:
        store.close()


def test_wait_for_work_wakes_on_a_new_instance_and_a_posted_message(pg: PgStore) -> None:
    assert pg.wait_for_work(0.05) is False
    for poke in (lambda: pg.create(created("new")), lambda: pg.post("new", message(1))):
        timer = threading.Timer(0.2, poke)
        started = time.monotonic()
        timer.start()
        assert pg.wait_for_work(10) is True
        assert time.monotonic() - started < 5
        timer.join()
    assert pg.wait_for_work(0.05) is False  # each wake-up is reported once


def test_appends_never_notify(pg: PgStore) -> None:
    assert pg.wait_for_work(0) is False  # listening from now on
    pg.create(created("quiet"))
    assert pg.wait_for_work(0.05) is True  # the create
    with pg.acquire("quiet", OWNER) as lease:
        lease.append(step_records(5))
    assert pg.wait_for_work(0.2) is False


def real_runs(pg: PgStore, tmp_path: Path) -> tuple[WorkflowClient, dict[str, object]]:
    """A client over ``pg`` and the params its runs take, with one instance complete
    (``done``), two waiting for an event (``waits``, ``ready``) and one asleep for an
    hour (``asleep``)."""
    effects = tmp_path / "effects"
    effects.mkdir()
    client = WorkflowClient(pg, WORKFLOWS, clock=FakeClock())
    params: dict[str, object] = {"dir": str(effects), "n": 1}
    for workflow, instance_id, extra in (
        ("pipeline", "done", {}),
        ("approval", "waits", {}),
        ("approval", "ready", {}),
        ("sleeper", "asleep", {"seconds": 3600}),
    ):
        client.create(workflow, params={**params, **extra}, instance_id=instance_id)
        client.execute(instance_id)
    return client, params


def test_a_listing_equals_the_folding_default_after_real_runs(pg: PgStore, tmp_path: Path) -> None:
    client, params = real_runs(pg, tmp_path)
    pg.post("ready", message(1, "event"))
    client.send_event("ready", "approve", {"by": "me"})
    client.create("pipeline", params={"b": 1, "a": 2, **params}, instance_id="queued")
    client.create("flaky", params=params, instance_id="retrying")
    client.execute("retrying")
    client.create("sleeper", params={**params, "seconds": 60}, instance_id="paused")
    client.execute("paused")
    client.pause("paused")
    client.create("pipeline", params=params, instance_id="ended")
    client.terminate("ended")
    held = pg.acquire("queued", OWNER)
    pg.post("queued", message(2, "pause"))
    try:
        for query in (
            ListQuery(),
            ListQuery(limit=3),
            ListQuery(workflow="approval"),
            ListQuery(statuses=frozenset({"waiting", "terminated"})),
            ListQuery(statuses=frozenset({"waitingForPause"})),
            ListQuery(due_at=START),
            ListQuery(due_at=START + timedelta(days=400), limit=2),
        ):
            assert pg.list_instances(query) == JournalStore.list_instances(pg, query), query
    finally:
        held.release()
    assert pg.check().healthy


def test_still_due_from_the_row_equals_the_folding_default_after_real_runs(
    pg: PgStore, tmp_path: Path
) -> None:
    client, params = real_runs(pg, tmp_path)
    client.send_event("ready", "approve", {"by": "me"})
    client.create("pipeline", params=params, instance_id="queued")
    client.create("pipeline", params=params, instance_id="mailed")
    client.execute("mailed")
    pg.post("mailed", message(1, "pause"))
    pg.create(created("crashed"))
    with pg.acquire("crashed", OWNER) as lease:  # a run that started and died
        lease.read()
        lease.append([RunStarted(at=START, pid=OWNER.pid, host=OWNER.host)])
    listed = {s.id: s for s in pg.list_instances(ListQuery()).instances}
    due_at: dict[datetime, set[str]] = {}
    for moment in (START, START + timedelta(days=400)):
        for instance_id, summary in listed.items():
            with pg.acquire(instance_id, OWNER) as lease:
                due = pg.still_due(lease, summary, moment)
                assert due is JournalStore.still_due(pg, lease, summary, moment), instance_id
            if due:
                due_at.setdefault(moment, set()).add(instance_id)
    assert due_at[START] == {"ready", "queued", "mailed", "crashed"}
    assert due_at[START + timedelta(days=400)] == due_at[START] | {"asleep", "waits"}


def test_still_due_refuses_a_row_whose_summary_cannot_be_read(pg: PgStore) -> None:
    pg.create(created("odd"))
    listed = pg.list_instances(ListQuery()).instances[0]
    pg.run(
        lambda conn: conn.execute("UPDATE wf_instance SET summary = '{' WHERE instance_id = 'odd'")
    )
    with (
        pg.acquire("odd", OWNER) as lease,
        pytest.raises(JournalCorruptError, match="unreadable listing summary"),
    ):
        pg.still_due(lease, listed, START)


def test_a_database_that_cannot_be_reached_is_a_store_failure_without_the_password() -> None:
    store = PgStore("postgresql://wf:s3cret@127.0.0.1:1/wf?connect_timeout=2")
    with pytest.raises(StoreFaultError) as failed:
        store.instance_ids()
    assert "s3cret" not in str(failed.value)
    assert str(failed.value).startswith(
        "store failed: query postgresql://wf@127.0.0.1:1/wf?connect_timeout=2: "
    )
    store.close()


def test_doctor_finds_stray_rows_bad_counters_and_expired_leases(pg: PgStore) -> None:
    pg.create(created("fine"))
    pg.create(created("odd"))
    pg.acquire("fine", OWNER)  # never released
    pg.expire_lease("fine")

    def damage(conn: Any) -> None:
        conn.execute("UPDATE wf_instance SET next_line = 7 WHERE instance_id = 'odd'")
        conn.execute(
            "INSERT INTO wf_inbox (instance_id, message_id, action, body)"
            " VALUES ('gone', 'x', 'pause', '{}')"
        )

    pg.run(damage)
    found = {(f.severity, f.kind, f.instance_id) for f in pg.check().findings}
    assert ("problem", "line-counter", "odd") in found
    assert ("problem", "stray-rows", "gone") in found
    assert ("note", "expired-lease", "fine") in found
