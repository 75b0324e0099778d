"""One unreadable file affects one instance; a store others could change is refused.

Tests run as root in CI, where permission bits do not stop a read: the files are
made unreadable with symbolic links and damage, and foreign with ``chown``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.support import assert_one_line_error, make_fault_project, run_wf

OTHER_UID = 65534


@pytest.fixture
def project(tmp_path: Path) -> Project:
    made = make_fault_project(tmp_path / "project", fsync=False)
    for name in ("bad-journal", "bad-lock", "bad-inbox", "good-1", "good-2"):
        created = run_wf(made, "run", "steps", "--detach", "--id", name, "--params",
                         made.params(n=1))  # fmt: skip
        assert created.code == 0, created.describe()
    return made


def damage(project: Project, tmp_path: Path) -> Path:
    """A symlinked journal, a symlinked lock file, a symlinked inbox message; the
    lock's target (a file of the user's) is returned to check it is never touched."""
    store = project.store
    journal = store / "journals" / "bad-journal.jsonl"
    copy = tmp_path / "journal-copy"
    copy.write_bytes(journal.read_bytes())
    journal.unlink()
    journal.symlink_to(copy)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = store / "locks" / "bad-lock.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    assert run_wf(project, "pause", "bad-inbox").code == 0
    assert run_wf(project, "resume", "bad-inbox").code in (0, 3)
    inbox = store / "inbox" / "bad-inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    message = tmp_path / "message"
    message.write_text('{"not": "a message"}')
    (inbox / f"{99:020d}-{'0' * 32}.json").symlink_to(message)
    return victim


def test_one_unreadable_file_is_named_and_the_other_instances_go_on(
    project: Project, tmp_path: Path
) -> None:
    victim = damage(project, tmp_path)

    listed = run_wf(project, "list")
    assert listed.code == 0, listed.describe()
    for name in ("bad-journal", "bad-lock", "bad-inbox"):
        assert name in listed.stderr, listed.describe()
    assert "good-1" in listed.stdout
    assert "good-2" in listed.stdout

    worked = run_wf(project, "worker", "--once")
    assert worked.code == 0, worked.describe()
    assert "Traceback" not in worked.stderr
    for name in ("good-1", "good-2"):
        assert run_wf(project, "status", name).code == 0
    assert victim.read_text() == "precious\n"  # a lock file's link is never followed

    due = run_wf(project, "resume", "--due")
    assert due.code == 0, due.describe()
    assert "Traceback" not in due.stderr, due.describe()
    skipped = [line for line in due.stderr.splitlines() if line.startswith("skipped: ")]
    for name in ("bad-journal", "bad-lock", "bad-inbox"):
        assert any(name in line for line in skipped), due.describe()
    doctor = run_wf(project, "doctor")
    assert doctor.code == 1, doctor.describe()
    for name in ("bad-journal", "bad-lock", "bad-inbox"):
        assert name in doctor.stdout + doctor.stderr, doctor.describe()
    pruned = run_wf(project, "prune", "--older-than", "0 seconds", "--status", "complete")
    assert pruned.code == 0, pruned.describe()
    assert "Traceback" not in pruned.stderr, pruned.describe()
    assert "pruned 2 instances" in pruned.stdout, pruned.describe()
    for name in ("bad-journal", "bad-lock", "bad-inbox"):
        assert name in pruned.stderr, pruned.describe()
    assert victim.read_text() == "precious\n"


def test_a_failed_acquire_leaks_no_lock(project: Project) -> None:
    lock = project.store / "locks" / "good-1.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(project.store / "journals" / "good-1.jsonl")
    assert run_wf(project, "resume", "good-1").code == 2
    lock.unlink()

    assert run_wf(project, "resume", "good-1").code == 0  # not told busy
    assert run_wf(project, "delete", "good-1").code == 0


@pytest.mark.parametrize("folder", ["", "journals", "locks", "inbox"])
@pytest.mark.parametrize("how", ["chown", "chmod"])
def test_a_store_folder_others_could_change_is_refused_by_every_command(
    project: Project, folder: str, how: str
) -> None:
    target = project.store / folder if folder else project.store
    target.mkdir(exist_ok=True)
    if how == "chown":
        os.chown(target, OTHER_UID, -1)
    else:
        target.chmod(0o777)
    try:
        for args in (("list",), ("status", "good-1"), ("resume", "good-1"),
                     ("pause", "good-1"), ("delete", "good-1")):  # fmt: skip
            assert_one_line_error(run_wf(project, *args), 2, mentions="refused")
        worker = run_wf(project, "worker", "--once")  # after its start-up note
        assert worker.code == 2, worker.describe()
        errors = [line for line in worker.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, worker.describe()
        assert "refused" in errors[0], worker.describe()
        doctor = run_wf(project, "doctor")
        assert doctor.code == 1, doctor.describe()
        assert str(target) in doctor.stdout, doctor.describe()
    finally:
        os.chown(target, os.geteuid(), -1)
        target.chmod(0o700)
