"""Sweeps over a damaged journal, shared by ``test_damaged_files.py`` and the long run.

Both run ``wf`` in this process (typer's ``CliRunner``: the real commands,
cheap enough to repeat at every byte) and collect failures instead of stopping
at the first, so the long run can count them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from typer.testing import CliRunner, Result

from tests.cli_support import Project
from wfcli.cli import app

__all__ = ["SweepFigures", "flip_sweep", "torn_sweep", "wf_inside"]

_runner = CliRunner()


def wf_inside(project: Project, *args: str) -> Result:
    """``wf ARGS`` in this process, on the project's config and store."""
    return _runner.invoke(app, [*args, *project.options()])


@dataclass
class SweepFigures:
    """Damaged journals tried, how each read, and what went wrong."""

    tried: int = 0
    reported: int = 0  # exit 2: one error line naming the file and the damaged line
    read_as_valid: int = (
        0  # exit 0: the journal still read (a torn tail, or a flip to a valid value)
    )
    failures: list[str] = field(default_factory=list)


def _escaped(result: Result) -> str | None:
    """What went wrong beyond a clean exit: an exception that escaped the command."""
    if result.exception is None or isinstance(result.exception, SystemExit):
        return None
    return f"{type(result.exception).__name__}: {result.exception}"


def flip_sweep(
    project: Project,
    instance_id: str,
    positions: Iterable[int],
    rng: random.Random,
    commands: tuple[tuple[str, ...], ...] = (("status",), ("history",)),
) -> SweepFigures:
    """Flip one random bit at each position of the journal, one position at a time.

    Each command must either report the damage on the flipped line (or the next,
    when the flip made a newline) with exit 2, or read the journal (exit 0); it
    must never raise or change the file. The journal is restored afterwards.
    """
    figures = SweepFigures()
    path = project.store / "journals" / f"{instance_id}.jsonl"
    whole = path.read_bytes()
    try:
        for position in positions:
            flipped = bytearray(whole)
            flipped[position] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(flipped))
            line = whole[:position].count(b"\n") + 1
            for command in commands:
                result = wf_inside(project, *command, instance_id)
                figures.tried += 1
                problem = _escaped(result) or _flip_problem(result, str(path), line)
                if path.read_bytes() != flipped:
                    problem = "the journal changed"
                if problem is not None:
                    figures.failures.append(f"{command[0]} at byte {position}: {problem}")
                elif result.exit_code == 2:
                    figures.reported += 1
                else:
                    figures.read_as_valid += 1
    finally:
        path.write_bytes(whole)
    return figures


def _flip_problem(result: Result, path: str, line: int) -> str | None:
    if result.exit_code == 0:
        return None
    if result.exit_code != 2:
        return f"exit {result.exit_code}: {result.output}"
    lines = result.stderr.splitlines()
    expected = (f"error: {path}:{line}: ", f"error: {path}:{line + 1}: ")
    if len(lines) != 1 or not lines[0].startswith(expected):
        return f"not one error line naming line {line}: {result.stderr!r}"
    return None


def torn_sweep(project: Project, instance_id: str, *, sample_every: int = 1) -> SweepFigures:
    """Cut the journal at every byte offset of its last record.

    At each offset ``wf status --json`` must show what it shows without that
    record; at every ``sample_every``-th offset ``history`` must list the
    records without it and ``doctor`` must find the store healthy, noting the
    torn tail. No command may change the file. The journal is restored afterwards.
    """
    figures = SweepFigures()
    path = project.store / "journals" / f"{instance_id}.jsonl"
    whole = path.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    try:
        path.write_bytes(whole[:last_start])
        expected_status = json.loads(wf_inside(project, "status", instance_id, "--json").stdout)
        expected_history = json.loads(wf_inside(project, "history", instance_id, "--json").stdout)
        for offset in range(last_start + 1, len(whole)):
            torn = whole[:offset]
            path.write_bytes(torn)
            problems = [_torn_status(project, instance_id, expected_status)]
            if offset % sample_every == 0:
                problems += [
                    _torn_history(project, instance_id, expected_history),
                    _torn_doctor(project),
                ]
            if path.read_bytes() != torn:
                problems.append("the journal changed")
            figures.tried += 1
            found = [p for p in problems if p is not None]
            if found:
                figures.failures.append(f"cut at byte {offset}: {'; '.join(found)}")
            else:
                figures.read_as_valid += 1
    finally:
        path.write_bytes(whole)
    return figures


def _torn_status(project: Project, instance_id: str, expected: object) -> str | None:
    result = wf_inside(project, "status", instance_id, "--json")
    if result.exit_code != 0 or json.loads(result.stdout) != expected:
        return _escaped(result) or f"status exit {result.exit_code}: {result.output[:300]}"
    return None


def _torn_history(project: Project, instance_id: str, expected: object) -> str | None:
    result = wf_inside(project, "history", instance_id, "--json")
    if result.exit_code != 0 or json.loads(result.stdout) != expected:
        return _escaped(result) or f"history exit {result.exit_code}: {result.output[:300]}"
    return None


def _torn_doctor(project: Project) -> str | None:
    result = wf_inside(project, "doctor", "--json")
    if result.exit_code != 0:
        return _escaped(result) or f"doctor exit {result.exit_code}: {result.output[:300]}"
    findings = json.loads(result.stdout)["findings"]
    if not any(f["kind"] == "torn-tail" for f in findings):
        return "doctor did not note the torn tail"
    return None
