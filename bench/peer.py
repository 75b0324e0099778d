"""wfcli side by side with DBOS Transact on its default SQLite system database (item 6).

DBOS runs in a child process (``python -m bench.peer DIR ... [--database URL]``, see
:func:`run_dbos`) so that its background threads and global state stay out of every
other measurement. Both sides run the same workflows: 3 and 100 trivial steps, each
instance timed from start to completion with every step durably recorded. The
PostgreSQL section (``bench/postgres.py``) runs the same child on PostgreSQL.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from wfcli import FileStore, WorkflowClient
from wfcli.store.contract import JournalStore

from .harness import Report, Sample, Sizes, child_env, time_process, wf_command
from .workloads import StepsWorkflow

__all__ = ["dbos_available", "peer", "run_dbos", "time_instances", "time_wfcli_instances"]

_SECTION = "6 peer: DBOS"
_SMALL = 3


def dbos_available() -> bool:
    return importlib.util.find_spec("dbos") is not None


def time_instances(start: object, steps: int, count: int) -> list[float]:
    """Milliseconds per instance of ``steps`` steps, ``count`` times after 3 warm-ups."""
    assert callable(start)
    times = []
    for index in range(count + 3):
        began = time.perf_counter()
        start(steps)
        if index >= 3:
            times.append((time.perf_counter() - began) * 1000)
    return times


def time_wfcli_instances(store: JournalStore, steps: int, count: int) -> list[float]:
    """:func:`time_instances` of wfcli's ``steps``-step instances, run to completion on
    ``store``."""
    client = WorkflowClient(store, {"steps": StepsWorkflow})

    def start(steps: int) -> None:
        instance = client.create("steps", params={"steps": steps})
        if client.execute(instance.id).status != "complete":
            raise RuntimeError(f"wfcli instance {instance.id} did not complete")

    return time_instances(start, steps, count)


def _wfcli_side(
    work: Path, large: int, small_count: int, large_count: int
) -> dict[str, list[float]]:
    store = FileStore(work / "wfcli-store")
    return {
        "small": time_wfcli_instances(store, _SMALL, small_count),
        "large": time_wfcli_instances(store, large, large_count),
    }


def _dbos_side(
    work: Path, large: int, small_count: int, large_count: int, database: str | None
) -> dict[str, list[float]]:
    """Runs in the child process."""
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "wfcli-bench",
        "system_database_url": database or f"sqlite:///{work / 'dbos.sqlite'}",
        "log_level": "ERROR",
    }
    DBOS(config=config)

    @DBOS.step()
    def one() -> int:
        return 1

    @DBOS.workflow()
    def steps_workflow(steps: int) -> dict[str, int]:
        for _ in range(steps):
            one()
        return {"steps": steps}

    DBOS.launch()
    try:
        return {
            "small": time_instances(steps_workflow, _SMALL, small_count),
            "large": time_instances(steps_workflow, large, large_count),
        }
    finally:
        DBOS.destroy()


def run_dbos(
    folder: Path, large: int, small_count: int, large_count: int, database: str | None = None
) -> dict[str, list[float]]:
    """DBOS's milliseconds per instance (``small``: 3 steps, ``large``: ``large`` steps),
    timed in a child process; its system database is ``database`` (a URL DBOS takes),
    else SQLite in ``folder``."""
    command = [sys.executable, "-m", "bench.peer", str(folder), str(large)]
    command += [str(small_count), str(large_count)]
    if database is not None:
        command += ["--database", database]
    done = subprocess.run(
        command,
        cwd=Path(__file__).resolve().parent.parent,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the DBOS side failed: {done.stderr[-2000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def peer(report: Report, work: Path, sizes: Sizes) -> None:
    """Per-step and per-instance ratios wfcli/DBOS, and both CLIs' cold start."""
    if not dbos_available():
        report.section_info(_SECTION, skipped="dbos is not installed: pip install -e '.[bench]'")
        return
    large = sizes.peer_large_steps
    small_count, large_count = sizes.instances, max(2, sizes.runs)
    folder = work
    folder.mkdir(parents=True)
    theirs = run_dbos(folder, large, small_count, large_count)
    ours = _wfcli_side(folder, large, small_count, large_count)
    medians = {}
    for side, times in (("wfcli", ours), ("DBOS", theirs)):
        small = report.add(
            _SECTION, f"{side}: {_SMALL}-step instance", Sample.of("ms", times["small"])
        )
        per_step = report.add(
            _SECTION,
            f"{side}: per step, in {large}-step instances",
            Sample.of("ms", times["large"]).scaled(1000 / large, "us"),
        )
        medians[side] = (small.median, per_step.median)
    report.ratio(
        _SECTION, "wfcli / DBOS per instance (3 steps)", medians["wfcli"][0] / medians["DBOS"][0]
    )
    report.ratio(_SECTION, "wfcli / DBOS per step", medians["wfcli"][1] / medians["DBOS"][1])
    dbos_script = Path(sys.executable).parent / "dbos"
    env = child_env()
    runs, warmups = sizes.cold_runs, sizes.warmups
    theirs_cli, _ = time_process(
        [str(dbos_script), "--help"], cwd=folder, env=env, runs=runs, warmups=warmups
    )
    ours_cli, _ = time_process(
        [*wf_command(), "--help"], cwd=folder, env=env, runs=runs, warmups=warmups
    )
    report.add(_SECTION, "`dbos --help`", theirs_cli)
    report.add(_SECTION, "`wf --help` (same runs' conditions)", ours_cli)
    report.ratio(_SECTION, "wf / dbos CLI cold start", ours_cli.median / theirs_cli.median)
    report.section_info(_SECTION, large_steps=large, dbos_database="SQLite (DBOS default)")


def main() -> None:
    """The child: time DBOS and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("folder", type=Path)
    parser.add_argument("large", type=int)
    parser.add_argument("small_count", type=int)
    parser.add_argument("large_count", type=int)
    parser.add_argument("--database", help="DBOS's system database URL (default: SQLite)")
    arguments = parser.parse_args()
    result = _dbos_side(
        arguments.folder,
        arguments.large,
        arguments.small_count,
        arguments.large_count,
        arguments.database,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
