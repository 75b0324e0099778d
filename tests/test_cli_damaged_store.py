"""One damaged journal does not take the rest of the store down with it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli_support import Project, make_project, wf_executable


def wf(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [wf_executable(), *args, *project.options()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def damage_middle_line(journal: Path) -> None:
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    lines[1] = b'{"v":1,"type":"run_started",garbage\n'
    journal.write_bytes(b"".join(lines))


def test_list_and_worker_skip_a_damaged_journal_and_say_which(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    for instance_id in ("broken", "healthy"):
        created = wf(
            project,
            "run",
            "pipeline",
            "--detach",
            "--id",
            instance_id,
            "--params",
            project.params(n=1),
        )
        assert created.returncode == 0, created.stderr
    assert wf(project, "resume", "broken").returncode == 0
    journal = project.store / "journals" / "broken.jsonl"
    damage_middle_line(journal)
    damaged_bytes = journal.read_bytes()

    listed = wf(project, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [i["id"] for i in document["instances"]] == ["healthy"]
    (problem,) = document["damaged"]
    assert problem.startswith(f"{journal}:2: corrupt journal")
    assert f"{journal}:2" in listed.stderr

    worked = wf(project, "worker", "--once")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert f"skipped: {journal}:2" in worked.stderr
    assert json.loads(wf(project, "status", "healthy", "--json").stdout)["status"] == "complete"
    assert journal.read_bytes() == damaged_bytes  # reported, never rewritten

    shown = wf(project, "status", "broken")
    assert shown.returncode == 2
    assert shown.stderr.strip() == f"error: {journal}:2: corrupt journal: not JSON"
