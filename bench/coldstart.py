"""Cold start of whole ``wf`` processes against ``python -c pass`` (issue 6, item 5)."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from wfcli import FileStore, WorkflowClient

from .harness import Report, Sizes, child_env, time_process, wf_command, write_project
from .workloads import StepsWorkflow

__all__ = ["cold_start"]

_SECTION = "5 cold start"
_TARGET_MS = 150.0


def cold_start(report: Report, work: Path, sizes: Sizes) -> None:
    """``wf --help``, ``wf status ID --json`` and ``wf list --json`` (10 instances)."""
    project = work / "cold"
    write_project(project)
    client = WorkflowClient(FileStore(project / "store"), {"steps": StepsWorkflow})
    ids = []
    for _ in range(10):
        instance = client.create("steps", params={"steps": 3})
        client.execute(instance.id)
        ids.append(instance.id)
    env = child_env()
    # typer's version decides most of the start-up (0.29 imports pydantic at each start).
    report.section_info(_SECTION, typer=version("typer"))
    commands = [
        ("`python -c pass` (the interpreter alone)", [sys.executable, "-c", "pass"], None),
        ("`wf --help`", [*wf_command(), "--help"], _TARGET_MS),
        (
            "`wf status ID --json` (3 steps)",
            [*wf_command(), "status", ids[0], "--json"],
            _TARGET_MS,
        ),
        ("`wf list --json` (10 instances)", [*wf_command(), "list", "--json"], _TARGET_MS),
    ]
    for name, argv, target in commands:
        sample, _ = time_process(
            argv, cwd=project, env=env, runs=sizes.cold_runs, warmups=sizes.warmups
        )
        report.add(_SECTION, name, sample, target=target)
