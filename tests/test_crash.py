"""SIGKILL a process executing an instance at chosen points; a fresh process finishes it.

Every scenario ends with the same output as an uninterrupted run, and only the
step in flight at the kill may have run twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflows_for_tests import (
    Children,
    Effects,
    assert_journal_sane,
    journal_path,
    make_client,
    outputs,
    wait_until,
)
from wfcli import FileStore
from wfcli.core.codec import AttemptFailed, StepCompleted, Suspended, WaitStarted

PIPELINE_STEPS = ("a", "b", "c")
PIPELINE_OUTPUT = {"a": 42, "b": {"double": 84}, "c": [42, 84, "done"]}


def create(store_dir: Path, workflow: str, params: dict[str, object]) -> str:
    return make_client(store_dir).create(workflow, params=params, instance_id="victim").id


def completed_steps(store_dir: Path) -> set[str]:
    return {r.step for r in FileStore(store_dir).read("victim") if isinstance(r, StepCompleted)}


def test_an_uninterrupted_run_gives_the_reference_output(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    create(store_dir, "pipeline", {"dir": str(effects.folder), "n": 41})

    status = children.run("execute", store_dir, "victim")

    assert (status["status"], status["output"]) == ("complete", PIPELINE_OUTPUT)
    assert [effects.count(step) for step in PIPELINE_STEPS] == [1, 1, 1]


@pytest.mark.parametrize("killed_in", PIPELINE_STEPS)
def test_kill_inside_a_step_reruns_only_that_step(
    store_dir: Path, effects: Effects, children: Children, killed_in: str
) -> None:
    create(store_dir, "pipeline", {"dir": str(effects.folder), "n": 41})
    victim = children.start("execute", store_dir, "victim", block_at=killed_in)
    wait_until(effects.blocked_marker(killed_in).exists, f"step {killed_in} to start", victim)
    children.kill(victim)

    assert make_client(store_dir).status("victim").interrupted
    status = children.run("execute", store_dir, "victim")

    assert (status["status"], status["output"]) == ("complete", PIPELINE_OUTPUT)
    expected_calls = [2 if step == killed_in else 1 for step in PIPELINE_STEPS]
    assert [effects.count(step) for step in PIPELINE_STEPS] == expected_calls
    records = assert_journal_sane(journal_path(store_dir, "victim"))
    assert outputs(records) == [PIPELINE_OUTPUT]


@pytest.mark.parametrize("killed_after", PIPELINE_STEPS)
def test_kill_after_a_steps_record_reruns_nothing(
    store_dir: Path, effects: Effects, children: Children, tmp_path: Path, killed_after: str
) -> None:
    create(store_dir, "pipeline", {"dir": str(effects.folder), "n": 41})
    marker = tmp_path / "recorded"
    victim = children.start(
        "execute", store_dir, "victim", "--hang-after-record", killed_after, "--marker", marker
    )
    wait_until(marker.exists, f"step {killed_after} to be journaled", victim)
    children.kill(victim)
    assert killed_after in completed_steps(store_dir)

    status = children.run("execute", store_dir, "victim")

    assert (status["status"], status["output"]) == ("complete", PIPELINE_OUTPUT)
    assert [effects.count(step) for step in PIPELINE_STEPS] == [1, 1, 1]
    assert outputs(assert_journal_sane(journal_path(store_dir, "victim"))) == [PIPELINE_OUTPUT]


def test_kill_mid_write_leaves_a_torn_tail_that_the_next_run_repairs(
    store_dir: Path, effects: Effects, children: Children, tmp_path: Path
) -> None:
    create(store_dir, "pipeline", {"dir": str(effects.folder), "n": 41})
    marker = tmp_path / "half-written"
    victim = children.start(
        "execute", store_dir, "victim", "--hang-mid-write", "b", "--marker", marker
    )
    wait_until(marker.exists, "half of b's record to be written", victim)
    children.kill(victim)
    torn = journal_path(store_dir, "victim").read_bytes()
    assert not torn.endswith(b"\n")
    assert completed_steps(store_dir) == {"a"}  # the torn record does not count

    status = children.run("execute", store_dir, "victim")

    assert (status["status"], status["output"]) == ("complete", PIPELINE_OUTPUT)
    assert [effects.count(step) for step in PIPELINE_STEPS] == [1, 2, 1]
    repaired = journal_path(store_dir, "victim").read_bytes()
    assert repaired.startswith(torn[: torn.rfind(b"\n") + 1])
    assert outputs(assert_journal_sane(journal_path(store_dir, "victim"))) == [PIPELINE_OUTPUT]


def test_kill_during_parallel_steps_reruns_only_the_unfinished_branch(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    create(store_dir, "fan-out", {"dir": str(effects.folder)})
    victim = children.start("execute", store_dir, "victim", block_at="p2")
    wait_until(effects.blocked_marker("p2").exists, "branch p2 to start", victim)
    wait_until(
        lambda: {"p1", "p3"} <= completed_steps(store_dir), "branches p1 and p3 to finish", victim
    )
    children.kill(victim)

    status = children.run("execute", store_dir, "victim")

    assert status["output"] == {"results": [1, 20, 300], "total": 321}
    counts = {name: effects.count(name) for name in ("p1", "p2", "p3", "total")}
    assert counts == {"p1": 1, "p2": 2, "p3": 1, "total": 1}
    records = assert_journal_sane(journal_path(store_dir, "victim"))
    finished_branches = [r.step for r in records if isinstance(r, StepCompleted)]
    assert sorted(finished_branches[:3]) == ["p1", "p2", "p3"]


def test_kill_during_a_sleep_keeps_the_journaled_wake_time(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    create(store_dir, "sleeper", {"dir": str(effects.folder), "seconds": 3600})
    victim = children.start("execute", store_dir, "victim", "--max-inline-wait", 7200)
    store = FileStore(store_dir)
    wait_until(
        lambda: any(isinstance(r, WaitStarted) for r in store.read("victim")),
        "the sleep to begin",
        victim,
    )
    children.kill(victim)

    status = children.run("execute", store_dir, "victim", "--max-inline-wait", 0)

    assert status["status"] == "waiting"
    records = store.read("victim")
    (wake,) = [r.until for r in records if isinstance(r, WaitStarted)]
    (suspension,) = [r for r in records if isinstance(r, Suspended)]
    assert (suspension.wait, suspension.step, suspension.until) == ("sleep", "nap", wake)
    assert status["waiting"]["until"] == wake.isoformat(timespec="microseconds")
    assert (effects.count("before"), effects.count("after")) == (1, 0)


def test_kill_during_a_retry_wait_keeps_the_journaled_retry_time(
    store_dir: Path, effects: Effects, children: Children
) -> None:
    create(store_dir, "flaky", {"dir": str(effects.folder)})
    victim = children.start("execute", store_dir, "victim", "--max-inline-wait", 7200)
    store = FileStore(store_dir)
    wait_until(
        lambda: any(isinstance(r, AttemptFailed) for r in store.read("victim")),
        "the first attempt to fail",
        victim,
    )
    children.kill(victim)

    status = children.run("execute", store_dir, "victim", "--max-inline-wait", 0)

    records = store.read("victim")
    (failed,) = [r for r in records if isinstance(r, AttemptFailed)]
    (suspension,) = [r for r in records if isinstance(r, Suspended)]
    assert failed.retry_at is not None
    assert (suspension.wait, suspension.step, suspension.until) == (
        "retry",
        "charge",
        failed.retry_at,
    )
    assert status["steps"][0]["attempts"] == 1
    assert effects.count("charge") == 1
