"""The I/O fault-injection matrix (:mod:`tests.reliability.fault_matrix`), in-process."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.fault_matrix import run_matrix, run_scenario
from tests.reliability.faults import OPERATIONS


def test_every_fault_at_every_write_and_sync_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path,
) -> None:
    figures = run_matrix(tmp_path)

    assert figures.failures == []
    assert figures.instances_lost == 0
    assert figures.double_executions == 0
    assert figures.faults_injected == figures.runs
    # Every operation the store writes or syncs through was hit, and most faults
    # failed a command (the rest met the index or a lock's release, which absorb them).
    assert set(figures.by_operation) == set(OPERATIONS)
    assert figures.commands_failed > figures.runs * 3 // 4
    assert figures.attempts_lost_in_flight > 0


def test_the_undisturbed_scenario_writes_through_every_watched_operation(tmp_path: Path) -> None:
    outcome = run_scenario(tmp_path)

    assert outcome.status == "complete"
    assert outcome.output == {"a": 5, "flaky": 50, "b": 57}
    assert outcome.calls == [("a", 1), ("flaky", 1), ("flaky", 2), ("b", 1)]
    assert all(outcome.counts[operation] for operation in OPERATIONS)
