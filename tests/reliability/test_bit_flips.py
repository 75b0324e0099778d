"""Every single-bit flip of a version 2 journal is reported, with file and line.

A real run (a retried step, a sleep, an event; the real executor and file store)
writes the journal; then each bit of each byte is flipped, one at a time, and put
back. Every flip must make ``FileStore.read`` and a lease's read raise
:class:`JournalCorruptError` naming the journal and the flipped byte's line (the
line a newline ends is that newline's line). No flip of a version 2 journal is
harmless: inside a line the checksum catches it, a flipped newline joins two lines
into one whose checksum fails, and the last newline flipped leaves a whole line and
a stray byte, which is damage, not a torn write (``docs/journal-format.md``, 5).
``wf status --json`` and ``wf doctor --json`` (in this process, through
``CliRunner``) are tried on a seeded sample of the flips.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli_support import make_project
from wfcli import (
    FakeClock,
    FileStore,
    JournalCorruptError,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.cli import app
from wfcli.core.codec import RunStarted
from wfcli.store.contract import Owner
from wfcli.testing import WorkflowHarness

SEED = 11
CLI_SAMPLE = 400  # flips tried through the CLI; the store paths try every one
OWNER = Owner(worker_id="sweep", pid=1, host="test")


class Checkout(WorkflowEntrypoint):
    """A step that fails once and is retried, a sleep, an event wait, a last step."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def charge(context: StepContext) -> dict[str, Any]:
            if context.attempt == 1:
                raise ConnectionError("gateway timed out")
            return {"charge_id": "ch_1", "cents": 2500, "attempt": context.attempt}

        charged = step.do("charge", charge, retries={"limit": 2, "delay": "1 minute"})
        step.sleep("cool-off", "10 minutes")
        approval = step.wait_for_event("approval", type="approve", timeout="1 hour")
        return step.do("ship", lambda: {"by": approval.payload["by"], **charged})


@dataclass
class Figures:
    tried: int = 0
    detected: int = 0
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The project's config and the journal of one finished ``checkout`` run."""
    project = make_project(tmp_path_factory.mktemp("flips"))
    harness = WorkflowHarness(
        {"checkout": Checkout}, store=FileStore(project.store, durable=False), clock=FakeClock()
    )
    harness.run("checkout", {"order": "A-1"}, instance_id="victim")  # waits for its retry
    harness.advance("1 minute")  # the retry succeeds; the sleep suspends
    harness.advance("10 minutes")  # the sleep ends; the event wait suspends
    done = harness.send_event("victim", "approve", {"by": "alice"})
    assert done.status == "complete", done
    path = project.store / "journals" / "victim.jsonl"
    assert path.read_bytes().startswith(b'{"v":2,')
    return project.config, path


def line_of(data: bytes, position: int) -> int:
    return data.count(b"\n", 0, position) + 1


def store_paths(store: FileStore, path: Path, line: int) -> list[str]:
    """What is wrong with how ``FileStore.read`` and a lease took the flipped journal."""
    problems = []
    try:
        store.read("victim")
        problems.append("read: no error")
    except JournalCorruptError as error:
        if (error.path, error.line) != (str(path), line):
            problems.append(f"read: {error}")
    with store.acquire("victim", OWNER) as lease:
        try:
            lease.read()
            lease.append([RunStarted(at=FakeClock().now(), pid=1, host="h")], sync=False)
            problems.append("lease: read and appended")
        except JournalCorruptError as error:
            if (error.path, error.line) != (str(path), line):
                problems.append(f"lease: {error}")
    return problems


def cli_paths(config: Path, path: Path, line: int) -> list[str]:
    """What is wrong with how ``wf status --json`` and ``wf doctor --json`` took it."""
    runner, options = CliRunner(), ["--config", str(config), "--store", str(path.parents[1])]
    problems = []
    status = runner.invoke(app, ["status", "victim", "--json", *options])
    if status.exit_code != 2 or not status.stderr.startswith(f"error: {path}:{line}: "):
        problems.append(f"status exit {status.exit_code}: {status.output[:200]}")
    doctor = runner.invoke(app, ["doctor", "--json", *options])
    findings = json.loads(doctor.stdout)["findings"] if doctor.exit_code == 1 else []
    if not any(
        (f["kind"], f["path"], f["line"]) == ("damaged-journal", str(path), line) for f in findings
    ):
        problems.append(f"doctor exit {doctor.exit_code}: {doctor.output[:200]}")
    return problems


def test_every_bit_flip_of_a_v2_journal_is_reported_on_its_line(
    journal: tuple[Path, Path],
) -> None:
    config, path = journal
    whole = path.read_bytes()
    store = FileStore(path.parents[1], durable=False)
    assert len(store.read("victim")) >= 15
    flips = [(position, bit) for position in range(len(whole)) for bit in range(8)]
    sampled = set(random.Random(SEED).sample(flips, CLI_SAMPLE))
    store_figures, cli_figures = Figures(), Figures()
    fd = os.open(path, os.O_RDWR)
    try:
        for position, bit in flips:
            os.pwrite(fd, bytes([whole[position] ^ 1 << bit]), position)
            line = line_of(whole, position)
            for figures, problems in (
                (store_figures, store_paths(store, path, line)),
                *(
                    [(cli_figures, cli_paths(config, path, line))]
                    if (position, bit) in sampled
                    else []
                ),
            ):
                figures.tried += 1
                if problems:
                    figures.failures.append(f"byte {position} bit {bit}: {'; '.join(problems)}")
                else:
                    figures.detected += 1
            if os.fstat(fd).st_size != len(whole):  # a lease wrote: it must not have
                os.ftruncate(fd, len(whole))
            os.pwrite(fd, whole[position : position + 1], position)
    finally:
        os.close(fd)
    assert path.read_bytes() == whole
    lines = whole.count(b"\n")
    print(
        f"store paths: {store_figures.detected} / {store_figures.tried} flips detected "
        f"({len(whole)} bytes, {lines} lines); CLI: {cli_figures.detected} / {cli_figures.tried}"
    )
    assert store_figures.failures == []
    assert cli_figures.failures == []
    assert store_figures.tried == 8 * len(whole)
