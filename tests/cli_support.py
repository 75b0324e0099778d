"""Shared helpers of the CLI tests: a throwaway project for ``wf`` to run.

:func:`make_project` writes a ``workflows.toml`` binding the core tests'
workflows (``tests/workflows_for_tests.py``: pipeline, approval, sleeper, with
countable side effects and blocking points) and the two below, which this file
defines for outcomes those lack: an error, and a retried attempt. The ``wf``
under test, in-process or a subprocess, imports both files from the config.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfcli import NonRetryableError, StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

__all__ = ["ERROR_MESSAGE", "Failing", "Flaky", "Project", "make_project", "wf_executable"]

ERROR_MESSAGE = "the answer was 42"
_TESTS = Path(__file__).resolve().parent


class Failing(WorkflowEntrypoint):
    """Ends errored: its one step raises a non-retryable error."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def explode() -> None:
            raise NonRetryableError(ERROR_MESSAGE)

        step.do("explode", explode)


class Flaky(WorkflowEntrypoint):
    """Its step fails on the first attempt and succeeds on the retry, 50 ms later."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def wobble(context: StepContext) -> int:
            if context.attempt == 1:
                raise ValueError("not yet")
            return context.attempt

        return step.do("wobble", wobble, retries={"limit": 1, "delay": 0.05})


# name -> (class name, module file)
_BOUND = {
    "pipeline": ("Pipeline", _TESTS / "workflows_for_tests.py"),
    "approval": ("Approval", _TESTS / "workflows_for_tests.py"),
    "sleeper": ("Sleeper", _TESTS / "workflows_for_tests.py"),
    "failing": ("Failing", _TESTS / "cli_support.py"),
    "flaky": ("Flaky", _TESTS / "cli_support.py"),
}


@dataclass(frozen=True)
class Project:
    """A throwaway project: its config file, its store, and a folder for side effects."""

    config: Path
    store: Path
    effects: Path

    def options(self) -> list[str]:
        """``--config`` and ``--store`` for a ``wf`` command line."""
        return ["--config", str(self.config), "--store", str(self.store)]

    def params(self, **extra: object) -> str:
        """``--params`` JSON every test workflow accepts: where side effects go, and ``extra``."""
        return json.dumps({"dir": str(self.effects), **extra})


def make_project(root: Path, *, max_inline_wait: str = "1 second") -> Project:
    """Write ``root/workflows.toml`` binding the test workflows; the store is ``root/store``."""
    root.mkdir(parents=True, exist_ok=True)
    effects = root / "effects"
    effects.mkdir(exist_ok=True)
    entries = "".join(
        f'\n[[workflows]]\nname = "{name}"\nbinding = "{name.upper()}"\n'
        f'class_name = "{class_name}"\nmain = "{module}"\n'
        for name, (class_name, module) in _BOUND.items()
    )
    config = root / "workflows.toml"
    config.write_text(
        f'name = "cli-tests"\n\n[defaults]\nmax_inline_wait = "{max_inline_wait}"\n\n'
        f'[store]\ndir = "store"\nfsync = false\n{entries}',
        encoding="utf-8",
    )
    return Project(config=config, store=root / "store", effects=effects)


def wf_executable() -> str:
    """The installed ``wf`` console script: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "wf"
    if beside.exists():
        return str(beside)
    found = shutil.which("wf")
    if found is None:
        raise FileNotFoundError("the wf console script is not installed")
    return found
