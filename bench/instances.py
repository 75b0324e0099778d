"""Per-instance overhead and worker throughput (issue 6, item 3)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from wfcli import FileStore, WorkflowClient
from wfcli.core.codec import Finished, RunStarted

from .harness import Report, Sample, Sizes, child_env, time_process, wf_command, write_project
from .workloads import StepsWorkflow

__all__ = ["instance_overhead", "worker_throughput"]

_SECTION = "3 per instance"


def _in_process(root: Path, steps: int, count: int) -> Sample:
    """Milliseconds to create and execute one instance to completion (durable store)."""
    client = WorkflowClient(FileStore(root), {"steps": StepsWorkflow})
    times = []
    for index in range(count + 3):  # the first three warm up
        started = time.perf_counter()
        instance = client.create("steps", params={"steps": steps})
        outcome = client.execute(instance.id)
        elapsed = time.perf_counter() - started
        if outcome.status != "complete":
            raise RuntimeError(f"instance {instance.id} ended {outcome.status}")
        if index >= 3:
            times.append(elapsed * 1000)
    return Sample.of("ms", times)


def instance_overhead(report: Report, work: Path, sizes: Sizes) -> None:
    """Create + run + complete of 0- and 3-step workflows, in-process and via ``wf run``."""
    project = work / "instances"
    write_project(project)
    env = child_env()
    for steps in (0, 3):
        report.add(
            _SECTION,
            f"{steps}-step instance, in-process (create + execute)",
            _in_process(work / f"inproc-{steps}", steps, sizes.instances),
        )
        sample, _ = time_process(
            [*wf_command(), "run", "steps", "--params", f'{{"steps": {steps}}}', "--json"],
            cwd=project,
            env=env,
            runs=sizes.process_runs,
            warmups=sizes.warmups,
        )
        report.add(_SECTION, f"{steps}-step instance, `wf run --json` as a process", sample)


def _journal_window(store: FileStore) -> tuple[float, int]:
    """Seconds from the first ``run_started`` to the last ``finished`` in the store's
    journals (the workers' start-up and exit are left out), and how many runs started."""
    starts, ends = [], []
    for instance_id in store.instance_ids():
        for record in store.read(instance_id):
            if isinstance(record, RunStarted):
                starts.append(record.at)
            elif isinstance(record, Finished):
                ends.append(record.at)
    return (max(ends) - min(starts)).total_seconds(), len(starts)


def _worker_round(project: Path, instances: int, processes: int) -> tuple[float, float]:
    """Instances per second that ``processes`` ``wf worker --once`` processes get through:
    over their whole lifetime (wall), and from the first run started to the last finished
    (journal times)."""
    store = project / "store"
    client = WorkflowClient(FileStore(store), {"steps": StepsWorkflow})
    for _ in range(instances):
        client.create("steps", params={"steps": 3})
    env = child_env()
    argv = [*wf_command(), "worker", "--once", "--concurrency", "1"]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            argv, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(processes)
    ]
    codes = [worker.wait() for worker in workers]
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"wf worker exited {codes}")
    unfinished = [s.id for s in client.list_instances() if s.status != "complete"]
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} instances not complete after the workers")
    window, runs = _journal_window(client.store)
    if runs != instances:
        raise RuntimeError(f"{runs} runs started for {instances} instances")
    return instances / elapsed, instances / window


def worker_throughput(report: Report, work: Path, sizes: Sizes) -> None:
    """3-step instances per second through ``wf worker --once`` with 1 and 2 processes,
    timed from the journals (the target's ratio) and by wall time (with start-up)."""
    walls: dict[int, list[float]] = {1: [], 2: []}
    windows: dict[int, list[float]] = {1: [], 2: []}
    count = sizes.worker_instances
    for run in range(sizes.worker_rounds):
        for processes in (1, 2) if run % 2 == 0 else (2, 1):  # alternating, as elsewhere
            project = work / f"worker-{processes}-{run}"
            write_project(project)
            wall, window = _worker_round(project, count, processes)
            walls[processes].append(wall)
            windows[processes].append(window)
            shutil.rmtree(project)
    medians: dict[tuple[str, int], float] = {}
    for processes in (1, 2):
        workers = f"`wf worker --once` x{processes} process{'es' if processes > 1 else ''}"
        medians["journal", processes] = report.add(
            _SECTION,
            f"{workers}, {count} queued 3-step instances (first run started to last finished)",
            Sample.of("inst/s", windows[processes]),
            note="from the journals' times: the workers' start-up and exit left out",
        ).median
        medians["wall", processes] = report.add(
            _SECTION,
            f"{workers}, {count} queued 3-step instances (wall time)",
            Sample.of("inst/s", walls[processes]),
            note="the processes' whole lifetime: includes each worker's start-up",
        ).median
    report.ratio(
        _SECTION,
        "`wf worker --once` x2 / x1 (medians, journal times)",
        medians["journal", 2] / medians["journal", 1],
        target=1.8,
        at_least=True,
    )
    report.ratio(
        _SECTION,
        "`wf worker --once` x2 / x1 (medians, wall time)",
        medians["wall", 2] / medians["wall", 1],
        note="start-up included: not the target's measure",
    )
