"""Opening a file store for writing: its folders are looked at afresh the first time, and
made only when one is missing."""

from __future__ import annotations

import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import pytest

from wfcli import FileStore
from wfcli.core.codec import Created, RunStarted
from wfcli.errors import StoreLocationError
from wfcli.store.contract import Owner

AT = datetime(2030, 1, 1, tzinfo=timezone.utc)
OWNER = Owner(worker_id="w-1", pid=1, host="test")


def created(instance_id: str) -> Created:
    return Created(at=AT, instance_id=instance_id, workflow="w", params=None)


def test_a_complete_store_is_opened_without_making_any_folder(tmp_path: Path) -> None:
    FileStore(tmp_path / "store").create(created("a"))
    store = FileStore(tmp_path / "store")
    with mock.patch.object(Path, "mkdir", side_effect=AssertionError("made a folder")):
        with store.acquire("a", OWNER) as lease:
            lease.append([RunStarted(at=AT, pid=1, host="test")])
        store.create(created("b"))
    assert [type(record) for record in store.read("a")] == [Created, RunStarted]


@pytest.mark.parametrize("folder", ["journals", "locks", "inbox", "tmp"])
def test_a_folder_removed_after_the_store_was_first_read_is_made_again(
    tmp_path: Path, folder: str
) -> None:
    FileStore(tmp_path / "store").create(created("a"))
    store = FileStore(tmp_path / "store")
    store.read("a")  # the first look: every folder there
    if folder == "journals":
        (tmp_path / "store" / "journals" / "a.jsonl").unlink()
    shutil.rmtree(tmp_path / "store" / folder)

    store.create(created("b"))

    made = (tmp_path / "store" / folder).lstat()
    assert stat.S_ISDIR(made.st_mode)
    assert stat.S_IMODE(made.st_mode) == 0o700
    assert [type(record) for record in store.read("b")] == [Created]


def test_a_new_store_is_made_private(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "new" / "store")
    store.create(created("a"))
    for folder in ("", "journals", "locks", "inbox", "tmp"):
        mode = (tmp_path / "new" / "store" / folder).lstat().st_mode
        assert stat.S_IMODE(mode) == 0o700, folder


@pytest.mark.parametrize("folder", ["", "journals", "locks", "inbox", "tmp"])
def test_a_folder_made_unsafe_after_the_first_read_is_refused_when_writing(
    tmp_path: Path, folder: str
) -> None:
    FileStore(tmp_path / "store").create(created("a"))
    store = FileStore(tmp_path / "store")
    store.read("a")
    target = tmp_path / "store" / folder
    target.chmod(0o777)
    try:
        with pytest.raises(StoreLocationError, match="writable by other users"):
            store.acquire("a", OWNER)
    finally:
        target.chmod(0o700)
