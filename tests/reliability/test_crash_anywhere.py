"""SIGKILL real ``wf`` processes at seeded random moments; every invariant must hold.

The CI sample makes 30 kills; ``scripts/reliability_run.py --kills 1000`` is the
long run. :mod:`tests.reliability.chaos` says what is checked. The last tests
prove that the checker itself catches what it is there to catch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tests.reliability.chaos import ChaosRun, Instance, Lane
from tests.reliability.support import run_wf
from wfcli.core.codec import decode_line, encode_record

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")

SEED = 20261123
CI_KILLS = 30


def test_seeded_kills_anywhere_keep_every_invariant(tmp_path: Path) -> None:
    figures = ChaosRun(tmp_path, seed=SEED, kills=CI_KILLS).run()

    assert figures.violations == []
    assert figures.kills >= CI_KILLS
    assert figures.instances_completed == figures.instances
    assert (
        figures.reruns_beyond_in_flight,
        figures.records_lost,
        figures.records_duplicated,
        figures.unreadable_journals,
        figures.wrong_outputs,
        figures.unexpected_exits,
    ) == (0, 0, 0, 0, 0, 0)
    # Most kills hit a process that was executing an instance, in several kinds of moment.
    assert figures.kills_while_executing > CI_KILLS // 2
    assert len(figures.kills_by_phase) >= 4, figures.kills_by_phase


# --- the checker catches what it should ------------------------------------------------------


def finished_lane(tmp_path: Path, kind: str) -> tuple[Lane, Instance]:
    """A lane whose one instance ran to completion without a kill."""
    lane = Lane(tmp_path / "lane", 1, blob_size=1000, scratch=tmp_path / "scratch")
    lane.new_round(0, [kind], [0])
    (instance,) = lane.instances
    assert lane.project is not None
    params = json.dumps(instance.params)
    done = run_wf(lane.project, "run", kind, "--id", instance.id, "--params", params)
    assert done.code == 0, done.describe()
    return lane, instance


def test_the_checker_accepts_an_uninterrupted_run(tmp_path: Path) -> None:
    lane, instance = finished_lane(tmp_path, "chain")

    lane.check_instance(instance)

    assert lane.figures.violations == []
    assert lane.figures.instances_completed == 1


def test_the_checker_flags_a_completed_step_that_ran_again(tmp_path: Path) -> None:
    lane, instance = finished_lane(tmp_path, "chain")
    # A later process (pid 1, as if it had journaled a run) calls s1 again.
    journal = lane.store / "journals" / f"{instance.id}.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    run_started = next(line for line in lines if b'"run_started"' in line)
    again = dataclasses.replace(decode_line(run_started.rstrip(b"\n"))[0], pid=1)
    journal.write_bytes(b"".join(lines) + encode_record(again, len(lines) + 1).encode() + b"\n")
    with open(instance.folder / "s1.calls", "a", encoding="utf-8") as calls:
        calls.write("1 1\n")

    lane.check_instance(instance)

    assert lane.figures.reruns_beyond_in_flight == 1
    assert any("ran again in pid 1" in v for v in lane.figures.violations)


def test_the_checker_flags_a_call_without_an_outcome_in_a_process_not_killed(
    tmp_path: Path,
) -> None:
    lane, instance = finished_lane(tmp_path, "chain")
    pid = int((instance.folder / "s4.calls").read_text(encoding="utf-8").split()[0])
    with open(instance.folder / "s4.calls", "a", encoding="utf-8") as calls:
        calls.write(f"{pid} 1\n")

    lane.check_instance(instance)
    assert lane.figures.reruns_beyond_in_flight == 1

    lane.figures.violations.clear()
    lane.killed.add(pid)  # had that process been killed, one call in flight is allowed
    lane.check_instance(instance)
    assert lane.figures.violations == []


def test_the_checker_flags_a_lost_line_and_a_wrong_output(tmp_path: Path) -> None:
    lane, instance = finished_lane(tmp_path, "napper")
    lane.after_kill()  # as if a kill had just happened: remember the journal's lines
    instance.snapshots[-1].append("a line that is not in the final journal")
    instance.params = {**instance.params, "n": int(instance.params["n"]) + 1}  # type: ignore[arg-type]

    lane.check_instance(instance)

    assert lane.figures.records_lost == 1
    assert lane.figures.wrong_outputs == 1
