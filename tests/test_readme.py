"""Every command the README shows works as shown.

The console blocks are run in order, as a new user would type them, in a
temporary folder holding a copy of the samples and their ``workflows.toml``,
with the store in a temporary folder. Install commands are skipped (the suite
runs inside the installed project); ``# exits N`` after a command states its
expected exit code, otherwise 0. The README's test example is run with pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import wf_executable

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
_EXPECTED_EXIT = re.compile(r"\s+#\s*exits\s+(\d+)\b.*$")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _console_commands() -> list[tuple[str, int]]:
    commands = []
    for block in _blocks("console"):
        for line in block.splitlines():
            if not line.startswith("$ "):
                continue
            command = line[2:].strip()
            expected = 0
            match = _EXPECTED_EXIT.search(command)
            if match:
                expected = int(match.group(1))
                command = command[: match.start()]
            if "pip install" in command:
                # Set-up lines: keep what follows the installation, if anything.
                rest = command.split("pip install", 1)[1].partition("&&")[2].strip()
                if not rest or rest == "pytest":
                    continue
                command = rest
            commands.append((command, expected))
    return commands


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(REPO / "workflows.toml", folder / "workflows.toml")
    shutil.copytree(
        REPO / "sample_workflows",
        folder / "sample_workflows",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return folder


def test_the_readme_shows_the_two_setup_commands() -> None:
    commands = [
        line[2:]
        for block in _blocks("console")
        for line in block.splitlines()
        if line.startswith("$ ")
    ]
    assert any("pip install -e . && wf run order-flow --params" in c for c in commands)
    assert any(c.startswith("pip install -e '.[dev]' && pytest") for c in commands)


def test_every_readme_command_works_as_shown(project: Path, tmp_path: Path) -> None:
    commands = _console_commands()
    assert len(commands) >= 10, commands
    env = {
        **os.environ,
        "WF_STORE": str(tmp_path / "store"),
        "PATH": f"{Path(wf_executable()).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
    }
    env.pop("WF_CONFIG", None)
    for command, expected in commands:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # A shell reports death by signal N as 128 + N; subprocess as -N.
        code = 128 - result.returncode if result.returncode < 0 else result.returncode
        assert code == expected, (
            f"{command!r} exited {code}, README says {expected}\n{result.stdout}\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr, result.stderr


def test_the_readme_test_example_passes(project: Path) -> None:
    (example,) = [block for block in _blocks("python") if "def test_" in block]
    (project / "test_readme_example.py").write_text(example, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_readme_example.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
