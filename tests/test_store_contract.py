"""The store contract suite (:mod:`wfcli.testing.store_contract`) against the memory and
file stores; then the file store's own rules: torn tails, damage, never overwriting."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from wfcli import (
    FileStore,
    InstanceBusyError,
    JournalCorruptError,
    JournalStore,
    MemoryStore,
)
from wfcli.core.codec import (
    AttemptStarted,
    Record,
    RunStarted,
    StepCompleted,
    encode_record,
)
from wfcli.store.contract import Lease
from wfcli.store.files import store as file_store_module
from wfcli.testing.store_contract import (
    OTHER,
    OWNER,
    START,
    StoreContract,
    created,
    message,
    step_records,
)


class TestMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> JournalStore:
        return MemoryStore()

    def lose_lease(self, store: JournalStore, lease: Lease) -> bool:
        assert isinstance(store, MemoryStore)
        store.expire_lease(lease.instance_id)
        return True


class TestFileStore(StoreContract):
    def make_store(self, tmp_path: Path) -> JournalStore:
        return FileStore(tmp_path / "store")


# --- the file store: torn tails, damage, and never overwriting ---------------------------------


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def write_journal(store: FileStore, instance_id: str, count: int) -> Path:
    """A journal of a created record and ``count`` step records, written through a lease."""
    store.create(created(instance_id))
    with store.acquire(instance_id, OWNER) as lease:
        lease.append(step_records(count))
    return store.journal_path(instance_id)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def test_a_torn_last_record_is_ignored_at_every_byte_and_the_next_append_repairs_it(
    file_store: FileStore,
) -> None:
    path = write_journal(file_store, "torn", 2)
    whole = path.read_bytes()
    last_line_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    kept = file_store.read("torn")[:-1]
    extra = RunStarted(at=START, pid=1, host="h")

    for cut in range(last_line_start, len(whole)):
        path.write_bytes(whole[:cut])
        assert file_store.read("torn") == kept, f"cut at byte {cut}"

        with file_store.acquire("torn", OWNER) as lease:
            assert lease.read() == kept
            lease.append([extra])

        appended = encode_record(extra, len(kept) + 1).encode() + b"\n"
        assert path.read_bytes() == whole[:last_line_start] + appended
        assert file_store.read("torn") == [*kept, extra]


def test_a_torn_only_line_is_reported_not_taken_for_an_empty_journal(
    file_store: FileStore,
) -> None:
    path = write_journal(file_store, "torn", 0)
    path.write_bytes(path.read_bytes()[:-5])

    with pytest.raises(JournalCorruptError, match="no complete record"):
        file_store.read("torn")


def corrupt_and_expect(
    store: FileStore, instance_id: str, damage: Callable[[list[bytes]], list[bytes]], line: int
) -> JournalCorruptError:
    """Apply ``damage`` to the journal's lines; reading and leasing both report ``line``."""
    path = store.journal_path(instance_id)
    path.write_bytes(b"".join(each + b"\n" for each in damage(lines_of(path))))
    damaged = path.read_bytes()

    with pytest.raises(JournalCorruptError) as reported:
        store.read(instance_id)
    with store.acquire(instance_id, OWNER) as lease:
        with pytest.raises(JournalCorruptError):
            lease.read()
        with pytest.raises(JournalCorruptError):
            lease.append(step_records(1, prefix="never"))

    assert (reported.value.path, reported.value.line) == (str(path), line)
    assert str(reported.value).startswith(f"{path}:{line}: corrupt journal: ")
    assert path.read_bytes() == damaged  # nothing was overwritten or repaired
    return reported.value


def test_a_garbage_line_in_the_middle_is_reported_with_file_and_line(
    file_store: FileStore,
) -> None:
    write_journal(file_store, "bad", 4)

    error = corrupt_and_expect(file_store, "bad", lambda ls: [*ls[:2], b"#!garbage", *ls[2:]], 3)

    assert error.reason == "not JSON"


def test_a_flipped_byte_anywhere_in_a_middle_line_is_reported_at_that_line(
    file_store: FileStore,
) -> None:
    path = write_journal(file_store, "flip", 4)
    whole = path.read_bytes()
    start = len(b"".join(line + b"\n" for line in lines_of(path)[:2]))
    end = start + len(lines_of(path)[2]) + 1  # the third line and its newline

    for offset in range(start, end):
        flipped = bytearray(whole)
        flipped[offset] ^= 0x80  # no longer UTF-8, whatever the byte was
        path.write_bytes(bytes(flipped))
        with pytest.raises(JournalCorruptError) as reported:
            file_store.read("flip")
        assert reported.value.line == 3, f"flip at byte {offset}"
        assert path.read_bytes() == bytes(flipped)


def test_a_line_emptied_in_the_middle_is_reported(file_store: FileStore) -> None:
    write_journal(file_store, "hole", 4)
    corrupt_and_expect(file_store, "hole", lambda ls: [*ls[:2], b"", *ls[3:]], 3)


def test_a_deleted_first_line_is_reported(file_store: FileStore) -> None:
    write_journal(file_store, "headless", 2)
    error = corrupt_and_expect(file_store, "headless", lambda ls: ls[1:], 1)
    assert error.reason == "first record is not 'created'"


@pytest.mark.parametrize(
    ("change", "line", "found"),
    [
        pytest.param(lambda ls: [*ls[:1], *ls[2:]], 2, 3, id="deleted"),
        pytest.param(lambda ls: [*ls[:2], ls[1], *ls[2:]], 3, 2, id="duplicated"),
        pytest.param(lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, 3, id="swapped"),
    ],
)
def test_a_deleted_duplicated_or_moved_middle_line_is_reported(
    file_store: FileStore,
    change: Callable[[list[bytes]], list[bytes]],
    line: int,
    found: int,
) -> None:
    write_journal(file_store, "gap", 3)
    error = corrupt_and_expect(file_store, "gap", change, line)
    assert error.reason == (
        f"record number {found} where {line} belongs: a line is missing, duplicated or out of place"
    )


def test_a_duplicated_created_record_is_reported(file_store: FileStore) -> None:
    write_journal(file_store, "twice", 2)
    error = corrupt_and_expect(file_store, "twice", lambda ls: [*ls, ls[0]], 4)
    assert error.reason == "a second 'created' record"


def test_a_record_that_decodes_badly_is_reported_with_the_reason(
    file_store: FileStore,
) -> None:
    write_journal(file_store, "odd", 2)

    def negative_attempt(lines: list[bytes]) -> list[bytes]:
        document = json.loads(lines[1])
        document["attempt"] = -1
        return [lines[0], json.dumps(document).encode(), *lines[2:]]

    error = corrupt_and_expect(file_store, "odd", negative_attempt, 2)
    assert error.reason == "step_completed.attempt: expected a non-negative integer, got -1"


def test_a_journal_of_another_format_version_is_reported(file_store: FileStore) -> None:
    write_journal(file_store, "future", 1)

    def version_three(lines: list[bytes]) -> list[bytes]:
        return [json.dumps({**json.loads(line), "v": 3}).encode() for line in lines]

    error = corrupt_and_expect(file_store, "future", version_three, 1)
    assert error.reason == "format version 3 is not supported (this wfcli reads 1 and 2)"


def test_an_empty_journal_file_is_reported(file_store: FileStore) -> None:
    path = write_journal(file_store, "empty", 0)
    path.write_bytes(b"")

    with pytest.raises(JournalCorruptError, match=r"empty\.jsonl:1: corrupt journal: empty"):
        file_store.read("empty")
    assert path.read_bytes() == b""


def test_a_journal_copied_under_another_id_is_reported(file_store: FileStore) -> None:
    path = write_journal(file_store, "original", 1)
    copy = file_store.journal_path("copy")
    copy.write_bytes(path.read_bytes())

    with pytest.raises(JournalCorruptError, match="journal is for instance 'original'"):
        file_store.read("copy")


def test_a_line_over_the_length_limit_is_reported(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store", max_line_bytes=400)
    store.create(created("long"))
    with store.acquire("long", OWNER) as lease:
        lease.append([StepCompleted(at=START, step="big", kind="do", attempt=1, output="x" * 500)])

    with pytest.raises(JournalCorruptError, match=r"long\.jsonl:2: .*longer than 400 bytes"):
        store.read("long")


@pytest.mark.parametrize("limit", [1 << 20, 400], ids=["whole", "in-chunks"])
def test_a_journal_that_grows_while_it_is_read_is_read_to_its_new_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A lease holder appends between the reader's ``stat`` and its reads."""
    store = FileStore(tmp_path / "store", max_line_bytes=limit)
    path = write_journal(store, "grows", 2)
    with store.acquire("grows", OWNER) as lease:  # the line that arrives mid-read
        lease.append(step_records(3)[2:])
    arriving = lines_of(path)[-1] + b"\n"
    path.write_bytes(path.read_bytes()[: -len(arriving)])
    real_fstat = os.fstat

    def fstat_then_append(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        with path.open("ab") as journal:
            journal.write(arriving)
        monkeypatch.setattr(file_store_module.os, "fstat", real_fstat)
        return info

    monkeypatch.setattr(file_store_module.os, "fstat", fstat_then_append)
    assert store.read("grows")[1:] == step_records(3)


def test_a_damaged_inbox_message_is_reported_with_its_file(file_store: FileStore) -> None:
    file_store.create(created("order-1"))
    file_store.post("order-1", message(1))
    (posted,) = file_store.inbox_path("order-1").glob("*.json")
    posted.write_text("{not json")

    with pytest.raises(JournalCorruptError, match=f"{posted.name}:1: corrupt journal: not JSON"):
        file_store.pending("order-1")


def test_attempt_records_written_without_sync_keep_their_order(file_store: FileStore) -> None:
    file_store.create(created("order-1"))
    sequence: list[Record] = []
    with file_store.acquire("order-1", OWNER) as lease:
        for n in range(20):
            unsynced = AttemptStarted(at=START, step=f"s{n}", attempt=1)
            synced = StepCompleted(at=START, step=f"s{n}", kind="do", attempt=1, output=n)
            lease.append([unsynced], sync=False)
            lease.append([synced])
            sequence += [unsynced, synced]

    assert file_store.read("order-1")[1:] == sequence


# --- the file store: taking a lock never waits for a lease --------------------------------


def test_a_lock_held_by_a_lease_is_busy_at_once(
    file_store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_store.create(created("held"))
    slept: list[float] = []
    monkeypatch.setattr(file_store_module.time, "sleep", slept.append)
    with file_store.acquire("held", OWNER), pytest.raises(InstanceBusyError) as raised:
        FileStore(file_store.root).acquire("held", OTHER)
    assert (raised.value.pid, raised.value.host) == (OWNER.pid, OWNER.host)
    assert slept == []  # a claim moves on at once to the next instance


def test_a_status_probe_holding_the_lock_is_waited_out(
    file_store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_store.create(created("probed"))
    file_store.acquire("probed", OWNER).release()  # the lock file exists
    probe = os.open(file_store.lock_path("probed"), os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)  # as holder() takes it for microseconds
    slept: list[float] = []

    def probe_ends(seconds: float) -> None:
        slept.append(seconds)
        fcntl.flock(probe, fcntl.LOCK_UN)

    monkeypatch.setattr(file_store_module.time, "sleep", probe_ends)
    try:
        with file_store.acquire("probed", OTHER) as lease:
            assert file_store.holder("probed") == lease.owner
    finally:
        os.close(probe)
    assert len(slept) == 1


def test_a_claim_notices_a_journal_created_in_a_folder_that_had_long_been_still(
    file_store: FileStore,
) -> None:
    for n in range(3):
        file_store.create(created(f"q{n}", at=START + timedelta(seconds=n)))
    journals = file_store.root / "journals"
    an_hour_ago = time.time() - 3600
    os.utime(journals, (an_hour_ago, an_hour_ago))

    def claim_one() -> str:
        (lease,) = file_store.claim_due(START, OWNER, limit=1).leases
        lease.release()
        return lease.instance_id

    assert claim_one() == "q0"  # a full listing
    assert claim_one() == "q0"  # by the claim queue, the folder not listed: still
    file_store.create(replace(created("urgent", at=START + timedelta(hours=1)), priority=1))
    assert claim_one() == "urgent"
