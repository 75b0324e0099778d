"""The file store's instance index behind `wf list` and a worker's scan
(wfcli/store/files/index.py).

A listing must say exactly what reading every journal would say, read only the
journals that changed, and never trust an index entry, or an index file, that
does not match the store.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli_support import make_project
from tests.workflows_for_tests import Effects, journal_path, make_client
from wfcli import FakeClock, JournalCorruptError, MemoryStore, WorkflowClient
from wfcli.cli import app
from wfcli.core.codec import InboxMessage, JsonValue, RunStarted, Warned
from wfcli.store.contract import JournalStore, Lease, Owner
from wfcli.store.files.index import INDEX_NAME
from wfcli.store.files.store import FileStore

ELSEWHERE = Owner(worker_id="w-4242", pid=4242, host="elsewhere")


@pytest.fixture
def held() -> Iterator[list[Lease]]:
    """Leases a test holds; released at the end."""
    leases: list[Lease] = []
    yield leases
    for lease in leases:
        lease.release()


def a_store_of_every_kind(
    client: WorkflowClient, effects: Effects, clock: FakeClock, held: list[Lease]
) -> None:
    """One instance in each status (and the live variants), each created a second apart."""
    folder = str(effects.folder)

    def create(workflow: str, instance_id: str, params: object) -> str:
        client.create(workflow, params=params, instance_id=instance_id)
        clock.advance(timedelta(seconds=1))
        return instance_id

    create("pipeline", "queued", {"dir": folder, "n": 1})
    client.execute(create("pipeline", "complete", {"dir": folder, "n": 41}))
    client.execute(create("pipeline", "errored", {}))  # no "dir": run itself raises
    client.execute(create("sleeper", "asleep", {"dir": folder, "seconds": 60}))
    client.execute(create("flaky", "retrying", {"dir": folder}))
    client.execute(create("approval", "event-ready", {"dir": folder}))
    client.send_event("event-ready", "approve", {"by": "ana"})
    client.execute(create("approval", "paused", {"dir": folder}))
    client.pause("paused")
    client.execute(create("sleeper", "terminated", {"dir": folder, "seconds": 60}))
    client.terminate("terminated")
    store = client.store
    with store.acquire(create("pipeline", "interrupted", {"dir": folder}), ELSEWHERE) as lease:
        lease.append([RunStarted(at=clock.now(), pid=ELSEWHERE.pid, host=ELSEWHERE.host)])
        lease.append([Warned(at=clock.now(), step=None, message="a warning")])
    lease = store.acquire(create("pipeline", "held", {"dir": folder}), ELSEWHERE)
    held.append(lease)
    lease.append([RunStarted(at=clock.now(), pid=ELSEWHERE.pid, host=ELSEWHERE.host)])
    pause = InboxMessage(message_id=uuid.uuid4().hex, action="pause", sent_at=clock.now())
    store.post("held", pause)


def read_everything(client: WorkflowClient) -> list[dict[str, JsonValue]]:
    """What `wf list --json` must show: every journal read and folded, newest first."""
    statuses = [client.status(instance_id) for instance_id in client.store.instance_ids()]
    statuses.sort(key=lambda s: (s.state.created, s.id), reverse=True)
    return [status.to_json(steps=False) for status in statuses]


def listed(client: WorkflowClient) -> list[dict[str, JsonValue]]:
    return [summary.to_json() for summary in client.list_instances()]


def indexed_pipelines(
    client: WorkflowClient, effects: Effects, count: int
) -> list[dict[str, JsonValue]]:
    """``count`` queued pipelines p0, p1, ... listed once (so indexed); what a listing shows."""
    for n in range(count):
        client.create("pipeline", params={"dir": str(effects.folder), "n": n}, instance_id=f"p{n}")
    expected = read_everything(client)
    client.list_instances()
    return expected


def index_file(store_dir: Path) -> Path:
    return store_dir / "cache" / INDEX_NAME


def checksum(payload: bytes) -> bytes:
    """The index file's first line: CRC-32 of the rest, 8 hex digits."""
    return b"%08x" % zlib.crc32(payload)


def read_index(store_dir: Path) -> Any:
    first, _, payload = index_file(store_dir).read_bytes().partition(b"\n")
    assert first == checksum(payload)
    return json.loads(payload)


def write_index(store_dir: Path, payload: bytes) -> None:
    index_file(store_dir).write_bytes(checksum(payload) + b"\n" + payload)


def test_a_listing_says_what_reading_every_journal_says_cold_warm_and_in_a_new_process(
    client: WorkflowClient, store_dir: Path, effects: Effects, clock: FakeClock, held: list[Lease]
) -> None:
    a_store_of_every_kind(client, effects, clock, held)
    expected = read_everything(client)
    statuses = {document["id"]: document["status"] for document in expected}
    assert statuses == {
        "queued": "queued",
        "complete": "complete",
        "errored": "errored",
        "asleep": "waiting",
        "retrying": "waiting",
        "event-ready": "waiting",
        "paused": "paused",
        "terminated": "terminated",
        "interrupted": "running",
        "held": "waitingForPause",
    }
    assert not index_file(store_dir).exists()

    assert listed(client) == expected  # no index yet: every journal read
    assert index_file(store_dir).exists()
    assert listed(client) == expected  # the same client, index in memory
    assert listed(make_client(store_dir, clock=clock)) == expected  # index from the store


def test_filters_and_limit_apply_to_indexed_instances(
    client: WorkflowClient, effects: Effects, clock: FakeClock, held: list[Lease]
) -> None:
    a_store_of_every_kind(client, effects, clock, held)
    client.list_instances()

    waiting = client.list_instances(statuses=["waiting"])
    approvals = client.list_instances(workflow="approval")
    newest = client.list_instances(limit=2)

    assert [s.id for s in waiting] == ["event-ready", "retrying", "asleep"]
    assert [s.id for s in approvals] == ["paused", "event-ready"]
    assert [s.id for s in newest] == ["held", "interrupted"]
    assert newest[1].interrupted
    assert newest[1].holder is None
    assert newest[0].holder == ELSEWHERE
    assert newest[0].pending_messages == ("pause",)


def test_only_journals_whose_version_changed_are_read_again(
    client: WorkflowClient, store_dir: Path, effects: Effects
) -> None:
    for n in range(3):
        client.execute(
            client.create(
                "pipeline", params={"dir": str(effects.folder), "n": n}, instance_id=f"p{n}"
            ).id
        )
    client.list_instances()
    path = journal_path(store_dir, "p1")
    before = path.stat()
    # Damage p1 in place, keeping its size and times: its version is unchanged, so the
    # index entry stands (a whole read would report the damage) ...
    data = bytearray(path.read_bytes())
    data[5:9] = b"####"
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    fresh = make_client(store_dir)

    assert [s.id for s in fresh.list_instances()] == ["p2", "p1", "p0"]
    with pytest.raises(JournalCorruptError, match=r"p1.jsonl:1: corrupt journal"):
        fresh.status("p1")

    # ... and once the journal's version moves, it is read again and the damage shows.
    os.utime(path)
    damaged: list[JournalCorruptError] = []
    assert [s.id for s in fresh.list_instances(damaged=damaged)] == ["p2", "p0"]
    assert [error.line for error in damaged] == [1]


def test_changed_added_and_deleted_instances_show_at_the_next_listing(
    client: WorkflowClient, effects: Effects, clock: FakeClock
) -> None:
    folder = str(effects.folder)
    asleep = client.create("sleeper", params={"dir": folder, "seconds": 60}, instance_id="a")
    gone = client.create("pipeline", params={"dir": folder, "n": 1}, instance_id="b")
    asleep.execute()
    assert [(s.id, s.status) for s in client.list_instances()] == [
        ("b", "queued"),
        ("a", "waiting"),
    ]

    clock.advance(timedelta(minutes=5))
    asleep.execute()
    client.delete(gone.id)
    client.create("pipeline", params={"dir": folder, "n": 2}, instance_id="c")
    other = make_client(client.store.location(), clock=clock)
    other.create("pipeline", params={"dir": folder, "n": 3}, instance_id="d")

    rows = [(s.id, s.status) for s in client.list_instances()]
    assert rows == [("d", "queued"), ("c", "queued"), ("a", "complete")]


def test_an_id_created_again_after_a_delete_is_not_taken_for_the_old_instance(
    client: WorkflowClient, effects: Effects
) -> None:
    folder = str(effects.folder)
    client.execute(client.create("pipeline", params={"dir": folder, "n": 1}, instance_id="x").id)
    assert client.list_instances()[0].status == "complete"
    client.delete("x")
    client.create("pipeline", params={"dir": folder, "n": 2}, instance_id="x")

    (again,) = client.list_instances()

    assert (again.status, again.to_json()["params"]) == ("queued", {"dir": folder, "n": 2})


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"instances": []}',
        b'{"instances": {"p0": "x"}}',
        b'{"instances": {"p0": ["v", {"status": "complete"}]}}',
        b'{"instances": {"p0": [1, {}]}}',
        b"[" * 100_000,
    ],
    ids=[
        "empty",
        "not-json",
        "array",
        "wrong-shape",
        "bad-entry",
        "partial-entry",
        "bad-version",
        "deep",
    ],
)
def test_an_index_of_another_shape_is_ignored_and_rebuilt(
    client: WorkflowClient, store_dir: Path, effects: Effects, payload: bytes
) -> None:
    expected = indexed_pipelines(client, effects, 2)
    write_index(store_dir, payload)

    assert listed(make_client(store_dir)) == expected
    assert sorted(read_index(store_dir)["instances"]) == ["p0", "p1"]


def test_an_index_entry_with_a_matching_version_but_a_bad_field_spoils_the_whole_index(
    client: WorkflowClient, store_dir: Path, effects: Effects
) -> None:
    expected = indexed_pipelines(client, effects, 1)
    document = read_index(store_dir)
    document["instances"]["p0"][1]["status"] = "exploded"
    write_index(store_dir, json.dumps(document).encode())

    assert listed(make_client(store_dir)) == expected


@pytest.mark.parametrize("damage", ["flipped", "truncated", "emptied", "no-checksum"])
def test_an_index_that_fails_its_checksum_is_ignored_even_if_it_still_parses(
    client: WorkflowClient, store_dir: Path, effects: Effects, damage: str
) -> None:
    expected = indexed_pipelines(client, effects, 2)
    data = index_file(store_dir).read_bytes()
    damaged = {
        "flipped": data.replace(b'"queued"', b'"paused"', 1),  # same length, still JSON
        "truncated": data[: len(data) // 2],
        "emptied": b"",
        "no-checksum": data.partition(b"\n")[2],
    }[damage]
    assert damaged != data
    index_file(store_dir).write_bytes(damaged)

    assert listed(make_client(store_dir)) == expected


def test_a_damaged_journal_is_never_indexed_and_is_reported_at_every_listing(
    client: WorkflowClient, store_dir: Path, effects: Effects
) -> None:
    for n in range(2):
        client.create("pipeline", params={"dir": str(effects.folder), "n": n}, instance_id=f"p{n}")
    with open(journal_path(store_dir, "p0"), "ab") as journal:
        journal.write(b"garbage\n")

    for lister in (client, client, make_client(store_dir)):
        damaged: list[JournalCorruptError] = []
        assert [s.id for s in lister.list_instances(damaged=damaged)] == ["p1"]
        assert [(e.line, e.reason) for e in damaged] == [(2, "not JSON")]
        with pytest.raises(JournalCorruptError):
            lister.list_instances()
    assert sorted(read_index(store_dir)["instances"]) == ["p1"]


def test_due_uses_the_index_and_the_clock_of_the_moment(
    client: WorkflowClient, effects: Effects, clock: FakeClock
) -> None:
    folder = str(effects.folder)
    client.execute(
        client.create("sleeper", params={"dir": folder, "seconds": 60}, instance_id="s").id
    )
    client.execute(client.create("approval", params={"dir": folder}, instance_id="e").id)
    client.create("pipeline", params={"dir": folder, "n": 1}, instance_id="q")
    assert client.due() == ["q"]

    client.send_event("e", "approve", {"by": "ana"})
    assert client.due() == ["e", "q"]  # an event for its wait is buffered
    clock.advance(timedelta(minutes=2))
    assert client.due() == ["e", "q", "s"]  # no journal changed, but its time came


def test_the_file_store_keeps_its_index_private_and_only_wf_list_writes_it(
    store_dir: Path, effects: Effects
) -> None:
    client = make_client(store_dir)
    client.create("pipeline", params={"dir": str(effects.folder), "n": 1}, instance_id="p")
    client.due()
    client.status("p")
    assert not (store_dir / "cache").exists()

    client.list_instances()

    assert stat.S_IMODE((store_dir / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE(index_file(store_dir).stat().st_mode) == 0o600
    assert [p.name for p in (store_dir / "cache").iterdir()] == [INDEX_NAME]


def test_wf_list_output_is_the_same_before_and_after_the_index_exists(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    client = make_client(project.store)
    params = json.loads(project.params(n=1))
    client.execute(client.create("pipeline", params=params).id)
    client.create("pipeline", params=params)

    first, second = (
        CliRunner().invoke(app, ["list", "--json", *project.options()]) for _ in range(2)
    )

    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout
    assert [d["status"] for d in json.loads(first.stdout)["instances"]] == ["queued", "complete"]
    assert index_file(project.store).exists()


@pytest.mark.parametrize("store", [MemoryStore(), None], ids=["memory", "file"])
def test_every_store_lists_what_its_journals_say(
    store: JournalStore | None, tmp_path: Path, effects: Effects, clock: FakeClock
) -> None:
    chosen = store if store is not None else FileStore(tmp_path / "store")
    client = WorkflowClient(chosen, make_client(tmp_path / "unused").workflows, clock=clock)
    client.execute(client.create("pipeline", params={"dir": str(effects.folder), "n": 1}).id)
    client.list_instances()

    if isinstance(chosen, FileStore):  # the file store lists through its index
        assert chosen.load_cache(INDEX_NAME) is not None
    assert listed(client) == read_everything(client)


def test_a_store_that_cannot_take_the_index_still_lists(
    client: WorkflowClient, store_dir: Path, effects: Effects
) -> None:
    client.create("pipeline", params={"dir": str(effects.folder), "n": 1}, instance_id="p")
    expected = read_everything(client)
    (store_dir / "cache").write_bytes(b"a file where the cache folder belongs")

    assert listed(client) == expected
    assert listed(make_client(store_dir)) == expected
    assert (store_dir / "cache").read_bytes() == b"a file where the cache folder belongs"


def test_listings_racing_runs_and_each_other_never_keep_a_stale_entry(
    store_dir: Path, effects: Effects
) -> None:
    """Writers change journals while two listers refresh and save the index over each other."""
    runner = make_client(store_dir)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_listing() -> None:
        lister = make_client(store_dir)
        try:
            while not stop.is_set():
                lister.list_instances()
                make_client(store_dir).list_instances()  # a fresh process's view, saving too
        except BaseException as error:
            errors.append(error)

    listers = [threading.Thread(target=keep_listing) for _ in range(2)]
    for thread in listers:
        thread.start()
    try:
        for n in range(25):
            handle = runner.create(
                "sleeper", params={"dir": str(effects.folder), "seconds": 60}, instance_id=f"s{n}"
            )
            handle.execute()
            if n % 3 == 0:
                handle.terminate()
    finally:
        stop.set()
        for thread in listers:
            thread.join()

    assert errors == []
    expected = read_everything(runner)
    assert listed(make_client(store_dir)) == expected
    assert {d["status"] for d in expected} == {"waiting", "terminated"}


def counting_reads(monkeypatch: pytest.MonkeyPatch, store: JournalStore) -> list[str]:
    """The IDs of the journals ``store`` reads from now on, in order."""
    reads: list[str] = []
    real_read = store.read

    def read(instance_id: str) -> Any:
        reads.append(instance_id)
        return real_read(instance_id)

    monkeypatch.setattr(store, "read", read)
    return reads


def run_claimed(client: WorkflowClient, limit: int) -> list[str]:
    """Claim up to ``limit`` due instances, as a worker does, and run each on its lease."""
    claimed = []
    for lease in client.claim_due(limit).leases:
        client.execute(lease.instance_id, lease=lease)
        claimed.append(lease.instance_id)
    return claimed


def test_a_journal_as_a_workers_lease_left_it_is_listed_without_being_read_again(
    client: WorkflowClient, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed_pipelines(client, effects, 3)
    client.create("sleeper", params={"dir": str(effects.folder), "seconds": 60}, instance_id="s")
    ran = run_claimed(client, 2)
    reads = counting_reads(monkeypatch, client.store)

    shown = listed(client)

    assert reads == []
    assert shown == read_everything(client)
    statuses = {d["id"]: d["status"] for d in shown}
    assert [statuses[instance_id] for instance_id in ran] == ["complete", "complete"]


def test_a_journal_changed_since_a_workers_lease_left_it_is_read_again(
    client: WorkflowClient, store_dir: Path, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    asleep = client.create("sleeper", params={"dir": str(effects.folder), "seconds": 60})
    assert run_claimed(client, 1) == [asleep.id]
    make_client(store_dir).terminate(asleep.id)  # another process changes the journal
    reads = counting_reads(monkeypatch, client.store)

    shown = listed(client)

    assert reads == [asleep.id]
    assert shown == read_everything(client)
    assert [d["status"] for d in shown] == ["terminated"]


def test_a_process_that_only_lists_and_runs_reads_what_its_leases_wrote(
    client: WorkflowClient, effects: Effects, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a worker (no claim queue): its leases keep nothing, so nothing piles up."""
    indexed_pipelines(client, effects, 1)
    client.execute("p0")
    reads = counting_reads(monkeypatch, client.store)

    assert listed(client) == read_everything(client)
    assert reads[0] == "p0"


def test_an_instance_a_worker_ran_and_then_deleted_is_not_listed_again(
    client: WorkflowClient, effects: Effects
) -> None:
    indexed_pipelines(client, effects, 2)
    ran = run_claimed(client, 1)
    client.delete(ran[0])

    assert [d["id"] for d in listed(client)] == [i for i in ("p1", "p0") if i not in ran]
    assert listed(client) == read_everything(client)
