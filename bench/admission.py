"""What a concurrency limit costs a worker (issue 15): throughput with and without one.

One ``Worker`` in this process (two threads) drains the same queue of 3-step instances
on a durable file store, alternately with no limit and with ``concurrency = { limit =
2 }`` on the workflow, which never binds (the worker runs two at a time anyway): the
difference is what admission costs (the store's admission lock, a listing of every
instance, counting slots), measured in one run.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from pathlib import Path

from wfcli import FileStore, WorkflowClient
from wfcli.client import Worker
from wfcli.core.admission import ConcurrencyLimit

from .harness import Report, Sample, Sizes
from .workloads import StepsWorkflow

__all__ = ["admission_cost"]

_SECTION = "9 admission under a limit"


def _round(root: Path, instances: int, *, limited: bool) -> float:
    """Instances per second one two-thread worker gets through."""
    limits = {"steps": ConcurrencyLimit(limit=2)} if limited else {}
    client = WorkflowClient(FileStore(root), {"steps": StepsWorkflow}, limits=limits)
    for _ in range(instances):
        client.create("steps", params={"steps": 3})
    worker = Worker(client, concurrency=2, poll_interval=timedelta(milliseconds=10), once=True)
    started = time.perf_counter()
    worker.run()
    elapsed = time.perf_counter() - started
    unfinished = [s.id for s in client.list_instances() if s.status != "complete"]
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} instances not complete after the worker")
    return instances / elapsed


def admission_cost(report: Report, work: Path, sizes: Sizes) -> None:
    """Throughput without a limit and under one, alternating; the ratio of the medians."""
    # 2 x worker_rounds rounds of each: the rounds are short and the machine is shared.
    free: list[float] = []
    limited: list[float] = []
    for run in range(sizes.worker_rounds * 2):
        free.append(_round(work / f"admission-free-{run}", sizes.worker_instances, limited=False))
        limited.append(
            _round(work / f"admission-limited-{run}", sizes.worker_instances, limited=True)
        )
    label = f"{sizes.worker_instances} queued 3-step instances, one worker of 2 threads"
    report.add(_SECTION, f"no limit, {label}", Sample.of("inst/s", free))
    report.add(_SECTION, f"`concurrency = {{ limit = 2 }}`, {label}", Sample.of("inst/s", limited))
    report.ratio(
        _SECTION,
        "throughput without the limit / under it",
        statistics.median(free) / statistics.median(limited),
        target=1 / 0.9,
        note="at most 1.11: admission costs at most 10% of the throughput (the limit never binds)",
    )
