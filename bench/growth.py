"""How costs grow with journal length and store size (issue 6, items 4 and 7).

Long journals are made by running the workflows (relaxed store, same format);
big stores are made by copying one real journal under new instance IDs, which
gives byte-for-byte the files wfcli writes, in seconds instead of minutes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from wfcli import FileStore, WorkflowClient
from wfcli.core.codec import Created, decode_line, encode_record

from .harness import (
    Report,
    Sample,
    Sizes,
    child_env,
    run_process,
    time_process,
    wf_command,
    write_project,
)
from .workloads import ParkedWorkflow, StepsWorkflow

__all__ = ["clone_store", "growth", "list_and_replay", "run_memory"]

_GROWTH = "4 growth"
_MEMORY = "7 memory"
_TEMPLATE_ID = "template-instance"


def _read_and_parse(path: Path) -> float:
    """Seconds to read a journal and ``json.loads`` every line: the floor of any resume."""
    started = time.perf_counter()
    with open(path, "rb") as journal:
        records = [json.loads(line) for line in journal]
    elapsed = time.perf_counter() - started
    assert records
    return elapsed


def _resume_times(store: Path, instance_id: str, runs: int, *, durable: bool) -> list[float]:
    """Seconds per resume of a parked instance: replay every step, suspend at the wait.

    Each resume appends two records (``run_started``, ``suspended``); the journal is put
    back as it was before each one, so that every run reads the lines the floor read.
    """
    journal = store / "journals" / f"{instance_id}.jsonl"
    parked = journal.read_bytes()
    times = []
    for _ in range(runs):
        journal.write_bytes(parked)
        client = WorkflowClient(FileStore(store, durable=durable), {"parked": ParkedWorkflow})
        started = time.perf_counter()
        outcome = client.execute(instance_id)
        times.append(time.perf_counter() - started)
        if outcome.status != "waiting":
            raise RuntimeError(f"{instance_id} resumed to {outcome.status}, not waiting")
    return times


def growth(report: Report, work: Path, sizes: Sizes) -> Path:
    """Resume time at each journal length, and ``wf status``/``history`` on the longest.

    Returns the project folder whose store holds the parked instances.
    """
    project = work / "growth"
    write_project(project, fsync=False)
    store = project / "store"
    builder = WorkflowClient(FileStore(store, durable=False), {"parked": ParkedWorkflow})
    per_step = {}
    for steps in sizes.growth_steps:
        instance_id = f"parked-{steps}"
        builder.create("parked", params={"steps": steps}, instance_id=instance_id)
        builder.execute(instance_id)
        parse = Sample.of(
            "ms",
            (
                _read_and_parse(store / "journals" / f"{instance_id}.jsonl") * 1000
                for _ in range(sizes.runs)
            ),
        )
        report.add(_GROWTH, f"read + json.loads the journal, {steps:,} steps", parse)
        relaxed = Sample.of(
            "ms", (t * 1000 for t in _resume_times(store, instance_id, sizes.runs, durable=False))
        )
        report.add(_GROWTH, f"resume, {steps:,} steps (relaxed store)", relaxed)
        durable = Sample.of(
            "ms", (t * 1000 for t in _resume_times(store, instance_id, sizes.runs, durable=True))
        )
        report.add(
            _GROWTH,
            f"resume, {steps:,} steps (durable store)",
            durable,
            note="adds two synced records",
        )
        report.ratio(
            _GROWTH,
            f"resume (relaxed) / read + parse, {steps:,} steps",
            relaxed.median / parse.median,
            target=2.0,
        )
        per_step[steps] = relaxed.median / steps
    smallest, largest = min(per_step), max(per_step)
    report.ratio(
        _GROWTH,
        f"resume time per step, {largest:,} vs {smallest:,} steps",
        per_step[largest] / per_step[smallest],
        note="1.0 is linear",
    )
    longest = f"parked-{largest}"
    _watch_refresh(report, store, longest, largest, sizes.runs)
    env = child_env()
    for command in ("status", "history"):
        sample, _ = time_process(
            [*wf_command(), command, longest, "--json"],
            cwd=project,
            env=env,
            runs=sizes.process_runs,
            warmups=min(1, sizes.warmups),
        )
        report.add(_GROWTH, f"`wf {command} --json`, {largest:,} steps", sample)
    return project


def _watch_refresh(report: Report, store: Path, instance_id: str, steps: int, runs: int) -> None:
    """One refresh of ``wf status --watch`` (a :class:`JournalFollower`, which reads only
    new lines) against reading the status from scratch, as each refresh did before."""
    client = WorkflowClient(FileStore(store, durable=False), {"parked": ParkedWorkflow})
    follower = client.follow(instance_id)
    follower.status()
    refreshes, full_reads = [], []
    for _ in range(runs):
        started = time.perf_counter()
        follower.status()
        refreshes.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.status(instance_id)
        full_reads.append((time.perf_counter() - started) * 1000)
    name = f"{steps:,} steps, no new line"
    report.add(_GROWTH, f"`wf status --watch` refresh, {name}", Sample.of("ms", refreshes))
    report.add(_GROWTH, f"status read from scratch, {name}", Sample.of("ms", full_reads))


def clone_store(template: Path, store: Path, count: int) -> None:
    """Fill ``store`` with ``count`` copies of the journal ``template`` under new IDs."""
    journals = store / "journals"
    journals.mkdir(parents=True, exist_ok=True)
    for folder in ("locks", "inbox", "tmp"):
        (store / folder).mkdir(exist_ok=True)
    first, rest = template.read_bytes().split(b"\n", 1)
    created = decode_line(first)[0]
    if not isinstance(created, Created):
        raise TypeError(f"{template} does not start with its created record")
    for index in range(count):
        instance_id = f"inst-{index:06d}"
        line = encode_record(dataclasses.replace(created, instance_id=instance_id), 1)
        (journals / f"{instance_id}.jsonl").write_bytes(f"{line}\n".encode() + rest)
        # Every executed instance has a lock file; listing checks each one's holder.
        (store / "locks" / f"{instance_id}.lock").write_bytes(b"")


def _drop_index(store: Path) -> Callable[[], None]:
    """Before a run: remove the listing index, so that ``wf list`` reads every journal."""

    def drop() -> None:
        shutil.rmtree(store / "cache", ignore_errors=True)

    return drop


def list_and_replay(report: Report, work: Path, sizes: Sizes) -> None:
    """``wf list --json`` over big stores, and ``wf replay --all``."""
    template_store = work / "template"
    client = WorkflowClient(FileStore(template_store, durable=False), {"steps": StepsWorkflow})
    client.create("steps", params={"steps": 3}, instance_id=_TEMPLATE_ID)
    client.execute(_TEMPLATE_ID)
    template = template_store / "journals" / f"{_TEMPLATE_ID}.jsonl"
    env = child_env()
    for count in sizes.list_sizes:
        project = work / f"list-{count}"
        write_project(project)
        clone_store(template, project / "store", count)
        largest = count == max(sizes.list_sizes)
        for label, before in (
            ("no index yet: every journal read", _drop_index(project / "store")),
            ("index current", None),
        ):
            sample, runs = time_process(
                [*wf_command(), "list", "--json"],
                cwd=project,
                env=env,
                runs=sizes.process_runs,
                warmups=min(1, sizes.warmups),
                before=before,
            )
            listed = json.loads(runs[-1].stdout)["instances"]
            if len(listed) != count:
                raise RuntimeError(f"wf list showed {len(listed)} of {count} instances")
            report.add(
                _GROWTH,
                f"`wf list --json`, {count:,} instances, {label}",
                sample,
                target=1000.0 if largest and before is None else None,
            )
            if largest:
                report.add(
                    _MEMORY,
                    f"peak RSS, `wf list --json`, {count:,} instances, {label}",
                    Sample.of("MiB", (run.peak_rss_mib for run in runs)),
                )
    project = work / "replay"
    write_project(project)
    clone_store(template, project / "store", sizes.replay_instances)
    sample, _ = time_process(
        [*wf_command(), "replay", "--all", "--json"],
        cwd=project,
        env=env,
        runs=max(1, sizes.process_runs // 3),
        warmups=min(1, sizes.warmups),
    )
    report.add(_GROWTH, f"`wf replay --all --json`, {sizes.replay_instances:,} instances", sample)


def run_memory(report: Report, work: Path, sizes: Sizes) -> None:
    """Peak RSS (and wall time) of ``wf run`` on a long instance (relaxed store)."""
    project = work / "memory"
    write_project(project, fsync=False)
    steps = sizes.memory_steps
    run = run_process(
        [*wf_command(), "run", "steps", "--params", json.dumps({"steps": steps}), "--json"],
        cwd=project,
        env=child_env(),
    )
    report.add(
        _MEMORY,
        f"peak RSS, `wf run --json`, {steps:,} steps",
        Sample.of("MiB", [run.peak_rss_mib]),
        note=f"one run, {run.seconds:.1f} s wall, fsync off",
    )
