"""``wf replay`` as a real process: a deploy check of changed code against journals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import wf_executable

VERSION_1 = """
from wfcli import WorkflowEntrypoint


class Shipping(WorkflowEntrypoint):
    def run(self, event, step):
        order = step.do("validate", lambda: {"order": event.payload["order"]})
        step.sleep("cool-off", "1 hour")
        return step.do("ship", lambda: {"shipped": order["order"]})
"""
# A step inserted before the sleep that instances in flight already passed.
VERSION_2 = VERSION_1.replace(
    '        step.sleep("cool-off"',
    '        step.do("reserve", lambda: "stock")\n        step.sleep("cool-off"',
)
CONFIG = """
name = "replay-check"
main = "shipping.py"

[[workflows]]
name = "shipping"
binding = "SHIPPING"
class_name = "Shipping"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "workflows.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "shipping.py").write_text(VERSION_1, encoding="utf-8")
    return tmp_path


def wf(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [wf_executable(), *args, "--store", str(project / "store")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def journal_bytes(project: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((project / "store" / "journals").iterdir())}


def test_unchanged_code_replays_cleanly_and_a_changed_one_is_caught(project: Path) -> None:
    for order in ("o1", "o2"):
        started = wf(
            project, "run", "shipping", "--id", order, "--params", json.dumps({"order": order})
        )
        assert started.returncode == 3, started.stderr  # waiting in its sleep
    before = journal_bytes(project)

    clean = wf(project, "replay", "--all")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert (
        clean.stdout.splitlines()[-1]
        == "replayed 2 instances: 2 compatible, 0 divergent, 0 warnings"
    )

    (project / "shipping.py").write_text(VERSION_2, encoding="utf-8")
    changed = wf(project, "replay", "--all", "--status", "waiting", "--json")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    document = json.loads(changed.stdout)
    assert document["summary"] == {"instances": 2, "compatible": 0, "divergent": 2, "warnings": 0}
    finding = document["instances"][0]["findings"][0]
    assert (finding["kind"], finding["step"], finding["position"]) == ("new_step", "reserve", 2)

    one = wf(project, "replay", "o1")
    assert one.returncode == 1
    assert "DIVERGENT" in one.stdout
    assert "reserve" in one.stdout
    assert journal_bytes(project) == before  # replay writes nothing


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="neither-ids-nor-all"),
        pytest.param(["o1", "--all"], id="ids-and-all"),
        pytest.param(["o1", "--status", "waiting"], id="filter-without-all"),
        pytest.param(["--all", "--status", "sleeping"], id="unknown-status"),
        pytest.param(["no/such"], id="invalid-id"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(project: Path, args: list[str]) -> None:
    result = wf(project, "replay", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
