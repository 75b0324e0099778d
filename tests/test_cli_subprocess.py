"""The installed ``wf`` console script, in real processes.

Crashes are real (SIGKILL mid-step), contention is real (two processes resume
one instance), and shutdown is real (SIGINT/SIGTERM to a worker). Steps block
at a named point (``WFTEST_BLOCK_AT``) until the test creates a release file,
so every test acts at a known moment without sleeping.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli_support import Project, make_project, wf_executable
from tests.workflows_for_tests import (
    BLOCK_ENV,
    PATIENCE_SECONDS,
    Effects,
    Pipeline,
    assert_journal_sane,
    journal_path,
    wait_until,
)
from wfcli import WorkflowClient
from wfcli.project import load_project, open_client
from wfcli.store import open_store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")

WF = wf_executable()


class Processes:
    """``wf`` processes of one test; any still running at teardown are killed."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, block_at: str | None = None) -> subprocess.Popen[str]:
        """Start ``wf ARGS`` in the project's folder (the config is found by walking up)."""
        env = {k: v for k, v in os.environ.items() if k not in ("WF_CONFIG", "WF_STORE")}
        env.pop(BLOCK_ENV, None)
        if block_at is not None:
            env[BLOCK_ENV] = block_at
        process = subprocess.Popen(
            [WF, *args],
            cwd=self.project.config.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def run(self, *args: str, block_at: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``wf ARGS`` to its end."""
        process = self.start(*args, block_at=block_at)
        stdout, stderr = process.communicate(timeout=PATIENCE_SECONDS)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def run_in_terminal(self, *args: str, **env: str) -> tuple[int, str]:
        """Run ``wf ARGS`` with stdout and stderr on a pseudo-terminal; return code and output."""
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [WF, *args],
            cwd=self.project.config.parent,
            env={
                **{k: v for k, v in os.environ.items() if k != "NO_COLOR"},
                "COLUMNS": "120",
                "TERM": "xterm-256color",
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal closed when the process exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        return process.wait(timeout=PATIENCE_SECONDS), b"".join(chunks).decode()

    def status(self, instance_id: str) -> dict[str, Any]:
        """The instance's status document, read in this process (faster than ``wf status``)."""
        client = open_client(load_project(self.project.config), self.project.store, load=False)
        return client.status(instance_id).to_json()

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


@pytest.fixture
def effects(project: Project) -> Effects:
    return Effects(project.effects)


@pytest.fixture
def wf(project: Project) -> Iterator[Processes]:
    processes = Processes(project)
    try:
        yield processes
    finally:
        processes.kill_all()


def create(project: Project, workflow: str, instance_id: str, **params: object) -> None:
    """A queued instance, created through the Python client."""
    client = open_client(load_project(project.config), project.store)
    client.create(workflow, params=json.loads(project.params(**params)), instance_id=instance_id)


def read_line(stream: IO[str] | None) -> str:
    """The next line of a child's output; fail rather than hang if none comes."""
    assert stream is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(PATIENCE_SECONDS)
    assert lines, "gave up waiting for a line of output"
    return lines[0]


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    return process.returncode, stdout, stderr


def test_a_run_killed_mid_step_resumes_without_rerunning_completed_steps(
    wf: Processes, project: Project, effects: Effects
) -> None:
    run = wf.start("run", "pipeline", "--id", "k1", "--params", project.params(n=1), block_at="b")
    wait_until(effects.blocked_marker("b").exists, "step b to block", run)
    run.send_signal(signal.SIGKILL)
    assert finish(run)[0] == -signal.SIGKILL

    crashed = wf.status("k1")
    assert (crashed["status"], crashed["interrupted"]) == ("running", True)
    effects.release_file("b").touch()
    resumed = wf.run("resume", "k1")
    assert resumed.returncode == 0, resumed.stderr
    assert "'a': replayed from the journal" in resumed.stdout
    assert wf.status("k1")["output"] == {"a": 2, "b": {"double": 4}, "c": [2, 4, "done"]}
    # a completed before the crash and never ran again; b was cut short and ran again
    assert [effects.count(step) for step in "abc"] == [1, 2, 1]
    assert_journal_sane(journal_path(project.store, "k1"))


def test_two_resumes_of_one_instance_at_once_one_is_busy(
    wf: Processes, project: Project, effects: Effects
) -> None:
    create(project, "pipeline", "twice", n=1)
    first = wf.start("resume", "twice", block_at="b")
    second = wf.start("resume", "twice", block_at="b")
    wait_until(
        lambda: first.poll() is not None or second.poll() is not None, "one resume to give up"
    )
    loser, winner = (first, second) if first.poll() is not None else (second, first)
    code, _, stderr = finish(loser)
    assert code == 5, stderr
    assert stderr.strip() == (
        f"error: instance 'twice' is being executed by process {winner.pid} on {os.uname()[1]}"
    )
    effects.release_file("b").touch()
    assert finish(winner)[0] == 0
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]
    assert_journal_sane(journal_path(project.store, "twice"))


def test_send_event_resumes_a_waiting_instance(
    wf: Processes, project: Project, effects: Effects
) -> None:
    waiting = wf.run("run", "approval", "--id", "a1", "--params", project.params())
    assert waiting.returncode == 3, waiting.stderr
    sent = wf.run("send-event", "a1", "--type", "approve", "--payload", '{"by": "ops"}')
    assert sent.returncode == 0, sent.stderr
    assert "a1: complete" in sent.stdout
    assert wf.status("a1")["output"] == {"approved_by": "ops"}
    assert (effects.count("prepare"), effects.count("record")) == (1, 1)


def test_send_event_to_a_process_waiting_inline_lets_that_process_take_it(
    wf: Processes, project: Project, effects: Effects
) -> None:
    create(project, "approval", "a2")
    # the waiter holds the instance until the step after the event is released
    waiter = wf.start("resume", "a2", "--max-wait", "2 hours", block_at="record")
    wait_until(lambda: wf.status("a2")["holder"] is not None, "the waiter to hold a2", waiter)
    sent = wf.run("send-event", "a2", "--type", "approve", "--payload", '{"by": "x"}')
    assert sent.returncode == 0, sent.stderr
    assert f"process {waiter.pid}, which executes the instance, will take it" in sent.stdout
    wait_until(effects.blocked_marker("record").exists, "the waiter to take the event", waiter)
    effects.release_file("record").touch()
    code, stdout, stderr = finish(waiter)
    assert code == 0, stderr
    assert "a2: complete" in stdout


def test_worker_once_runs_what_is_due_and_exits(wf: Processes, project: Project) -> None:
    for index in range(3):
        create(project, "pipeline", f"q{index}", n=index)
    create(project, "sleeper", "slow", seconds=3600)
    result = wf.run("worker", "--once", "--concurrency", "2", "--poll", "0.05")
    assert result.returncode == 0, result.stderr
    listed = json.loads(wf.run("list", "--json").stdout)["instances"]
    assert {i["id"]: i["status"] for i in listed} == {
        "q0": "complete",
        "q1": "complete",
        "q2": "complete",
        "slow": "waiting",
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_worker_finishes_its_step_exits_0_and_leaves_valid_journals(
    wf: Processes, project: Project, effects: Effects, signum: signal.Signals
) -> None:
    create(project, "pipeline", "w1", n=1)
    worker = wf.start("worker", "--poll", "0.05", block_at="b")
    wait_until(effects.blocked_marker("b").exists, "the worker to block in step b", worker)
    worker.send_signal(signum)
    notes = [read_line(worker.stderr), read_line(worker.stderr)]
    assert notes[1] == (
        "worker: stopping once the steps in flight end (w1); a second Ctrl-C exits at once\n"
    ), notes
    effects.release_file("b").touch()
    code, stdout, stderr = finish(worker)
    assert code == 0, stderr
    assert stderr == "worker: stopped: 1 run (1 queued)\n"
    assert stdout.splitlines()[-1].startswith("w1: queued (its worker, process ")
    # the step in flight finished and was journaled; the next one never started
    assert_journal_sane(journal_path(project.store, "w1"))
    stopped = wf.status("w1")
    assert [s["name"] for s in stopped["steps"] if s["status"] == "completed"] == ["a", "b"]
    # the stop is journaled: queued for the next worker, not shown as a crash
    assert (stopped["status"], stopped["interrupted"]) == ("queued", False)
    assert stopped["stopped"]["pid"] == worker.pid
    assert wf.run("resume", "w1").returncode == 0
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


def test_a_second_ctrl_c_stops_the_worker_at_once_and_the_step_in_flight_runs_again(
    wf: Processes, project: Project, effects: Effects
) -> None:
    create(project, "pipeline", "w2", n=1)
    worker = wf.start("worker", "--poll", "0.05", block_at="b")
    wait_until(effects.blocked_marker("b").exists, "the worker to block in step b", worker)
    worker.send_signal(signal.SIGINT)
    assert "a second Ctrl-C exits at once" in (read_line(worker.stderr) + read_line(worker.stderr))
    worker.send_signal(signal.SIGINT)  # step b is still blocked: only an exit at once ends it
    code, _, stderr = finish(worker)
    assert code == 130, stderr
    assert stderr.splitlines()[-1] == "worker: stopped at once (instances in flight resume later)"
    assert "Traceback" not in stderr
    assert_journal_sane(journal_path(project.store, "w2"))
    cut = wf.status("w2")
    assert (cut["status"], cut["interrupted"]) == ("running", True)
    effects.release_file("b").touch()
    assert wf.run("worker", "--once", "--poll", "0.05").returncode == 0
    done = wf.status("w2")
    assert done["status"] == "complete"
    # a is served from the journal; b's attempt was cut short, so it runs again
    assert [effects.count(step) for step in "abc"] == [1, 2, 1]


def test_a_worker_with_one_slot_runs_other_instances_while_one_sleeps(
    wf: Processes, project: Project, effects: Effects
) -> None:
    create(project, "sleeper", "slow", seconds=25)
    worker = wf.start("worker", "--concurrency", "1", "--poll", "0.05")
    wait_until(lambda: wf.status("slow")["status"] == "waiting", "slow to suspend", worker)
    create(project, "pipeline", "quick", n=1)
    wait_until(lambda: wf.status("quick")["status"] == "complete", "quick to run", worker)
    assert wf.status("slow")["status"] == "waiting"  # its 25 s sleep holds no slot
    worker.send_signal(signal.SIGTERM)
    code, stdout, _ = finish(worker)
    assert code == 0
    assert stdout.index("slow: waiting") < stdout.index("quick: complete")


def test_worker_json_lines_say_what_it_did(wf: Processes, project: Project) -> None:
    create(project, "pipeline", "j1", n=1)
    result = wf.run("worker", "--once", "--json", "--poll", "0.05")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["event"], line.get("id")) for line in lines] == [
        ("worker", None),
        ("started", "j1"),
        ("finished", "j1"),
        ("stopped", None),
    ]
    assert lines[2]["status"] == "complete"
    assert lines[-1]["runs"] == {"complete": 1}


def test_a_worker_reports_an_instance_it_cannot_run_once_and_runs_the_rest(
    wf: Processes, project: Project
) -> None:
    unbound = WorkflowClient(open_store(project.store), {"ghost": Pipeline})
    unbound.create("ghost", params=json.loads(project.params(n=1)), instance_id="g1")
    worker = wf.start("worker", "--poll", "0.01")
    create(project, "pipeline", "q1", n=1)
    wait_until(lambda: wf.status("q1")["status"] == "complete", "the worker to run q1", worker)
    create(project, "pipeline", "q2", n=1)  # a scan after the failure, and more
    wait_until(lambda: wf.status("q2")["status"] == "complete", "the worker to run q2", worker)
    worker.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(worker)
    assert code == 0, stderr
    assert stderr.splitlines() == [
        f"worker: store {project.store}, up to 1 at a time",
        "error: g1: unknown workflow 'ghost' (known: approval, failing, flaky, pipeline, sleeper)",
        "worker: stopped: 2 runs (2 complete); 1 failed",
    ]
    assert stdout.splitlines()[-1] == "q2: complete"
    assert wf.status("g1")["status"] == "queued"


def test_ctrl_c_during_run_says_how_to_resume_and_exits_130(
    wf: Processes, project: Project, effects: Effects
) -> None:
    run = wf.start("run", "pipeline", "--id", "c1", "--params", project.params(n=1), block_at="b")
    wait_until(effects.blocked_marker("b").exists, "step b to block", run)
    run.send_signal(signal.SIGINT)
    code, _, stderr = finish(run)
    assert code == 130, stderr
    assert "`wf resume c1`" in stderr
    assert "Traceback" not in stderr
    assert_journal_sane(journal_path(project.store, "c1"))
    effects.release_file("b").touch()
    assert wf.run("resume", "c1").returncode == 0
    assert effects.count("a") == 1


COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-9]m")  # a foreground colour escape


def test_on_a_terminal_run_draws_a_live_view_and_status_draws_tables(
    wf: Processes, project: Project
) -> None:
    code, output = wf.run_in_terminal("run", "flaky", "--id", "t1")
    assert code == 0, output
    assert COLOUR.search(output)
    assert "attempt 2" in output
    assert "t1: complete" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    code, output = wf.run_in_terminal("status", "t1")
    assert code == 0, output
    assert "─" in output  # a rich table, box drawing and all
    code, output = wf.run_in_terminal("list", NO_COLOR="1")
    assert code == 0, output
    assert "─" in output
    assert not COLOUR.search(output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["list", "--limit", "0"],
            "error: Invalid value for '--limit': 0 is not in the range x>=1.",
        ),
        (["status"], "error: Missing argument 'ID'. (see 'wf status --help')"),
        (["bogus"], "error: No such command 'bogus'. (see 'wf --help')"),
        (["run", "pipeline", "--max-wait"], "error: Option '--max-wait' requires an argument."),
        (["history", "x", "--jsn"], "error: No such option"),  # wording varies by click
    ],
    ids=["out-of-range", "missing-argument", "no-such-command", "missing-value", "no-such-option"],
)
def test_a_bad_command_line_is_one_error_line_and_exit_2(
    wf: Processes, project: Project, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in project.store.rglob("*")) if project.store.exists() else []

    done = wf.run(*args)

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message), done.stderr
    after = sorted(p.name for p in project.store.rglob("*")) if project.store.exists() else []
    assert after == before


def test_wf_alone_shows_the_help_and_help_exits_0(wf: Processes) -> None:
    alone = wf.run()
    asked = wf.run("--help")

    assert alone.returncode == 2
    assert "Commands:" in alone.stdout + alone.stderr
    assert asked.returncode == 0
    assert "Commands:" in asked.stdout
    assert asked.stderr == ""


# --- wf run --if-exists attach: a CI job run again ---------------------------------------------


def test_a_start_run_again_attaches_to_the_run_in_flight_and_follows_it(
    wf: Processes, project: Project, effects: Effects
) -> None:
    start = ("run", "pipeline", "--id", "ci-1", "--params", project.params(n=1))
    first = wf.start(*start, block_at="b")
    wait_until(effects.blocked_marker("b").exists, "step b to block", first)
    again = wf.start(*start, "--if-exists", "attach")
    assert read_line(again.stderr) == (
        f"ci-1: exists (running (process {first.pid} on {os.uname()[1]})); attaching\n"
    )
    effects.release_file("b").touch()
    code, stdout, stderr = finish(again)
    assert code == 0, stderr
    assert "status    complete" in stdout
    assert finish(first)[0] == 0
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]


def test_a_start_run_again_after_a_crash_attaches_and_finishes_the_instance(
    wf: Processes, project: Project, effects: Effects
) -> None:
    start = ("run", "pipeline", "--id", "ci-2", "--params", project.params(n=1))
    crashed = wf.start(*start, block_at="b")
    wait_until(effects.blocked_marker("b").exists, "step b to block", crashed)
    crashed.send_signal(signal.SIGKILL)
    finish(crashed)
    effects.release_file("b").touch()

    refused = wf.run(*start)
    assert (refused.returncode, refused.stderr) == (
        2,
        "error: an instance with ID 'ci-2' already exists\n",
    )
    attached = wf.run(*start, "--if-exists", "attach")
    assert attached.returncode == 0, attached.stderr
    assert "'a': replayed from the journal" in attached.stdout
    assert "ci-2: exists (running (interrupted: no process holds it)); attaching" in attached.stderr
    assert [effects.count(step) for step in "abc"] == [1, 2, 1]
    assert_journal_sane(journal_path(project.store, "ci-2"))


def test_piped_progress_lines_arrive_while_a_long_step_runs(
    wf: Processes, project: Project, effects: Effects
) -> None:
    run = wf.start("run", "pipeline", "--id", "l1", "--params", project.params(n=1), block_at="b")
    # Step b blocks until released: the lines so far reach the pipe all the same.
    assert [read_line(run.stdout) for _ in range(3)] == [
        "'a': started (attempt 1)\n",
        "'a': done\n",
        "'b': started (attempt 1)\n",
    ]
    effects.release_file("b").touch()
    code, rest, stderr = finish(run)
    assert code == 0, stderr
    assert rest.splitlines()[:3] == ["'b': done", "'c': started (attempt 1)", "'c': done"]
    assert rest.splitlines()[3].startswith("l1: complete after ")


def test_a_fork_killed_mid_step_resumes_and_its_source_stays_as_it_was(
    wf: Processes, project: Project, effects: Effects
) -> None:
    assert wf.run("run", "pipeline", "--id", "src", "--params", project.params(n=1)).returncode == 0
    source = journal_path(project.store, "src").read_bytes()
    fork = wf.start("restart", "src", "--from-step", "b", "--as", "copy", block_at="b")
    wait_until(effects.blocked_marker("b").exists, "the fork's step b to block", fork)
    fork.send_signal(signal.SIGKILL)
    assert finish(fork)[0] == -signal.SIGKILL
    effects.release_file("b").touch()

    crashed = wf.status("copy")
    assert (crashed["status"], crashed["interrupted"]) == ("running", True)
    resumed = wf.run("resume", "copy")
    assert resumed.returncode == 0, resumed.stderr
    assert "'a': replayed from the journal" in resumed.stdout
    assert wf.status("copy")["forked_from"] == {"id": "src", "step": "b"}
    assert [effects.count(step) for step in "abc"] == [1, 3, 2]  # b: source, killed, resumed
    assert journal_path(project.store, "src").read_bytes() == source
    assert_journal_sane(journal_path(project.store, "copy"))
