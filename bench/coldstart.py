"""Cold start of whole ``wf`` processes against ``python -c pass`` (issue 6, item 5)."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from wfcli import FileStore, WorkflowClient

from .harness import Report, Sample, Sizes, child_env, run_process, wf_command, write_project
from .workloads import StepsWorkflow

__all__ = ["cold_start"]

_SECTION = "5 cold start"
_TARGET_RATIO = 3.0  # times `python -c pass`
_IMPORT_TYPER = [sys.executable, "-c", "import typer"]


def cold_start(report: Report, work: Path, sizes: Sizes) -> None:
    """``wf --help``, ``wf status ID --json`` and ``wf list --json`` (10 instances)."""
    project = work / "cold"
    write_project(project)
    client = WorkflowClient(FileStore(project / "store"), {"steps": StepsWorkflow})
    ids = []
    for _ in range(10):
        instance = client.create("steps", params={"steps": 10})
        client.execute(instance.id)
        ids.append(instance.id)
    env = child_env()
    # typer's version decides most of the start-up (0.29 imports pydantic at each start).
    report.section_info(_SECTION, typer=version("typer"))
    # Each with its target ratio to the interpreter alone (None: shown, no target).
    commands: list[tuple[str, list[str], float | None]] = [
        ("`python -c pass` (the interpreter alone)", [sys.executable, "-c", "pass"], None),
        ("`python -c 'import typer'` (typer's import and exit alone)", _IMPORT_TYPER, None),
        ("`wf --help`", [*wf_command(), "--help"], _TARGET_RATIO),
        (
            "`wf status ID --json` (10 steps)",
            [*wf_command(), "status", ids[0], "--json"],
            _TARGET_RATIO,
        ),
        ("`wf list --json` (10 instances)", [*wf_command(), "list", "--json"], _TARGET_RATIO),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in commands}
    for run in range(sizes.warmups + sizes.cold_runs):  # alternating: noise hits the floor too
        for name, argv, _ in commands:
            seconds = run_process(argv, cwd=project, env=env).seconds
            if run >= sizes.warmups:
                samples[name].append(seconds * 1000)
    interpreter = None
    for name, _, target in commands:
        sample = report.add(_SECTION, name, Sample.of("ms", samples[name]))
        if interpreter is None:
            interpreter = sample.median
            continue
        report.ratio(
            _SECTION, f"{name} / `python -c pass`", sample.median / interpreter, target=target
        )
