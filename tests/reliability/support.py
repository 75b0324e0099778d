"""Helpers shared by the reliability tests and ``scripts/reliability_run.py``.

Projects bind the workflows of :mod:`tests.reliability.chaos_workflows`; ``wf``
always runs as the installed console script, in the project's folder, with
``WF_CONFIG``/``WF_STORE`` removed from its environment.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cli_support import Project, wf_executable
from tests.reliability.chaos_workflows import CHAOS_WORKFLOWS
from tests.reliability.fault_workflows import FAULT_WORKFLOWS

__all__ = [
    "CHAOS_MODULE",
    "FAULT_MODULE",
    "PATIENCE_SECONDS",
    "WF",
    "Outcome",
    "assert_one_line_error",
    "make_chaos_project",
    "make_fault_project",
    "memory_cap",
    "run_wf",
    "snapshot",
    "start_wf",
    "wf_env",
]

WF = wf_executable()
CHAOS_MODULE = Path(__file__).resolve().parent / "chaos_workflows.py"
FAULT_MODULE = Path(__file__).resolve().parent / "fault_workflows.py"
PATIENCE_SECONDS = 60.0


def make_chaos_project(
    root: Path,
    *,
    max_inline_wait: str = "1 minute",
    fsync: bool = True,
    max_step_result_bytes: int | None = None,
    workflows: Mapping[str, str] = CHAOS_WORKFLOWS,
    module: Path = CHAOS_MODULE,
) -> Project:
    """Write ``root/workflows.toml`` binding ``workflows`` (name -> class name) of
    ``module``, by default every chaos workflow; the store is ``root/store``."""
    root.mkdir(parents=True, exist_ok=True)
    effects = root / "effects"
    effects.mkdir(exist_ok=True)
    entries = "".join(
        f'\n[[workflows]]\nname = "{name}"\nbinding = "{name.upper()}"\n'
        f'class_name = "{class_name}"\n'
        for name, class_name in workflows.items()
    )
    limits = (
        ""
        if max_step_result_bytes is None
        else f"\n[limits]\nmax_step_result_bytes = {max_step_result_bytes}\n"
    )
    config = root / "workflows.toml"
    config.write_text(
        f'name = "reliability"\nmain = "{module}"\n\n'
        f'[defaults]\nmax_inline_wait = "{max_inline_wait}"\n\n'
        f'[store]\ndir = "store"\nfsync = {"true" if fsync else "false"}\n{limits}{entries}',
        encoding="utf-8",
    )
    return Project(config=config, store=root / "store", effects=effects)


def make_fault_project(root: Path, *, fsync: bool = True) -> Project:
    """:func:`make_chaos_project` binding the workflows of
    :mod:`tests.reliability.fault_workflows`."""
    return make_chaos_project(root, fsync=fsync, workflows=FAULT_WORKFLOWS, module=FAULT_MODULE)


def wf_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``wf`` process: ours, minus store/config overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def memory_cap(limit_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping the child's address space (RLIMIT_AS) at ``limit_bytes``."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def start_wf(
    project: Project,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """Start ``wf ARGS`` in the project's folder."""
    return subprocess.Popen(
        [WF, *args],
        cwd=project.config.parent,
        env=wf_env(env),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Outcome:
    """What one finished ``wf`` process did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"wf {' '.join(self.args)} -> {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"
        )


def run_wf(
    project: Project,
    *args: str,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    cwd: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    """Run ``wf ARGS`` to its end (in ``cwd``, default the project's folder)."""
    done = subprocess.run(
        [WF, *args],
        cwd=cwd or project.config.parent,
        env=wf_env(env),
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
        preexec_fn=preexec,
    )
    return Outcome(tuple(args), done.returncode, done.stdout, done.stderr)


def assert_one_line_error(outcome: Outcome, code: int = 2, *, mentions: str = "") -> str:
    """The process exited ``code`` with exactly one ``error:`` line and no traceback."""
    assert outcome.code == code, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.describe()
    assert lines[0].startswith("error: "), outcome.describe()
    assert mentions in lines[0], outcome.describe()
    return lines[0]


def snapshot(root: Path, *, with_cache: bool = False) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``root``: relative path -> (mode, bytes; b"" for folders).

    A store's ``cache/`` (the listing index, which `wf list` refreshes: derived data,
    never the record) is left out unless ``with_cache``.
    """
    found: dict[str, tuple[int, bytes]] = {}
    if not root.exists():
        return found
    for folder, dirs, files in os.walk(root):
        if not with_cache and "cache" in dirs and "journals" in dirs:
            dirs.remove("cache")
        for name in dirs:
            path = Path(folder, name)
            found[str(path.relative_to(root)) + "/"] = (path.stat().st_mode, b"")
        for name in files:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = (path.stat().st_mode, path.read_bytes())
    return found
