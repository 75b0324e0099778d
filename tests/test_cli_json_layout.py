"""``--json`` layout: indented on a terminal, one line through a pipe, the same document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import make_project
from tests.test_cli_subprocess import Processes


@pytest.fixture
def wf(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(make_project(tmp_path / "project"))
    yield processes
    processes.kill_all()


def test_json_is_indented_on_a_terminal_and_one_line_through_a_pipe(wf: Processes) -> None:
    ran = wf.run("run", "pipeline", "--id", "j1", "--params", wf.project.params(n=1), "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("\n") == 1
    assert json.loads(ran.stdout)["output"] == {"a": 2, "b": {"double": 4}, "c": [2, 4, "done"]}

    piped = wf.run("status", "j1", "--json")
    code, shown = wf.run_in_terminal("status", "j1", "--json")
    assert code == 0
    assert piped.stdout.count("\n") == 1
    lines = shown.splitlines()
    assert lines[0] == "{"
    assert lines[1].startswith('  "id": "j1"')
    assert json.loads(shown) == json.loads(piped.stdout)
