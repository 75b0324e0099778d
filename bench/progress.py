"""What ``wf run``'s progress output costs per step (issue 16, item 8).

The same trivial ``step.do`` loop three ways, alternating so that noise from
other processes hits all three: with no output at all (``client.execute``
without an observer), as ``wf run --json`` runs it (the CLI's foreground path,
quiet), and as ``wf run | cat`` runs it (the CLI's foreground path printing
plain progress lines into a pipe that a thread drains). The workflow times its
own loop, so process start-up and the final summary are not in the figures.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from wfcli import FileStore, WorkflowClient
from wfcli.cli.framework import Screen, execute_foreground

from .harness import Report, Sample, Sizes
from .workloads import TimedStepsWorkflow

__all__ = ["progress_output"]

_MODES = ("no output", "--json", "plain lines into a pipe")


@contextlib.contextmanager
def _stdout_into_a_pipe() -> Iterator[None]:
    """``sys.stdout`` is the write end of a pipe a thread reads and drops, as ``| cat``."""
    read_end, write_end = os.pipe()

    def drain() -> None:
        while os.read(read_end, 1 << 16):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    previous = sys.stdout
    sys.stdout = os.fdopen(write_end, "w", encoding="utf-8")
    try:
        yield
    finally:
        sys.stdout.close()
        sys.stdout = previous
        reader.join()
        os.close(read_end)


def _per_step(root: Path, steps: int, mode: str) -> tuple[float, float]:
    """Microseconds per ``step.do`` of a fresh instance run the way ``mode`` says: wall
    clock, and CPU time of the thread that ran the steps."""
    client = WorkflowClient(FileStore(root, durable=False), {"timed": TimedStepsWorkflow})
    instance = client.create("timed", params={"steps": steps})
    with _stdout_into_a_pipe():  # for all three, so that they differ in nothing else
        if mode == "no output":
            client.execute(instance.id)
        else:
            execute_foreground(client, instance.id, Screen(), max_wait=None, quiet=mode == "--json")
    wall = TimedStepsWorkflow.elapsed.pop(instance.id) / steps * 1e6
    return wall, TimedStepsWorkflow.cpu.pop(instance.id) / steps * 1e6


def _median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def progress_output(report: Report, work: Path, sizes: Sizes) -> None:
    """Per-step cost of plain progress lines against ``--json`` and no output at all.

    Each round runs the three, in an order that rotates from round to round; the
    ratios are the medians of each round's own ratios, so a slow stretch of the
    machine lands in numerator and denominator alike. The target is on CPU time
    (the writes' system calls included), which other processes' load leaves alone;
    the wall-clock ratio is beside it.
    """
    section = "16.8 progress output per step"
    steps = sizes.step_count_relaxed
    wall: dict[str, list[float]] = {mode: [] for mode in _MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in _MODES}
    for round_number in range(3 * sizes.runs):
        start = round_number % len(_MODES)
        for mode in _MODES[start:] + _MODES[:start]:
            folder = work / f"{round_number}-{_MODES.index(mode)}"
            elapsed, used = _per_step(folder, steps, mode)
            wall[mode].append(elapsed)
            cpu[mode].append(used)
    bare, as_json, plain = _MODES
    names = {
        bare: "step.do with no output (FileStore(durable=False))",
        as_json: "step.do under wf run --json",
        plain: "step.do under piped wf run (plain lines)",
    }
    for mode in _MODES:
        report.add(section, names[mode], Sample.of("us", wall[mode]))
    for mode in _MODES:
        report.add(section, f"{names[mode]}, CPU time", Sample.of("us", cpu[mode]))
    report.ratio(
        section,
        "plain lines / no output, CPU time (median of rounds)",
        _median_ratio(cpu[plain], cpu[bare]),
        target=1.1,
    )
    report.ratio(
        section,
        "plain lines / no output, wall clock (median of rounds)",
        _median_ratio(wall[plain], wall[bare]),
    )
    report.ratio(
        section,
        "--json / no output, CPU time (median of rounds)",
        _median_ratio(cpu[as_json], cpu[bare]),
    )
    report.section_info(section, steps_per_run=steps, rounds=len(wall[bare]))
