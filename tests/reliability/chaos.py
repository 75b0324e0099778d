"""Crash anywhere: SIGKILL real ``wf`` processes at seeded random moments, then check.

A *lane* is a driver thread with its own throwaway project. It works in rounds;
each round creates a few instances of the workflows in
:mod:`tests.reliability.chaos_workflows` and runs *cycles* until the round's
kills are spent: start a ``wf`` process (``run``, ``resume ID``, ``worker
--once`` or ``send-event``), wait for a chosen moment (a callback starting or
returning, a result record being written, a sleep, a retry wait, a pause or an
event arriving, or just a random delay), and SIGKILL it. After every kill the
lane notes each journal's complete lines and checks that the store still reads.
Then it resumes every instance until it is complete and checks the invariants:

* every instance completes with the output of an uninterrupted (in-process) run;
* no step ran again after its result was journaled, and the only calls without
  a journaled outcome are the ones in flight in a killed process (one per
  process; three for the parallel workflow);
* no complete journal line seen after a kill is missing or changed at the end,
  and no record is duplicated (one result per step, one record per message);
* every journal parses strictly, records in an order one writer could make;
* no ``wf`` process that was not killed exits with a traceback or an
  unexpected code, and ``wf doctor`` finds the store healthy.

The moments are seeded (``random.Random(seed)`` per lane and round), so a run is
reproducible in its plan; where a kill lands within a window depends on timing.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cli_support import Project
from tests.reliability import chaos_workflows
from tests.reliability.support import PATIENCE_SECONDS, make_chaos_project, start_wf
from tests.workflows_for_tests import assert_journal_sane
from wfcli import FakeClock, FileStore, MemoryStore, Settings, WorkflowClient
from wfcli.client.views import InstanceStatus
from wfcli.core.codec import (
    AttemptFailed,
    Created,
    Errored,
    EventReceived,
    Finished,
    JsonValue,
    Paused,
    Record,
    Restarted,
    Resumed,
    RunStarted,
    StepCompleted,
    StepFailed,
    Terminated,
)
from wfcli.core.state import LOST_ATTEMPT

__all__ = [
    "KINDS",
    "ChaosRun",
    "Figures",
    "Instance",
    "Kind",
    "Lane",
    "instance_params",
    "reference_output",
]

MAX_RESULT_BYTES = 16 * 1024 * 1024
EVENT_PAYLOAD = {"by": "reviewer"}


@dataclass(frozen=True)
class Kind:
    """A workflow of the chaos module and how the lane attacks it."""

    name: str
    steps: tuple[str, ...]  # its do steps, in order
    phases: tuple[str, ...]  # kill phases that apply to it
    in_flight: int = 1  # calls that may be in flight in one process at a kill


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("chain", ("s1", "s2", "s3", "s4"), ("callback", "after-return", "anywhere")),
        Kind("bulky", ("blob", "digest"), ("mid-write", "after-return", "callback", "anywhere")),
        Kind("napper", ("before", "after"), ("sleep", "callback", "anywhere")),
        Kind("retrier", ("flaky", "settle"), ("retry", "callback", "anywhere")),
        Kind("approval", ("prepare", "record"), ("event", "callback", "anywhere")),
        Kind("pausable", ("p1", "p2", "p3", "p4", "p5"), ("pause", "callback", "anywhere")),
        Kind("fanout", ("f1", "f2", "f3", "sum"), ("callback", "after-return", "anywhere"), 3),
    )
}


def instance_params(kind: str, n: int, *, blob_size: int) -> dict[str, JsonValue]:
    """The params of a chaos instance, without ``dir`` and ``trace``."""
    params: dict[str, JsonValue] = {"n": n, "work": 0.03}
    if kind == "bulky":
        params["size"] = blob_size
    elif kind == "napper":
        params["nap"] = 0.6
    elif kind == "retrier":
        params["delay"] = 0.25
    elif kind == "approval":
        params["event_timeout"] = "1 hour"  # longer than the inline limit: it suspends
    return params


def reference_output(kind: str, params: dict[str, JsonValue], scratch: Path) -> JsonValue:
    """The output of an uninterrupted run, in this process (memory store, fake clock)."""
    scratch.mkdir(parents=True, exist_ok=True)
    workflow = getattr(chaos_workflows, chaos_workflows.CHAOS_WORKFLOWS[kind])
    client = WorkflowClient(
        MemoryStore(),
        {kind: workflow},
        clock=FakeClock(),
        settings=Settings(max_value_bytes=MAX_RESULT_BYTES),
    )
    full = {**params, "dir": str(scratch), "trace": str(scratch / "trace"), "work": 0}
    handle = client.create(kind, params=full)
    status = handle.execute()
    if kind == "approval":
        handle.send_event("approve", EVENT_PAYLOAD)
        status = handle.execute()
    assert status.status == "complete", status.to_json()
    return status.output


# --- figures ------------------------------------------------------------------------------


@dataclass
class Figures:
    """What a chaos run did and found; every count under "must be 0" must be 0."""

    kills: int = 0
    kills_by_phase: Counter[str] = field(default_factory=Counter)
    kills_by_command: Counter[str] = field(default_factory=Counter)
    kills_while_executing: int = 0
    torn_tails_after_kills: int = 0
    instances: int = 0
    instances_completed: int = 0
    processes: int = 0
    in_flight_reruns: int = 0
    # must be 0:
    reruns_beyond_in_flight: int = 0
    records_lost: int = 0
    records_duplicated: int = 0
    unreadable_journals: int = 0
    wrong_outputs: int = 0
    unexpected_exits: int = 0
    violations: list[str] = field(default_factory=list)

    def merge(self, other: Figures) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(value, Counter):
                mine.update(value)
            elif isinstance(value, list):
                mine.extend(value)
            else:
                setattr(self, name, mine + value)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, value in vars(self).items():
            document[name] = dict(sorted(value.items())) if isinstance(value, Counter) else value
        return document


# --- journals -------------------------------------------------------------------------------


def _line_digests(data: bytes) -> list[str]:
    """A digest per complete line of a journal's bytes (the torn tail left out)."""
    complete = data[: data.rfind(b"\n") + 1]
    return [hashlib.sha256(line).hexdigest() for line in complete.split(b"\n")[:-1]]


def _duplicates(records: list[Record]) -> list[str]:
    keys: Counter[tuple[str, ...]] = Counter()
    for record in records:
        if isinstance(record, Restarted):
            return []  # not used by the chaos workflows; a restart would legitimately repeat
        if isinstance(record, StepCompleted):
            keys["step_completed", record.step] += 1
        elif isinstance(record, StepFailed):
            keys["step_failed", record.step] += 1
        elif isinstance(record, AttemptFailed):
            keys["attempt_failed", record.step, str(record.attempt)] += 1
        elif isinstance(record, (EventReceived, Paused, Resumed, Terminated)):
            keys["message", record.message_id] += 1
        elif isinstance(record, (Finished, Errored)):
            keys[("ending",)] += 1
        elif isinstance(record, Created):
            keys[("created",)] += 1
    return [" ".join(key) for key, count in keys.items() for _ in range(count - 1)]


# --- one instance ---------------------------------------------------------------------------


@dataclass
class Instance:
    """A chaos instance and what the lane has seen of it."""

    id: str
    kind: Kind
    params: dict[str, JsonValue]
    kills_wanted: int
    folder: Path
    kills: int = 0
    snapshots: list[list[str]] = field(default_factory=list)
    seen: tuple[int, int] | None = None  # (size, mtime_ns) at the last check

    def number(self, key: str) -> float:
        value = self.params[key]
        assert isinstance(value, (int, float))
        return float(value)

    def calls(self) -> Counter[tuple[int, str]]:
        """Real callback calls: (pid, step) -> count."""
        found: Counter[tuple[int, str]] = Counter()
        for path in self.folder.glob("*.calls"):
            for line in path.read_text(encoding="utf-8").splitlines():
                found[int(line.split()[0]), path.stem] += 1
        return found


# Exit codes a command may end with when nobody kills it: 3 when it stops at a pause or a
# wait, 5 when a sender or another resumer holds the instance (SPEC §5).
_ALLOWED_EXITS = {
    "run": {0, 3},
    "resume": {0, 3, 5},
    "worker": {0},
    "send-event": {0, 3, 5},
    "pause": {0},
    "doctor": {0},
}


def command_of(process: subprocess.Popen[str]) -> list[str]:
    """The ``wf`` arguments a process was started with."""
    assert isinstance(process.args, list)
    return [str(arg) for arg in process.args[1:]]


def run_args(instance: Instance) -> list[str]:
    """``wf run`` arguments creating the instance and running it in the foreground."""
    params = json.dumps(instance.params)
    return ["run", instance.kind.name, "--id", instance.id, "--params", params]


def send_event_args(instance_id: str) -> list[str]:
    """``wf send-event`` arguments delivering the event an approval waits for."""
    payload = json.dumps(EVENT_PAYLOAD)
    return ["send-event", instance_id, "--type", "approve", "--payload", payload]


@dataclass
class Plan:
    """One cycle: what to start, when to kill, and whom."""

    phase: str
    args: list[str]
    trigger: tuple[str, str] | None = None  # (trace phase, step) announced by the process
    wait_run_started: bool = False  # trigger: the process journaled its run_started
    mid_write: bool = False  # after the trigger, kill as the journal grows
    delay: float = 0.0
    helper: list[str] | None = None  # started at the trigger
    kill_helper: bool = False


# --- a lane ------------------------------------------------------------------------------------


class Lane:
    """One driver thread: rounds of instances in a fresh project, killed and resumed."""

    def __init__(self, root: Path, seed: int, *, blob_size: int, scratch: Path) -> None:
        self.root = root
        self.seed = seed
        self.blob_size = blob_size
        self.scratch = scratch
        self.figures = Figures()
        self.references: dict[str, JsonValue] = {}
        self.project: Project | None = None
        self.instances: list[Instance] = []
        self.killed: set[int] = set()
        self.launched: set[int] = set()
        self.rng = random.Random(seed)
        self._trace_offset = 0
        self._trace: list[tuple[int, str, str, str]] = []

    # setting up ------------------------------------------------------------------------------

    def reference(self, kind: str, params: dict[str, JsonValue]) -> JsonValue:
        key = json.dumps({"kind": kind, **params}, sort_keys=True)
        if key not in self.references:
            self.references[key] = reference_output(kind, params, self.scratch / "reference")
        return self.references[key]

    def new_round(self, number: int, kinds: list[str], kills: list[int]) -> None:
        folder = self.root / f"round-{number}"
        self.project = make_chaos_project(folder, max_step_result_bytes=MAX_RESULT_BYTES)
        self.rng = random.Random(f"{self.seed}-{number}")
        self.killed.clear()
        self.launched.clear()
        self._trace_offset = 0
        self._trace = []
        self.instances = []
        for index, (kind, wanted) in enumerate(zip(kinds, kills, strict=True)):
            instance_folder = self.project.effects / f"i{index}"
            instance_folder.mkdir()
            params = instance_params(kind, self.rng.randrange(1, 1000), blob_size=self.blob_size)
            params.update(dir=str(instance_folder), trace=str(self.trace_path))
            self.instances.append(
                Instance(f"{kind}-{number}-{index}", KINDS[kind], params, wanted, instance_folder)
            )
        self.figures.instances += len(self.instances)

    @property
    def store(self) -> Path:
        assert self.project is not None
        return self.project.store

    @property
    def trace_path(self) -> Path:
        assert self.project is not None
        return self.project.effects / "trace"

    def client(self) -> WorkflowClient:
        return WorkflowClient(FileStore(self.store), {})

    def status(self, instance: Instance) -> InstanceStatus | None:
        if instance.id not in FileStore(self.store).instance_ids():
            return None
        return self.client().status(instance.id)

    # running a round -------------------------------------------------------------------------

    def run_round(self, number: int, kinds: list[str], kills: list[int]) -> None:
        self.new_round(number, kinds, kills)
        cycles = 0
        while True:
            targets = [
                i for i in self.instances if i.kills < i.kills_wanted and not self.finished(i)
            ]
            if not targets or cycles > 4 * sum(kills) + 10:
                break
            cycles += 1
            self.cycle(self.rng.choice(targets))
        for instance in self.instances:
            self.finish(instance)
        self.check_round()

    def finished(self, instance: Instance) -> bool:
        status = self.status(instance)
        return status is not None and status.finished

    def cycle(self, target: Instance) -> None:
        plan = self.plan(target)
        main = self.launch(plan.args)
        helper = None
        victim = None
        if self.wait_for_trigger(plan, main, target):
            if plan.helper is not None:
                helper = self.launch(plan.helper)
            time.sleep(plan.delay)
            victim = helper if plan.kill_helper and helper is not None else main
            if plan.mid_write:
                self.wait_for_growth(target, main)
            if self.kill(victim):
                target.kills += 1
                self.figures.kills_by_phase[plan.phase] += 1
                self.figures.kills_by_command[
                    (plan.helper if victim is helper else plan.args)[0]
                ] += 1
        for process in (main, helper):
            if process is not None and process is not victim:
                self.reap(process)
        self.after_kill()

    def plan(self, target: Instance) -> Plan:
        """Choose the command to start and the moment to kill it, given the instance's state."""
        rng = self.rng
        status = self.status(target)
        kind = target.kind
        ident = target.id
        if status is None:
            args = run_args(target)
        elif status.status in ("paused", "waitingForPause") or rng.random() < 0.7:
            args = ["resume", ident]
        else:
            args = ["worker", "--once", "--concurrency", "2", "--poll", "0.05"]
        steps = {} if status is None else status.state.steps
        open_steps = [s for s in kind.steps if s not in steps or steps[s].status != "completed"]
        phase = rng.choice(kind.phases)
        if kind.name == "approval" and status is not None:
            event_there = bool(status.state.events) or "event" in status.pending_messages
            if not event_there and "prepare" not in open_steps:
                # It waits (suspended) for its event: the sender is the one who executes it.
                send = send_event_args(ident)
                return Plan("event", send, delay=rng.uniform(0.3, 1.3))
        if phase == "anywhere" or not open_steps:
            return Plan("anywhere", args, delay=rng.uniform(0.0, 1.5))
        step = rng.choice(open_steps)
        work = target.number("work")
        if phase == "mid-write" and "blob" in open_steps:
            return Plan(phase, args, trigger=("return", "blob"), mid_write=True)
        nap, flaky = steps.get("nap"), steps.get("flaky")
        if phase == "sleep" and (nap is None or nap.status != "completed"):
            length = target.number("nap")
            if "before" in open_steps:
                return Plan(phase, args, trigger=("return", "before"), delay=rng.uniform(0, length))
            return Plan(phase, args, wait_run_started=True, delay=rng.uniform(0, length))
        if phase == "retry" and "flaky" in open_steps:
            delay = target.number("delay")
            if flaky is not None and flaky.status == "waiting":  # a retry wait is under way
                return Plan(phase, args, wait_run_started=True, delay=rng.uniform(0, delay))
            if flaky is None or flaky.attempts < 2 or flaky.status == "running":
                return Plan(phase, args, trigger=("raise", "flaky"), delay=rng.uniform(0, delay))
        if phase == "event" and "prepare" in open_steps:
            send = send_event_args(ident)
            return Plan(
                phase,
                args,
                trigger=("start", "prepare"),
                helper=send,
                delay=rng.uniform(0.2, 1.2),
                kill_helper=rng.random() < 0.25,
            )
        if phase == "pause" and len(open_steps) > 1:
            return Plan(
                phase,
                args,
                trigger=("start", open_steps[0]),
                helper=["pause", ident],
                delay=rng.uniform(0.2, 1.2),
                kill_helper=rng.random() < 0.25,
            )
        if phase == "after-return":
            return Plan(phase, args, trigger=("return", step), delay=rng.uniform(0.0, 0.01))
        return Plan("callback", args, trigger=("start", step), delay=rng.uniform(0.0, work))

    # processes -------------------------------------------------------------------------------

    def launch(self, args: list[str]) -> subprocess.Popen[str]:
        assert self.project is not None
        process = start_wf(self.project, args)
        if process.pid in self.launched:
            self.figures.violations.append(f"pid {process.pid} reused within one lane")
        self.launched.add(process.pid)
        self.figures.processes += 1
        return process

    def kill(self, process: subprocess.Popen[str]) -> bool:
        """SIGKILL ``process``; True if the signal is what ended it."""
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=PATIENCE_SECONDS)
        if process.returncode == -signal.SIGKILL:
            self.killed.add(process.pid)
            self.figures.kills += 1
            return True
        self.check_exit(process, stderr)  # it ended by itself first
        return False

    def reap(self, process: subprocess.Popen[str]) -> None:
        try:
            _, stderr = process.communicate(timeout=PATIENCE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            self.violation(f"wf {' '.join(command_of(process))} hung")
            return
        self.check_exit(process, stderr)

    def check_exit(self, process: subprocess.Popen[str], stderr: str) -> None:
        """A ``wf`` that ended by itself must end with a code its command may give."""
        args = command_of(process)
        code = process.returncode
        ok = code in _ALLOWED_EXITS[args[0]] and "Traceback" not in stderr
        if code == 2 and args[0] in ("resume", "send-event", "pause") and "cannot" in stderr:
            ok = True  # the instance finished (or was paused) meanwhile
        if not ok:
            self.figures.unexpected_exits += 1
            self.violation(f"wf {' '.join(args)} exited {code}: {stderr.strip()[-2000:]}")

    def violation(self, text: str) -> None:
        self.figures.violations.append(f"lane {self.seed} {self.root.name}: {text}")

    # triggers --------------------------------------------------------------------------------

    def read_trace(self) -> None:
        try:
            with open(self.trace_path, "rb") as trace:
                trace.seek(self._trace_offset)
                data = trace.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._trace_offset += end
        for line in data[:end].decode().splitlines():
            pid, instance, phase, step = line.split(" ", 3)
            self._trace.append((int(pid), instance, phase, step))

    def wait_for_trigger(
        self, plan: Plan, process: subprocess.Popen[str], target: Instance
    ) -> bool:
        """Block until the plan's moment has come; False if the process ended first."""
        if plan.trigger is None and not plan.wait_run_started:
            return process.poll() is None
        seen = len(self._trace)
        journal = self.store / "journals" / f"{target.id}.jsonl"
        needle = b'"type":"run_started","at":'
        pid_text = f'"pid":{process.pid},'.encode()
        deadline = time.monotonic() + PATIENCE_SECONDS
        while time.monotonic() < deadline:
            if plan.trigger is not None:
                self.read_trace()
                wanted = (process.pid, target.id, *plan.trigger)
                if wanted in self._trace[seen:]:
                    return True
            elif journal.exists():
                data = journal.read_bytes()
                if any(needle in line and pid_text in line for line in data.split(b"\n")[-40:]):
                    return True
            if process.poll() is not None:
                return False
            time.sleep(0.001)
        self.violation(f"no trigger {plan} within {PATIENCE_SECONDS}s")
        return True

    def wait_for_growth(self, target: Instance, process: subprocess.Popen[str]) -> None:
        """Spin until the target's journal grows (its result record is being written)."""
        journal = self.store / "journals" / f"{target.id}.jsonl"
        start = journal.stat().st_size
        deadline = time.monotonic() + 5
        while journal.stat().st_size == start and time.monotonic() < deadline:
            if process.poll() is not None:
                return

    # checks ----------------------------------------------------------------------------------

    def after_kill(self) -> None:
        """Note every changed journal's complete lines; each must still read."""
        store = FileStore(self.store)
        for instance in self.instances:
            path = store.journal_path(instance.id)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if instance.seen == (stat.st_size, stat.st_mtime_ns):
                continue
            instance.seen = (stat.st_size, stat.st_mtime_ns)
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                self.figures.torn_tails_after_kills += 1
            instance.snapshots.append(_line_digests(data))
            try:
                store.read(instance.id)
            except Exception as error:
                self.figures.unreadable_journals += 1
                self.violation(f"{instance.id} unreadable after a kill: {error}")

    def finish(self, instance: Instance) -> None:
        """Resume the instance (sending its event when it waits for one) until it completes."""
        for _ in range(8):
            status = self.status(instance)
            if status is not None and status.finished:
                return
            if status is None:
                args = run_args(instance)
            elif (
                instance.kind.name == "approval"
                and not status.state.events
                and "event" not in status.pending_messages
                and status.status != "paused"
            ):
                args = send_event_args(instance.id)
            else:
                args = ["resume", instance.id]
            self.reap(self.launch(args))
        self.violation(f"{instance.id} did not complete: {self.status(instance)}")

    def check_round(self) -> None:
        for instance in self.instances:
            self.check_instance(instance)
        executing = set()
        for instance in self.instances:
            for record in FileStore(self.store).read(instance.id):
                if isinstance(record, RunStarted) and record.pid in self.killed:
                    executing.add(record.pid)
        self.figures.kills_while_executing += len(executing)
        assert self.project is not None
        self.reap(self.launch(["doctor"]))

    def check_instance(self, instance: Instance) -> None:
        figures = self.figures
        path = FileStore(self.store).journal_path(instance.id)
        data = path.read_bytes()
        try:
            records = assert_journal_sane(path)
        except (AssertionError, ValueError) as error:
            figures.unreadable_journals += 1
            self.violation(f"{instance.id}: journal not sane: {error!r}")
            return
        final = _line_digests(data)
        for snapshot in instance.snapshots:
            lost = sum(
                1 for i, digest in enumerate(snapshot) if i >= len(final) or final[i] != digest
            )
            if lost:
                figures.records_lost += lost
                self.violation(
                    f"{instance.id}: {lost} journal lines seen after a kill are gone or changed"
                )
        duplicates = _duplicates(records)
        if duplicates:
            figures.records_duplicated += len(duplicates)
            self.violation(f"{instance.id}: duplicated records {duplicates}")
        status = self.client().status(instance.id)
        expected = self.reference(
            instance.kind.name,
            {k: v for k, v in instance.params.items() if k not in ("dir", "trace")},
        )
        if instance.kind.name == "retrier":
            expected = _counting_lost_attempts(expected, records)
        if status.status == "complete":
            figures.instances_completed += 1
        if status.status != "complete" or status.output != expected:
            figures.wrong_outputs += 1
            ended = f"ended {status.status} with {status.output!r}"
            self.violation(f"{instance.id}: {ended}, expected {expected!r}")
        self.check_side_effects(instance, records)

    def check_side_effects(self, instance: Instance, records: list[Record]) -> None:
        """Attribute every real call to its process.

        Only the calls in flight in a killed process may lack a journaled outcome.
        """
        outcomes: Counter[tuple[int, str]] = Counter()
        completed_before: dict[int, set[str]] = {}
        completed: set[str] = set()
        runner: int | None = None
        for record in records:
            if isinstance(record, RunStarted):
                runner = record.pid
                completed_before.setdefault(runner, set(completed))
            elif isinstance(record, AttemptFailed) and record.error.name == LOST_ATTEMPT:
                continue  # journaled by the next run for a call in flight in a dead process
            elif isinstance(record, (AttemptFailed, StepCompleted)) and (
                not isinstance(record, StepCompleted) or record.kind == "do"
            ):
                assert runner is not None
                outcomes[runner, record.step] += 1
            if isinstance(record, StepCompleted):
                completed.add(record.step)
        unrecorded: Counter[int] = Counter()
        for (pid, step), count in instance.calls().items():
            if pid not in completed_before:
                self.violation(
                    f"{instance.id}: pid {pid} called {step!r} but never journaled a run"
                )
                self.figures.reruns_beyond_in_flight += count
                continue
            if step in completed_before[pid]:
                self.violation(
                    f"{instance.id}: {step!r} ran again in pid {pid} after its result was journaled"
                )
                self.figures.reruns_beyond_in_flight += count
                continue
            extra = count - outcomes[pid, step]
            if extra < 0:
                self.violation(f"{instance.id}: {step!r} has more outcomes than calls in pid {pid}")
            unrecorded[pid] += max(extra, 0)
        for pid, count in unrecorded.items():
            allowance = instance.kind.in_flight if pid in self.killed else 0
            self.figures.in_flight_reruns += min(count, allowance)
            if count > allowance:
                self.figures.reruns_beyond_in_flight += count - allowance
                state = "killed" if pid in self.killed else "not killed"
                self.violation(f"{instance.id}: pid {pid} ({state}): {count} calls, no outcome")


def _counting_lost_attempts(expected: JsonValue, records: list[Record]) -> JsonValue:
    """A retrier's output when kills cost it attempts: its flaky step succeeds at the first
    attempt from 3 on that its process lived through, since an attempt lost with its
    process counts (docs/journal-format.md, ``attempt_failed``)."""
    lost = {
        record.attempt
        for record in records
        if isinstance(record, AttemptFailed)
        and record.step == "flaky"
        and record.error.name == LOST_ATTEMPT
    }
    attempt = 3
    while attempt in lost:
        attempt += 1
    assert isinstance(expected, dict)
    flaky = expected["flaky"]
    assert isinstance(flaky, dict)
    n = flaky["n"]
    assert isinstance(n, int)
    return {"flaky": {"n": n, "attempt": attempt}, "settle": attempt * 10 + n}


# --- a whole run ----------------------------------------------------------------------------------


@dataclass
class ChaosRun:
    """A seeded run of ``lanes`` lanes until ``kills`` kills are made in all."""

    root: Path
    seed: int
    kills: int
    lanes: int = 3
    instances_per_round: int = 3
    blob_size: int = 4 * 1024 * 1024
    keep_passing_rounds: bool = True
    progress: Callable[[str], None] | None = None

    def run(self) -> Figures:
        figures = Figures()
        share = [
            self.kills // self.lanes + (i < self.kills % self.lanes) for i in range(self.lanes)
        ]
        lanes = [
            Lane(
                self.root / f"lane-{i}",
                self.seed * 100 + i,
                blob_size=self.blob_size,
                scratch=self.root / f"scratch-{i}",
            )
            for i in range(self.lanes)
        ]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._drive, args=(lane, quota, errors), name=f"lane-{i}")
            for i, (lane, quota) in enumerate(zip(lanes, share, strict=True))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for lane in lanes:
            figures.merge(lane.figures)
        if errors:
            raise errors[0]
        return figures

    def _drive(self, lane: Lane, quota: int, errors: list[BaseException]) -> None:
        try:
            kinds = sorted(KINDS)
            rng = random.Random(lane.seed)
            number = 0
            while lane.figures.kills < quota:
                chosen = [
                    kinds[(number * self.instances_per_round + i + lane.seed) % len(kinds)]
                    for i in range(self.instances_per_round)
                ]
                remaining = quota - lane.figures.kills
                kills = [rng.randint(3, 9) for _ in chosen]
                while sum(kills) > remaining and max(kills) > 1:
                    kills[kills.index(max(kills))] -= 1
                before = len(lane.figures.violations)
                lane.run_round(number, chosen, kills)
                if self.progress is not None:
                    self.progress(
                        f"lane {lane.seed}: round {number} done, {lane.figures.kills}/{quota} kills"
                    )
                if not self.keep_passing_rounds and len(lane.figures.violations) == before:
                    shutil.rmtree(lane.root / f"round-{number}", ignore_errors=True)
                number += 1
        except BaseException as error:  # handed to the main thread
            errors.append(error)
