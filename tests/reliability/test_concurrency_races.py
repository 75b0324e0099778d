"""Real ``wf`` processes racing each other over one store.

Races are made, not hoped for: an import gate (``WFREL_IMPORT_GATE``) parks every
process right after it loaded the project, then releases them together, and a
step can hold until a file appears, so a process keeps the instance while the
others try. Side-effect counters prove what ran how often.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.chaos_workflows import IMPORT_GATE_ENV
from tests.reliability.support import (
    PATIENCE_SECONDS,
    Outcome,
    assert_one_line_error,
    make_chaos_project,
    run_wf,
    start_wf,
)
from tests.workflows_for_tests import assert_journal_sane, wait_until
from wfcli import FileStore
from wfcli.core.codec import EventReceived, Paused, RunStarted, StepCompleted, Terminated
from wfcli.project import load_project, open_client

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock and signals are POSIX")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_chaos_project(tmp_path / "project", fsync=False)


def params(project: Project, **extra: object) -> dict[str, object]:
    trace = str(project.effects / "trace")
    return {"dir": str(project.effects), "trace": trace, "n": 1, "work": 0, **extra}


def create(project: Project, workflow: str, instance_id: str, **extra: object) -> None:
    client = open_client(load_project(project.config), project.store)
    client.create(workflow, params=params(project, **extra), instance_id=instance_id)


def calls(folder: Path, step: str) -> list[int]:
    """PIDs of the processes that really ran ``step``, one per call (``folder`` of effects)."""
    path = folder / f"{step}.calls"
    if not path.exists():
        return []
    return [int(line.split()[0]) for line in path.read_text(encoding="utf-8").splitlines()]


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    assert "Traceback" not in stderr, stderr
    return process.returncode, stdout, stderr


def start_gated(
    project: Project, gate: Path, count: int, args: list[str]
) -> list[subprocess.Popen[str]]:
    """Start ``count`` ``wf ARGS`` parked at the import gate; release them together."""
    processes = [start_wf(project, args, env={IMPORT_GATE_ENV: str(gate)}) for _ in range(count)]
    arrived = [Path(f"{gate}.{p.pid}") for p in processes]
    wait_until(lambda: all(a.exists() for a in arrived), f"{count} processes at the gate")
    gate.touch()
    return processes


def records(project: Project, instance_id: str) -> list[object]:
    return list(assert_journal_sane(project.store / "journals" / f"{instance_id}.jsonl"))


def test_of_many_resumes_of_one_instance_exactly_one_executes(
    project: Project, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    create(project, "slow", "one", steps=2, hold=str(hold))

    racers = start_gated(project, tmp_path / "gate", 5, ["resume", "one"])
    wait_until(lambda: len(calls(project.effects, "k0")) == 1, "the winner to start k0")
    (winner,) = [p for p in racers if p.pid in calls(project.effects, "k0")]
    losers = [finish(p) for p in racers if p is not winner]
    hold.touch()
    code, _, stderr = finish(winner)

    assert code == 0, stderr
    for loser_code, stdout, loser_stderr in losers:
        outcome = Outcome(("resume", "one"), loser_code, stdout, loser_stderr)
        outcome_line = assert_one_line_error(outcome, code=5, mentions="is being executed")
        assert f"process {winner.pid}" in outcome_line
    assert (calls(project.effects, "k0"), calls(project.effects, "k1")) == (
        [winner.pid],
        [winner.pid],
    )
    runs = [r for r in records(project, "one") if isinstance(r, RunStarted)]
    assert [r.pid for r in runs] == [winner.pid]


def test_of_many_creators_of_one_id_exactly_one_creates_it(
    project: Project, tmp_path: Path
) -> None:
    args = ["run", "chain", "--id", "same", "--detach", "--params", json.dumps(params(project))]

    racers = start_gated(project, tmp_path / "gate", 6, args)
    results = [finish(p) for p in racers]

    codes = Counter(code for code, _, _ in results)
    assert codes == {0: 1, 2: 5}, results
    for code, _, stderr in results:
        if code == 2:
            assert stderr.strip() == "error: an instance with ID 'same' already exists"
    assert len(records(project, "same")) == 1
    assert sorted(os.listdir(project.store / "tmp")) == []


def test_two_workers_run_each_instance_exactly_once(project: Project, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    ids = [f"w{i}" for i in range(8)]
    for instance_id in ids:
        effects = project.effects / instance_id
        effects.mkdir()
        create(project, "slow", instance_id, steps=2, hold=str(hold), dir=str(effects))
    args = ["worker", "--once", "--concurrency", "2", "--poll", "0.05"]

    workers = start_gated(project, tmp_path / "gate", 2, args)

    def started_by() -> set[int]:
        return {pid for i in ids for pid in calls(project.effects / i, "k0")}

    wait_until(lambda: started_by() == {w.pid for w in workers}, "both workers to hold instances")
    hold.touch()
    for worker in workers:
        code, _, stderr = finish(worker)
        assert code == 0, stderr

    runners: Counter[int] = Counter()
    for instance_id in ids:
        journal = records(project, instance_id)
        (run,) = [r for r in journal if isinstance(r, RunStarted)]  # executed once, by one
        runners[run.pid] += 1
        folder = project.effects / instance_id
        assert (calls(folder, "k0"), calls(folder, "k1")) == ([run.pid], [run.pid])
        completed = [r.step for r in journal if isinstance(r, StepCompleted)]
        assert completed == ["k0", "k1"]
    assert set(runners) == {w.pid for w in workers}
    assert sum(runners.values()) == len(ids)


def test_events_sent_at_once_to_a_running_executor_are_all_taken_once(project: Project) -> None:
    create(project, "collector", "inbox", count=6)
    executor = start_wf(project, ["resume", "inbox"])
    wait_until(
        lambda: any(isinstance(r, RunStarted) for r in FileStore(project.store).read("inbox")),
        "the executor to start",
        executor,
    )
    senders = [
        start_wf(project, ["send-event", "inbox", "--type", "item", "--payload", json.dumps(i)])
        for i in range(6)
    ]

    problems_seen = []
    while executor.poll() is None:  # wf doctor's checker, on the live store meanwhile
        problems_seen += FileStore(project.store).check().problems
    sent = [finish(p) for p in senders]
    code, _, stderr = finish(executor)

    assert [c for c, _, _ in sent] == [0] * 6, sent
    assert code == 0, stderr
    assert problems_seen == []
    output = json.loads(run_wf(project, "status", "inbox", "--json").stdout)["output"]
    assert sorted(output) == list(range(6))
    journal = records(project, "inbox")
    received = [r for r in journal if isinstance(r, EventReceived)]
    assert sorted(r.payload for r in received) == list(range(6))  # type: ignore[type-var]
    assert len({r.message_id for r in received}) == 6
    assert not any((project.store / "inbox" / "inbox").glob("*.json"))
    assert run_wf(project, "doctor").code == 0


@pytest.mark.parametrize(
    ("command", "code", "record"), [("pause", 3, Paused), ("terminate", 4, Terminated)]
)
def test_a_pause_or_terminate_racing_a_running_executor_stops_it_between_steps(
    project: Project, tmp_path: Path, command: str, code: int, record: type
) -> None:
    hold = tmp_path / "hold"
    create(project, "slow", "busy", steps=5, hold=str(hold))
    executor = start_wf(project, ["resume", "busy"])
    wait_until(lambda: bool(calls(project.effects, "k0")), "step k0 to start", executor)

    control = run_wf(project, command, "busy")  # arrives while k0 is in flight
    hold.touch()
    exit_code, _, stderr = finish(executor)

    assert control.code == 0, control.describe()
    assert exit_code == code, stderr
    journal = records(project, "busy")
    (stop,) = [i for i, r in enumerate(journal) if isinstance(r, record)]
    completed = [r.step for r in journal if isinstance(r, StepCompleted)]
    assert completed == ["k0"]  # the step in flight finished
    assert [len(calls(project.effects, f"k{i}")) for i in range(5)] == [1, 0, 0, 0, 0]
    assert not any(isinstance(r, StepCompleted) for r in journal[stop:])
    if command == "pause":
        resumed = run_wf(project, "resume", "busy")
        assert resumed.code == 0, resumed.describe()
        assert [len(calls(project.effects, f"k{i}")) for i in range(5)] == [1] * 5
