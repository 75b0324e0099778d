"""Storage faults through the real ``wf``: exit 6 with one line, and nothing lost.

Each command runs as ``tests/drivers/faulty_wf.py`` (the CLI with the file store's
``os`` replaced by the fault seam), meets one fault, and must say what failed and
where in one line and exit 6 (or its documented code); then the real ``wf``, on a
healthy disk, takes the instance to the output of an undisturbed run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.fault_workflows import calls
from tests.reliability.support import (
    PATIENCE_SECONDS,
    Outcome,
    assert_one_line_error,
    make_fault_project,
    run_wf,
    wf_env,
)

_REPO = Path(__file__).resolve().parents[2]
_DRIVER = _REPO / "tests" / "drivers" / "faulty_wf.py"
OUTPUT = {"total": 4}  # steps s0, s1, s2 from n = 1


def run_faulty(project: Project, faults: str, *args: str) -> Outcome:
    """``wf ARGS`` with ``faults`` (``OPERATION:CALL:ERRNO,...``) armed."""
    env = wf_env({"WFTEST_FAULTS": faults, "PYTHONPATH": str(_REPO)})
    done = subprocess.run(
        [sys.executable, str(_DRIVER), *args],
        cwd=project.config.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
    )
    return Outcome(tuple(args), done.returncode, done.stdout, done.stderr)


def status(project: Project, instance_id: str) -> dict[str, object]:
    shown = run_wf(project, "status", instance_id, "--json")
    assert shown.code in (0, 1, 3, 4), shown.describe()
    document: dict[str, object] = json.loads(shown.stdout)
    return document


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_fault_project(tmp_path / "project")


def assert_store_fault(outcome: Outcome, project: Project, errno_name: str) -> None:
    line = assert_one_line_error(outcome, 6, mentions="store failed: ")
    assert str(project.store.resolve()) in line, line
    assert f"({errno_name})" in line, line


@pytest.mark.parametrize(
    "fault", ["fdatasync:1:EIO", "write:3:ENOSPC", "fdatasync:3:EROFS", "write:5:EIO"]
)
def test_wf_run_meeting_a_store_fault_exits_6_and_the_instance_resumes_to_its_output(
    project: Project, fault: str
) -> None:
    run = run_faulty(project, fault, "run", "steps", "--id", "f", "--params", project.params(n=1))

    assert_store_fault(run, project, fault.rsplit(":", 1)[1])
    assert status(project, "f")["status"] in ("queued", "running")  # never errored
    resumed = run_wf(project, "resume", "f")
    assert resumed.code == 0, resumed.describe()
    assert status(project, "f")["output"] == OUTPUT
    in_flight = sum(len(calls(project.effects, f"s{i}")) - 1 for i in range(3))
    assert in_flight <= 1  # only the attempt whose result the fault kept from the journal


def _queued(project: Project, instance_id: str = "q") -> None:
    made = run_wf(project, "run", "steps", "--detach", "--id", instance_id, "--params",
                  project.params(n=1))  # fmt: skip
    assert made.code == 0, made.describe()


# (command, the fault it meets, whether a queued instance "q" exists first)
COMMANDS = [
    (("run", "steps", "--detach", "--id", "q"), "write:1:ENOSPC", False),
    (("run", "steps", "--id", "q"), "link:1:EIO", False),
    (("resume", "q"), "pwrite:1:EROFS", True),
    (("resume", "--due"), "fdatasync:2:EIO", True),
    (("pause", "q"), "rename:1:ENOSPC", True),
    (("terminate", "q"), "pwrite:1:EIO", True),
    (("send-event", "q", "--type", "go"), "write:1:EROFS", True),
    (("restart", "q"), "fsync:1:ENOSPC", True),
    (("delete", "q"), "fsync:1:EIO", True),
    (("worker", "--once"), "fdatasync:1:ENOSPC", True),
]


@pytest.mark.parametrize(("args", "fault", "queued"), COMMANDS, ids=str)
def test_every_command_meeting_a_store_fault_exits_6_with_one_line(
    project: Project, args: tuple[str, ...], fault: str, queued: bool
) -> None:
    if queued:
        _queued(project)
    params = ("--params", project.params(n=1)) if args[0] == "run" else ()

    outcome = run_faulty(project, fault, *args, *params)

    if args[0] == "worker":  # it goes on past the instance, naming it, then says so
        assert outcome.code == 6, outcome.describe()
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, outcome.describe()
        assert "q: store failed: " in errors[0], outcome.describe()
    else:
        assert_store_fault(outcome, project, fault.rsplit(":", 1)[1])
    if args[0] == "delete":  # the sync that failed came after the unlink: gone, or not
        again = run_wf(project, "delete", "q")
        assert again.code in (0, 2), again.describe()
        assert "no instance" in run_wf(project, "status", "q").stderr
        return
    if args[0] == "terminate":
        assert run_wf(project, "terminate", "q").code == 0
        assert status(project, "q")["status"] == "terminated"
        return
    if args[0] in ("pause", "send-event", "restart"):  # tried again: it is done this time
        again = run_wf(project, *args)
        assert again.code in (0, 3), again.describe()
    if args[0] == "restart":  # it runs the instance again in the foreground
        assert status(project, "q")["output"] == OUTPUT
        return
    if args[0] == "run" and not queued and not (project.store / "journals" / "q.jsonl").exists():
        _queued(project)
    resumed = run_wf(project, "resume", "q")
    assert resumed.code == 0, resumed.describe()
    assert status(project, "q")["output"] == OUTPUT


def test_wf_list_saves_no_index_when_its_write_fails_and_lists_all_the_same(
    project: Project,
) -> None:
    _queued(project, "a")
    _queued(project, "b")

    listed = run_faulty(project, "write:1:ENOSPC", "list", "--json")

    assert listed.code == 0, listed.describe()
    assert listed.stderr == ""
    assert sorted(item["id"] for item in json.loads(listed.stdout)["instances"]) == ["a", "b"]
