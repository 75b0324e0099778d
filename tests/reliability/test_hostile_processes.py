"""Hostile callbacks and signals through the real ``wf``: a step raising a
``BaseException``, a step that SIGKILLs its own process, SIGINT and SIGTERM to a
foreground run, and a stdout pipe closed early."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.fault_workflows import calls
from tests.reliability.support import (
    PATIENCE_SECONDS,
    WF,
    make_fault_project,
    run_wf,
    start_wf,
    wf_env,
)
from tests.workflows_for_tests import wait_for_file


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_fault_project(tmp_path / "project", fsync=False)


def status(project: Project, instance_id: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(
        run_wf(project, "status", instance_id, "--json").stdout
    )
    return document


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "Custom"])
def test_a_step_raising_a_base_exception_fails_its_attempts_and_wf_run_exits_1(
    project: Project, raised: str
) -> None:
    run = run_wf(project, "run", "poisoned", "--id", "p", "--params",
                 project.params(**{"raise": raised}))  # fmt: skip

    assert run.code == 1, run.describe()
    assert "Traceback" not in run.stderr
    shown = status(project, "p")
    assert shown["status"] == "errored"
    [step] = shown["steps"]  # type: ignore[misc]
    assert step["attempts"] == 2
    assert raised.replace("Custom", "_Custom") in json.dumps(shown["error"])
    assert [attempt for _, attempt in calls(project.effects, "poison")] == [1, 2]


def test_a_poisoned_instance_never_stops_wf_worker_and_the_healthy_ones_complete(
    project: Project,
) -> None:
    for index, raised in enumerate(["SystemExit", "KeyboardInterrupt"]):
        created = run_wf(project, "run", "poisoned", "--detach", "--id", f"p{index}",
                         "--params", project.params(**{"raise": raised}))  # fmt: skip
        assert created.code == 0, created.describe()
    for index in range(3):
        created = run_wf(project, "run", "steps", "--detach", "--id", f"h{index}",
                         "--params", project.params(n=index))  # fmt: skip
        assert created.code == 0, created.describe()

    worked = run_wf(project, "worker", "--once")

    assert worked.code == 0, worked.describe()
    assert "Traceback" not in worked.stderr
    assert [status(project, f"p{i}")["status"] for i in range(2)] == ["errored"] * 2
    assert [status(project, f"h{i}")["output"] for i in range(3)] == [
        {"total": n + 3} for n in range(3)
    ]


def test_a_step_that_kills_its_process_fails_for_good_after_its_retry_limit(
    project: Project,
) -> None:
    codes = []
    first = run_wf(project, "run", "suicidal", "--id", "k", "--params", project.params())
    codes.append(first.code)
    for _ in range(5):
        if status(project, "k")["status"] == "errored":
            break
        codes.append(run_wf(project, "resume", "k").code)

    # Each attempt killed its process; the last resume finds the limit reached.
    assert codes == [-signal.SIGKILL] * 3 + [1]
    assert [attempt for _, attempt in calls(project.effects, "die")] == [1, 2, 3]
    shown = status(project, "k")
    assert shown["status"] == "errored"
    error = json.dumps(shown["error"])
    assert "AttemptLostError" in error
    assert "died during each of its 3 attempts" in error


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_or_sigterm_stops_wf_run_with_130_and_the_instance_resumes(
    project: Project, signum: int
) -> None:
    hold = project.effects / "hold"
    child = start_wf(project, ["run", "steps", "--id", "i", "--params",
                               project.params(n=1, hold=str(hold))])  # fmt: skip
    wait_for_file(Path(f"{hold}.reached"))
    child.send_signal(signum)
    hold.touch()  # the step in flight ends; no next one starts
    _, stderr = child.communicate(timeout=PATIENCE_SECONDS)

    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "continue with `wf resume i`" in stderr
    assert status(project, "i")["status"] == "running"
    resumed = run_wf(project, "resume", "i")
    assert resumed.code == 0, resumed.describe()
    assert status(project, "i")["output"] == {"total": 4}
    assert len(calls(project.effects, "s2")) == 1


def test_wf_run_into_a_pipe_closed_early_completes_and_exits_with_its_code(
    project: Project,
) -> None:
    child = start_wf(project, ["run", "steps", "--id", "h", "--params",
                               project.params(n=1, steps=6, work=0.05)])  # fmt: skip
    assert child.stdout is not None
    child.stdout.readline()
    child.stdout.close()  # as `| head -1` does
    assert child.stderr is not None
    stderr = child.stderr.read()
    child.wait(PATIENCE_SECONDS)

    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert status(project, "h")["output"] == {"total": 16}


def test_wf_run_piped_to_head_in_a_shell_exits_with_the_instance_code(project: Project) -> None:
    command = (
        f"'{WF}' run steps --id sh --params '{project.params(n=1, steps=6, work=0.05)}' "
        "| head -1 >/dev/null; echo ${PIPESTATUS[0]}"
    )
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=project.config.parent,
        env=wf_env(),
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
    )

    assert done.stdout.strip() == "0", done.stderr
    assert "Traceback" not in done.stderr
    assert status(project, "sh")["status"] == "complete"
