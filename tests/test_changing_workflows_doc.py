"""docs/changing-workflows.md: the worked example runs as shown, through the real ``wf``.

The document is walked in order: a ``toml`` or ``python`` block whose first line is
``# FILE`` writes that file, a ``console`` block runs its ``$`` commands, each with the
exit code its ``# exits N`` says (0 otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.cli_support import wf_executable
from tests.workflows_for_tests import PATIENCE_SECONDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "changing-workflows.md"
_BLOCK = re.compile(r"```(toml|python|console)\n(.*?)```", re.DOTALL)
_EXPECTED_EXIT = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")


def _wf(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # orders.py is rewritten within one second
    return subprocess.run(
        [wf_executable(), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
    )


def test_the_worked_example_runs_as_shown(tmp_path: Path) -> None:
    ran: list[tuple[str, str]] = []
    for language, body in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        first, _, rest = body.partition("\n")
        if language != "console":
            if first.startswith("# ") and first[2:].endswith((".py", ".toml")):
                (tmp_path / first[2:]).write_text(rest, encoding="utf-8")
            continue
        for line in body.splitlines():
            if not line.startswith("$ wf "):
                continue
            command = line[len("$ wf ") :]
            expected = 0
            match = _EXPECTED_EXIT.search(command)
            if match:
                expected = int(match.group(1))
                command = command[: match.start()]
            result = _wf(tmp_path, *shlex.split(command))
            assert result.returncode == expected, (command, result.stdout, result.stderr)
            ran.append((command, result.stdout + result.stderr))
    commands = [command for command, _ in ran]
    assert len(ran) == 12, commands
    outputs = [output for _, output in ran]
    naive_replay, diverged_status = outputs[2], outputs[4]
    assert "DIVERGENT" in naive_replay
    assert "step not in history at position 2" in naive_replay
    assert "paused (diverged: step 'reserve': step not in history at position 2" in diverged_status
    assert "version   1" in diverged_status
    assert "patch 'reserve-stock': 1 instance on the old branch: A-1" in outputs[5]
    listed = outputs[commands.index("list --old-branch reserve-stock")]
    assert "A-1" in listed
    assert "A-2" not in listed

    def status(instance_id: str) -> dict[str, object]:
        document: dict[str, object] = json.loads(
            _wf(tmp_path, "status", instance_id, "--json").stdout
        )
        return document

    first, second, third = status("A-1"), status("A-2"), status("A-3")
    assert (first["status"], first["patches"], first["version"]) == (
        "complete",
        {"reserve-stock": False},
        "1",
    )
    assert [s["name"] for s in first["steps"]] == ["validate", "approval", "ship"]  # type: ignore[attr-defined]
    assert (second["status"], second["patches"]) == ("complete", {"reserve-stock": True})
    assert third["status"] == "waiting"
    assert "patches" not in third  # deprecate_patch journals nothing
