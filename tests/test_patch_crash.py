"""``step.patched`` across a SIGKILL: the journaled answer survives the crash and is
the one the next process uses, for a new instance (True) and an old one (False)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import wf_executable
from tests.workflows_for_tests import PATIENCE_SECONDS, wait_until
from wfcli import FileStore
from wfcli.core.codec import PatchMarked

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")

_MODULE = """
import time
from pathlib import Path

from wfcli import WorkflowEntrypoint


def blocking(folder, name):
    def callback():
        marks = Path(folder) / name
        with marks.open("a") as file:
            file.write("x")
        while not (Path(folder) / "release").exists():
            time.sleep(0.02)
        return name
    return callback


class Flow(WorkflowEntrypoint):
    def run(self, event, step):
        folder = event.payload["dir"]
        step.do("a", lambda: 1)
        if PATCHED:
            if step.patched("p"):
                step.do("new", blocking(folder, "new"))
            else:
                step.do("b", lambda: 2)
        else:
            step.do("b", lambda: 2)
        step.wait_for_event("go", type="go", timeout="1 day")
        step.do("c", blocking(folder, "c"))
        return "done"
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.effects = root / "effects"
        self.effects.mkdir(parents=True)
        (root / "workflows.toml").write_text(
            'name = "crash"\nmain = "flow.py"\n\n[store]\ndir = "store"\n\n'
            '[[workflows]]\nname = "flow"\nbinding = "FLOW"\nclass_name = "Flow"\n',
            encoding="utf-8",
        )
        self.code(patched=True)

    def code(self, *, patched: bool) -> None:
        (self.root / "flow.py").write_text(f"PATCHED = {patched}\n{_MODULE}", encoding="utf-8")

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocess.Popen(
            [wf_executable(), *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> tuple[int, str]:
        process = self.start(*args)
        stdout, stderr = process.communicate(timeout=PATIENCE_SECONDS)
        return process.returncode, stdout + stderr

    def kill_when_blocked(self, process: subprocess.Popen[str], step: str) -> None:
        try:
            wait_until((self.effects / step).exists, f"step {step!r} to start", process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=PATIENCE_SECONDS)

    def patches(self, instance_id: str) -> list[tuple[str, bool]]:
        records = FileStore(self.root / "store").read(instance_id)
        return [(r.patch, r.applied) for r in records if isinstance(r, PatchMarked)]

    def params(self) -> str:
        return json.dumps({"dir": str(self.effects)})


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def test_a_new_instance_killed_on_the_new_branch_keeps_it(project: Project) -> None:
    victim = project.start("run", "flow", "--id", "k1", "--params", project.params())
    project.kill_when_blocked(victim, "new")
    assert project.patches("k1") == [("p", True)]

    (project.effects / "release").touch()
    assert project.run("resume", "k1")[0] == 3  # on to the event wait
    code, output = project.run("send-event", "k1", "--type", "go")

    assert code == 0, output
    assert project.patches("k1") == [("p", True)]
    assert (project.effects / "new").read_text() == "xx"  # the attempt cut short ran again


def test_an_old_instance_killed_past_the_patch_point_keeps_the_old_branch(
    project: Project,
) -> None:
    project.code(patched=False)
    assert project.run("run", "flow", "--id", "k2", "--params", project.params())[0] == 3
    project.code(patched=True)
    victim = project.start("send-event", "k2", "--type", "go")
    project.kill_when_blocked(victim, "c")
    assert project.patches("k2") == [("p", False)]

    (project.effects / "release").touch()
    code, output = project.run("resume", "k2")

    assert code == 0, output
    assert project.patches("k2") == [("p", False)]
    assert not (project.effects / "new").exists()
