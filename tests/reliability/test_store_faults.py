"""A failed or short write, or a failed sync, leaves every store file as it was.

Each test arms the fault seam (:mod:`tests.reliability.faults`) for one call of
one operation and checks the journal, the inbox, the listing index or the lock
file byte for byte afterwards: no partial line, no record counted but unwritten,
no lock kept.
"""

from __future__ import annotations

import errno
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.reliability.faults import FAULT_ERRNOS, Fault, faulty_disk
from tests.reliability.support import snapshot
from tests.workflows_for_tests import read_journal_strictly
from wfcli import FileStore
from wfcli.core.codec import Created, InboxMessage, RunStarted
from wfcli.errors import LeaseLostError, StoreFaultError
from wfcli.store.contract import ListQuery, Owner

AT = datetime(2030, 1, 1, tzinfo=timezone.utc)
JOURNAL_FAULTS = [
    *(Fault("write", 1, code) for code in FAULT_ERRNOS),
    *(Fault("fdatasync", 1, code) for code in FAULT_ERRNOS),
    Fault("write", 1, errno.ENOSPC, short=True),
]


def fault_id(fault: Fault) -> str:
    return f"{fault.operation}-{errno.errorcode[fault.code]}{'-short' if fault.short else ''}"


def created(instance_id: str = "one") -> Created:
    return Created(at=AT, instance_id=instance_id, workflow="w", params={"n": 1})


def started() -> RunStarted:
    return RunStarted(at=AT, pid=1, host="here")


def message(action: str = "pause") -> InboxMessage:
    return InboxMessage(message_id=uuid.uuid4().hex, action=action, sent_at=AT)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    files = FileStore(tmp_path / "store")
    files.create(created())
    return files


@pytest.mark.parametrize("fault", JOURNAL_FAULTS, ids=fault_id)
def test_a_failed_append_leaves_the_journal_as_it_was_and_gives_the_lease_up(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    journal = store.journal_path("one")
    lease = store.acquire("one", Owner.current())
    lease.read()
    lease.append([started()])
    before = journal.read_bytes()

    with faulty_disk(monkeypatch, fault) as disk, pytest.raises(StoreFaultError) as raised:
        lease.append([started(), started()])

    assert disk.fired
    assert journal.read_bytes() == before
    assert str(journal) in str(raised.value)
    assert errno.errorcode[fault.code] in str(raised.value)
    assert store.holder("one") is None
    with pytest.raises(LeaseLostError):
        lease.append([started()])
    # The next holder numbers its record after the last one written, not after the lost ones.
    with store.acquire("one", Owner.current()) as again:
        again.read()
        again.append([started()])
    assert len(read_journal_strictly(journal)) == 3
    assert len(store.read("one")) == 3


@pytest.mark.parametrize(
    "fault",
    [
        *(Fault("write", 1, code) for code in FAULT_ERRNOS),
        Fault("write", 1, errno.ENOSPC, short=True),
        Fault("fsync", 1, errno.EIO),
        Fault("link", 1, errno.ENOSPC),
    ],
    ids=fault_id,
)
def test_a_failed_create_leaves_no_journal_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    store = FileStore(tmp_path / "store")
    store.create(created("first"))
    before = snapshot(store.root)

    with faulty_disk(monkeypatch, fault), pytest.raises(StoreFaultError, match="create"):
        store.create(created("second"))

    assert snapshot(store.root) == before
    store.create(created("second"))  # the disk healed: the ID is free
    assert len(store.read("second")) == 1


def test_a_create_whose_folder_sync_fails_leaves_a_whole_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "store")
    store.create(created("first"))

    # The second fsync is the journals folder's, after the link: said, but no harm.
    with faulty_disk(monkeypatch, Fault("fsync", 2, errno.EIO)), pytest.raises(StoreFaultError):
        store.create(created("second"))

    assert len(read_journal_strictly(store.journal_path("second"))) == 1
    assert list((store.root / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "fault",
    [
        *(Fault("write", 1, code) for code in FAULT_ERRNOS),
        Fault("write", 1, errno.ENOSPC, short=True),
        Fault("fsync", 1, errno.EIO),  # the message file
        Fault("pwrite", 1, errno.ENOSPC),  # the sequence number
        Fault("fsync", 2, errno.EIO),  # the sequence file
        Fault("rename", 1, errno.EROFS),
    ],
    ids=fault_id,
)
def test_a_failed_post_leaves_the_inbox_as_it_was_and_the_order_intact(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    first = message("pause")
    store.post("one", first)
    inbox = store.inbox_path("one")
    messages_before = {p.name: p.read_bytes() for p in inbox.iterdir() if p.suffix == ".json"}

    with faulty_disk(monkeypatch, fault), pytest.raises(StoreFaultError, match="post"):
        store.post("one", message("resume"))

    after = {p.name: p.read_bytes() for p in inbox.iterdir() if p.name != ".sequence"}
    assert after == messages_before  # no temporary file either
    last = message("terminate")
    store.post("one", last)
    assert [m.message_id for m in store.pending("one")] == [first.message_id, last.message_id]


def test_a_failed_save_leaves_the_listing_index_as_it_was(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.list_instances(ListQuery())
    index = store.root / "cache" / "instances-v1.json"
    before = index.read_bytes()
    store.create(created("two"))

    for fault in (Fault("write", 1, errno.ENOSPC), Fault("replace", 1, errno.EIO)):
        with faulty_disk(monkeypatch, fault) as disk:
            listed = store.list_instances(ListQuery())
        assert disk.fired
        assert sorted(s.id for s in listed.instances) == ["one", "two"]
        assert index.read_bytes() == before
        assert [p.name for p in index.parent.iterdir()] == [index.name]


@pytest.mark.parametrize("code", FAULT_ERRNOS, ids=errno.errorcode.get)
def test_a_failed_lock_write_keeps_no_lock_and_leaves_the_lock_file_as_it_was(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store.acquire("one", Owner.current()).release()
    lock = store.lock_path("one")
    before = lock.read_bytes()

    with faulty_disk(monkeypatch, Fault("pwrite", 1, code)), pytest.raises(StoreFaultError):
        store.acquire("one", Owner.current())

    assert lock.read_bytes() == before
    assert store.holder("one") is None
    store.acquire("one", Owner.current()).release()  # not told busy


@pytest.mark.parametrize(
    "faults",
    [
        *([fault] for fault in JOURNAL_FAULTS),
        # The first of two lines written whole, the rest refused, and the cut back fails:
        # the journal keeps a line that the lease never counted.
        [Fault("write", 1, errno.ENOSPC, short=True), Fault("ftruncate", 1, errno.EIO)],
    ],
    ids=lambda faults: "+".join(map(fault_id, faults)),
)
def test_a_lease_given_up_after_a_failed_append_leaves_nothing_for_the_index(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, faults: list[Fault]
) -> None:
    (lease,) = store.claim_due(AT, Owner.current(), 1).leases  # a worker's lease, which
    lease.read()  # keeps what it wrote for the index
    lease.append([started()])

    with faulty_disk(monkeypatch, *faults), pytest.raises(StoreFaultError):
        lease.append([started(), started()])
    lease.release()

    version = store.journal_version("one")
    assert version is not None
    assert store.left_by_lease("one", version) is None
    listed = store.list_instances(ListQuery()).instances
    assert [(s.id, s.status) for s in listed] == [("one", "running")]


def test_a_workers_lease_leaves_the_index_exactly_what_the_journal_holds(
    store: FileStore,
) -> None:
    (lease,) = store.claim_due(AT, Owner.current(), 1).leases
    lease.read()
    lease.append([started()])
    lease.append([started(), started()])
    lease.release()

    version = store.journal_version("one")
    assert version is not None
    assert store.left_by_lease("one", version) == store.read("one")
    assert store.left_by_lease("one", version) is None  # handed out once
