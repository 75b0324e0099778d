"""Per-step overhead of a journaled ``step.do`` against the disk's floor (issue 6, items 1-2).

The floor is what any durable log must pay for one step: encode one JSON line
like a ``step_completed`` record, append it, and (durable mode) sync it with the
call wfcli uses (``fdatasync`` where there is one). Floor and product runs
alternate so that a burst of noise from other processes hits both. In relaxed mode
both are CPU-bound, so their CPU time (of the thread that runs them) is reported too:
it is inflated less than wall time on a machine shared with other work.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from wfcli import FileStore, WorkflowClient

from .harness import Report, Sample, Sizes
from .workloads import TimedStepsWorkflow

__all__ = ["append_floor", "measure_steps", "step_overhead"]

_sync = getattr(os, "fdatasync", os.fsync)


FLOOR_RECORD: dict[str, object] = {
    "v": 1,
    "n": 1,
    "type": "step_completed",
    "at": "2025-01-01T00:00:00.000000+00:00",
    "step": "",
    "kind": "do",
    "attempt": 1,
    "output": 1,
}
"""The line every floor writes: a ``step_completed`` of a trivial step."""


def append_floor(
    path: Path, lines: int, *, sync: Callable[[int], None] | None
) -> tuple[float, float]:
    """Microseconds per line to encode, append and (with ``sync``) sync one JSON line:
    wall time, and CPU time of this thread."""
    record = dict(FLOOR_RECORD)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        started, cpu_started = time.perf_counter(), time.thread_time()
        for index in range(lines):
            record["n"] = index + 1
            record["step"] = f"step-{index}"
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            if sync is not None:
                sync(fd)
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    finally:
        os.close(fd)
    return elapsed / lines * 1e6, cpu / lines * 1e6


def measure_steps(root: Path, steps: int, *, durable: bool) -> tuple[float, float]:
    """Microseconds per ``step.do`` (trivial callback) in a fresh instance and store:
    wall time, and CPU time of the thread that ran the steps."""
    client = WorkflowClient(FileStore(root, durable=durable), {"timed": TimedStepsWorkflow})
    instance = client.create("timed", params={"steps": steps})
    client.execute(instance.id)
    elapsed = TimedStepsWorkflow.elapsed.pop(instance.id)
    return elapsed / steps * 1e6, TimedStepsWorkflow.cpu.pop(instance.id) / steps * 1e6


def step_overhead(report: Report, work: Path, sizes: Sizes) -> None:
    """Items 1 and 2: durable and relaxed ``step.do`` against their floors."""
    for durable, steps, target in (
        (True, sizes.step_count_durable, 1.3),
        (False, sizes.step_count_relaxed, 4.0),
    ):
        mode = "durable" if durable else "relaxed"
        section = f"1-2 per step ({mode})"
        floors, products, fsync_floors = [], [], []
        for run in range(sizes.runs):
            folder = work / f"steps-{mode}-{run}"
            folder.mkdir(parents=True)
            floors.append(
                append_floor(folder / "floor.jsonl", steps, sync=_sync if durable else None)
            )
            products.append(measure_steps(folder / "store", steps, durable=durable))
            if durable:
                fsync_floors.append(append_floor(folder / "fsync.jsonl", steps, sync=os.fsync))
        floor = report.add(
            section,
            "floor: encode + append one JSON line" + (" + fdatasync" if durable else ""),
            Sample.of("us", (wall for wall, _ in floors)),
        )
        if durable:
            report.add(
                section,
                "floor with os.fsync instead",
                Sample.of("us", (wall for wall, _ in fsync_floors)),
            )
        product = report.add(
            section,
            f"step.do, trivial callback, FileStore(durable={durable})",
            Sample.of("us", (wall for wall, _ in products)),
        )
        report.ratio(
            section, "step.do / floor (medians)", product.median / floor.median, target=target
        )
        if not durable:
            floor_cpu = report.add(
                section, "floor, CPU time", Sample.of("us", (cpu for _, cpu in floors))
            )
            product_cpu = report.add(
                section, "step.do, CPU time", Sample.of("us", (cpu for _, cpu in products))
            )
            report.ratio(
                section,
                "step.do / floor, CPU time (medians)",
                product_cpu.median / floor_cpu.median,
            )
        report.section_info(section, steps_per_run=steps)
