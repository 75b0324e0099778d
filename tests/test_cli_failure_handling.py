"""The real ``wf`` (a subprocess) on rollbacks, deadlines and children (SPEC 6.3)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import wf_executable

REPO = Path(__file__).resolve().parent.parent
SAGA = """
from wfcli import NonRetryableError, WorkflowEntrypoint


class Saga(WorkflowEntrypoint):
    def run(self, event, step):
        undo = lambda name: (lambda: open(f"undo-{name}", "a").write("x"))
        step.do("reserve", lambda: "R-1", rollback=undo("reserve"))
        step.wait_for_event("go", type="go", timeout="1 hour")
        step.do("charge", lambda: "C-1", rollback=undo("charge"))
        if event.payload.get("fail"):
            step.do("ship", lambda: (_ for _ in ()).throw(NonRetryableError("no truck")))
        return "shipped"


class Spawner(WorkflowEntrypoint):
    def run(self, event, step):
        step.do("spawn", lambda: self.env.SAGA.create(params={}, id="kid").id)
        return step.wait_for_instance("join", "kid", timeout="1 hour")
"""


def named(error: Any) -> dict[str, Any]:
    """An error object without its traceback (the frames depend on the file's lines)."""
    return {key: error[key] for key in ("name", "message")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(SAGA, encoding="utf-8")
    (tmp_path / "workflows.toml").write_text(
        'name = "saga-tests"\nmain = "flows.py"\n\n[store]\ndir = "store"\nfsync = false\n\n'
        '[[workflows]]\nname = "saga"\nbinding = "SAGA"\nclass_name = "Saga"\n'
        'timeout = "1 hour"\n\n'
        '[[workflows]]\nname = "spawner"\nbinding = "SPAWNER"\nclass_name = "Spawner"\n',
        encoding="utf-8",
    )
    return tmp_path


def wf(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    return subprocess.run(
        [wf_executable(), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def status_json(project: Path, instance_id: str) -> Any:
    done = wf(project, "status", instance_id, "--json")
    assert done.returncode in (0, 1, 3, 4), done.stderr
    return json.loads(done.stdout)


def test_a_failing_saga_rolls_back_and_shows_it(project: Path) -> None:
    assert wf(project, "run", "saga", "--id", "s", "--params", '{"fail": true}').returncode == 3
    done = wf(project, "send-event", "s", "--type", "go")
    assert done.returncode == 1, done.stdout + done.stderr

    document = status_json(project, "s")
    assert document["status"] == "errored"
    assert named(document["error"]) == {"name": "NonRetryableError", "message": "no truck"}
    assert document["rollback"]["status"] == "complete"
    assert [s["name"] for s in document["rollback"]["steps"]] == ["charge", "reserve"]
    assert (project / "undo-charge").read_text() == (project / "undo-reserve").read_text() == "x"
    shown = wf(project, "status", "s").stdout
    assert "rollback charge" in shown
    assert "2 of 2 rolled back" in shown
    history = wf(project, "history", "s").stdout
    assert "rollback_started" in history
    assert "rollback_finished" in history
    assert wf(project, "replay", "s").returncode == 0


@pytest.mark.parametrize("rollback", [False, True])
def test_terminate_with_and_without_rollback(project: Path, rollback: bool) -> None:
    assert wf(project, "run", "saga", "--id", "s").returncode == 3

    done = wf(project, "terminate", "s", *(["--rollback"] if rollback else []))

    assert done.returncode == 0, done.stderr
    document = status_json(project, "s")
    assert document["status"] == "terminated"
    assert (project / "undo-reserve").exists() is rollback
    assert ("rollback" in document) is rollback


def test_run_timeout_sets_a_deadline_that_wakes_the_instance(project: Path) -> None:
    done = wf(project, "run", "saga", "--id", "s", "--timeout", "1 second", "--max-wait", "0")
    assert done.returncode == 3, done.stderr
    document = status_json(project, "s")
    assert document["waiting"]["until"] == document["deadline"]

    deadline = datetime.fromisoformat(document["deadline"])
    time.sleep(max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    done = wf(project, "resume", "--due")
    assert done.returncode == 1, done.stdout + done.stderr
    document = status_json(project, "s")
    assert document["error"]["name"] == "WorkflowTimeoutError"
    assert (project / "undo-reserve").exists()


def test_a_bad_timeout_is_a_usage_error(project: Path) -> None:
    done = wf(project, "run", "saga", "--timeout", "soon")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_a_foreground_run_runs_the_child_and_status_shows_parent_and_children(
    project: Path,
) -> None:
    done = wf(project, "run", "spawner", "--id", "mom", "--max-wait", "0")
    assert done.returncode == 3, done.stdout + done.stderr  # the child waits for its event
    assert "waiting for instance 'kid'" in done.stdout
    assert status_json(project, "kid")["parent"] == "mom"
    assert status_json(project, "mom")["children"] == ["kid"]

    assert wf(project, "send-event", "kid", "--type", "go").returncode == 0
    assert wf(project, "resume", "--due").returncode == 0
    assert status_json(project, "mom")["output"] == "shipped"


@pytest.mark.parametrize("timeout", ['"soon"', '"0 seconds"', "true"])
def test_a_bad_workflow_timeout_is_a_config_error_naming_the_key(
    project: Path, timeout: str
) -> None:
    config = project / "workflows.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('timeout = "1 hour"', f"timeout = {timeout}"),
        encoding="utf-8",
    )

    done = wf(project, "workflows")

    assert done.returncode == 2
    assert "timeout" in done.stderr
    assert "workflows.toml" in done.stderr
    assert "Traceback" not in done.stderr
