"""The JournalStore contract, run against every store; then the file store's damage rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wfcli import (
    FileStore,
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    JournalStore,
    MemoryStore,
)
from wfcli.core.codec import (
    AttemptStarted,
    Created,
    InboxMessage,
    Record,
    RunStarted,
    StepCompleted,
    encode_record,
)
from wfcli.store.contract import LockOwner

T = TypeVar("T")
START = datetime(2030, 1, 1, tzinfo=timezone.utc)
OWNER = LockOwner(pid=4242, host="worker-1")
OTHER = LockOwner(pid=5151, host="worker-2")


def created(instance_id: str, params: object = None) -> Created:
    return Created(at=START, instance_id=instance_id, workflow="wf", params=params)


def step_records(count: int, prefix: str = "s") -> list[Record]:
    """``count`` distinct records, as a run would append them."""
    return [
        StepCompleted(
            at=START + timedelta(seconds=n),
            step=f"{prefix}{n}",
            kind="do",
            attempt=1,
            output={"n": n},
        )
        for n in range(count)
    ]


def message(number: int, action: Any = "event") -> InboxMessage:
    return InboxMessage(
        message_id=f"m{number:04d}",
        action=action,
        sent_at=START,
        event_type="t" if action == "event" else None,
        payload=number,
    )


def all_at_once(count: int, task: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``task(0..count-1)`` on threads released together; results or raised errors."""
    gate = threading.Barrier(count)
    outcomes: list[T | BaseException] = [RuntimeError("never ran")] * count

    def worker(index: int) -> None:
        gate.wait()
        try:
            outcomes[index] = task(index)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalStore]:
    if request.param == "file":
        yield FileStore(tmp_path / "store")
    else:
        yield MemoryStore()


class TestJournalStoreContract:
    """What every JournalStore promises in its docstrings (wfcli/journal.py)."""

    def test_create_makes_a_journal_whose_first_record_is_the_created_one(
        self, store: JournalStore
    ) -> None:
        record = created("order-1", {"sku": "A"})
        assert not store.exists("order-1")

        store.create(record)

        assert store.exists("order-1")
        assert store.read("order-1") == [record]
        assert store.instance_ids() == ["order-1"]

    def test_create_of_a_taken_id_raises_and_writes_nothing(self, store: JournalStore) -> None:
        store.create(created("order-1", "first"))

        with pytest.raises(InstanceExistsError):
            store.create(created("order-1", "second"))

        assert store.read("order-1") == [created("order-1", "first")]

    def test_of_many_concurrent_creators_of_one_id_exactly_one_succeeds(
        self, store: JournalStore
    ) -> None:
        outcomes = all_at_once(8, lambda n: store.create(created("contested", n)))

        winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
        assert len(winners) == 1
        losers = [o for o in outcomes if o is not None]
        assert all(isinstance(o, InstanceExistsError) for o in losers)
        assert store.read("contested") == [created("contested", winners[0])]

    def test_unknown_instances_are_not_found(self, store: JournalStore) -> None:
        assert not store.exists("ghost")
        with pytest.raises(InstanceNotFoundError, match="'ghost'"):
            store.read("ghost")
        with pytest.raises(InstanceNotFoundError):
            store.acquire("ghost", OWNER)
        with pytest.raises(InstanceNotFoundError):
            store.post("ghost", message(1))
        assert store.holder("ghost") is None

    def test_instance_ids_are_sorted(self, store: JournalStore) -> None:
        for instance_id in ("b-2", "a-1", "C-3", "_0"):
            store.create(created(instance_id))
        assert store.instance_ids() == ["C-3", "_0", "a-1", "b-2"]

    def test_a_lease_appends_records_in_order_and_reads_them_back(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        first, second, third = step_records(3)

        with store.acquire("order-1", OWNER) as lease:
            lease.append([first])
            lease.append([second, third], sync=False)
            from_lease = lease.read()

        expected = [created("order-1"), first, second, third]
        assert from_lease == store.read("order-1") == expected

    def test_the_holder_is_the_lease_owner_until_release(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        assert store.holder("order-1") is None

        lease = store.acquire("order-1", OWNER)
        assert (lease.instance_id, lease.owner) == ("order-1", OWNER)
        assert store.holder("order-1") == OWNER
        lease.release()

        assert store.holder("order-1") is None

    def test_a_second_acquire_is_busy_naming_the_holder_until_release(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)

        with pytest.raises(InstanceBusyError, match="process 4242 on worker-1") as busy:
            store.acquire("order-1", OTHER)
        assert (busy.value.instance_id, busy.value.pid, busy.value.host) == (
            "order-1",
            4242,
            "worker-1",
        )
        assert store.holder("order-1") == OWNER

        lease.release()
        with store.acquire("order-1", OTHER) as second:
            assert store.holder("order-1") == OTHER
            second.append(step_records(1))
        assert store.read("order-1")[1:] == step_records(1)

    def test_release_is_idempotent_and_leaving_the_context_releases(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)
        lease.release()
        lease.release()
        with store.acquire("order-1", OWNER):
            pass
        assert store.holder("order-1") is None

    def test_leases_of_different_instances_are_independent(self, store: JournalStore) -> None:
        store.create(created("one"))
        store.create(created("two"))
        with store.acquire("one", OWNER), store.acquire("two", OTHER):
            assert (store.holder("one"), store.holder("two")) == (OWNER, OTHER)

    def test_of_many_concurrent_acquirers_exactly_one_gets_the_lease(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        contenders = 6
        refusals = threading.Semaphore(0)

        def contend(n: int) -> int:
            try:
                lease = store.acquire("order-1", LockOwner(pid=n, host="h"))
            except InstanceBusyError:
                refusals.release()
                raise
            with lease:  # held until every other contender has been refused
                for _ in range(contenders - 1):
                    assert refusals.acquire(timeout=10)
            return n

        outcomes = all_at_once(contenders, contend)

        winners = [o for o in outcomes if isinstance(o, int)]
        assert len(winners) == 1
        losers = [o for o in outcomes if not isinstance(o, int)]
        assert all(isinstance(o, InstanceBusyError) for o in losers)
        assert {o.pid for o in losers if isinstance(o, InstanceBusyError)} == set(winners)
        assert store.holder("order-1") is None

    def test_posted_messages_are_pending_oldest_first(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        sent = [message(n, action) for n, action in enumerate(["event", "pause", "event"])]
        for each in sent:
            store.post("order-1", each)

        assert store.pending("order-1") == sent
        with store.acquire("order-1", OWNER) as lease:
            assert lease.pending() == sent
        assert store.read("order-1") == [created("order-1")]  # posting never writes the journal

    def test_discard_removes_exactly_the_named_messages(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        sent = [message(n) for n in range(4)]
        for each in sent:
            store.post("order-1", each)

        with store.acquire("order-1", OWNER) as lease:
            lease.discard([sent[1].message_id, sent[3].message_id, "never-posted"])
            assert lease.pending() == [sent[0], sent[2]]

        assert store.pending("order-1") == [sent[0], sent[2]]

    def test_messages_posted_from_many_threads_are_all_kept_in_each_senders_order(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))

        def send_ten(sender: int) -> None:
            for n in range(10):
                store.post("order-1", message(sender * 100 + n))

        all_at_once(4, send_ten)

        pending = [m.payload for m in store.pending("order-1")]
        assert sorted(pending) == sorted(s * 100 + n for s in range(4) for n in range(10))
        for sender in range(4):
            assert [p for p in pending if p // 100 == sender] == [
                sender * 100 + n for n in range(10)
            ]

    def test_delete_instance_removes_journal_and_inbox_and_frees_the_id(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        store.post("order-1", message(1))
        lease = store.acquire("order-1", OWNER)

        lease.delete_instance()

        assert not store.exists("order-1")
        assert store.instance_ids() == []
        assert store.holder("order-1") is None
        assert store.pending("order-1") == []
        with pytest.raises(InstanceNotFoundError):
            store.read("order-1")
        lease.release()  # already released: harmless
        store.create(created("order-1", "again"))
        assert store.read("order-1") == [created("order-1", "again")]

    def test_location_is_text_for_people(self, store: JournalStore) -> None:
        assert isinstance(store.location(), str)
        assert store.location()

    def test_a_journal_version_changes_with_every_append_and_only_then(
        self, store: JournalStore
    ) -> None:
        assert store.journal_versions() == {}
        store.create(created("order-1"))
        store.create(created("order-2"))
        seen = [store.journal_versions()]
        assert sorted(seen[0]) == ["order-1", "order-2"]
        with store.acquire("order-1", OWNER) as lease:
            for record in step_records(3):
                lease.append([record], sync=False)
                seen.append(store.journal_versions())
        store.read("order-1")
        store.post("order-1", message(1))
        assert store.journal_versions() == seen[-1]  # reads and inbox messages change nothing

        assert len({versions["order-1"] for versions in seen}) == 4
        assert len({versions["order-2"] for versions in seen}) == 1

    def test_a_journal_created_again_under_a_deleted_id_has_a_new_version(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        before = store.journal_versions()["order-1"]
        with store.acquire("order-1", OWNER) as lease:
            lease.delete_instance()
        assert store.journal_versions() == {}
        store.create(created("order-1"))

        assert store.journal_versions()["order-1"] != before

    def test_every_instance_with_a_pending_message_is_among_the_inbox_ids(
        self, store: JournalStore
    ) -> None:
        for instance_id in ("quiet", "posted", "applied"):
            store.create(created(instance_id))
        assert store.inbox_ids() == set()
        store.post("posted", message(1))
        store.post("applied", message(2))
        with store.acquire("applied", OWNER) as lease:
            lease.discard([message(2).message_id])

        assert "posted" in store.inbox_ids()
        assert "quiet" not in store.inbox_ids()
        assert store.pending("applied") == []

    def test_a_cache_keeps_the_last_data_saved_under_its_name(self, store: JournalStore) -> None:
        assert store.load_cache("index-v1.json") is None

        store.save_cache("index-v1.json", b"first")
        store.save_cache("index-v1.json", b"second")
        store.save_cache("other", b"")

        assert store.load_cache("index-v1.json") == b"second"
        assert store.load_cache("other") == b""
        assert store.instance_ids() == []

    @pytest.mark.parametrize("name", ["", "..", "../journals", "a/b", "x\x00"])
    def test_a_cache_name_that_is_not_a_plain_file_name_is_refused(
        self, store: JournalStore, name: str
    ) -> None:
        with pytest.raises(ValueError, match="bad cache name"):
            store.save_cache(name, b"data")
        with pytest.raises(ValueError, match="bad cache name"):
            store.load_cache(name)


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

    def version_two(lines: list[bytes]) -> list[bytes]:
        return [json.dumps({**json.loads(line), "v": 2}).encode() for line in lines]

    error = corrupt_and_expect(file_store, "future", version_two, 1)
    assert error.reason == "format version 2 is not supported (this wfcli reads 1)"


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


def test_a_damaged_inbox_message_is_reported_with_its_file(file_store: FileStore) -> None:
    file_store.create(created("order-1"))
    file_store.post("order-1", message(1))
    (posted,) = file_store.inbox_path("order-1").iterdir()
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
