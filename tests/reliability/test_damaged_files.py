"""Torn and damaged store files, read by every command.

A torn last line (a crash mid-write) is tolerated: at every byte offset of the
last record, the instance reads as if that record had not been written. Damage
anywhere else is reported by every command that reads it, with file and line,
and nothing rewrites or "repairs" it: each command runs on its own copy of the
store, whose bytes are compared before and after.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.damage import flip_sweep, torn_sweep
from tests.reliability.support import (
    Outcome,
    assert_one_line_error,
    make_chaos_project,
    run_wf,
    snapshot,
)
from wfcli.core.codec import add_checksum
from wfcli.project import load_project, open_client

SEED = 5
Damage = Callable[[list[bytes]], bytes]


def journal(project: Project, instance_id: str = "victim") -> Path:
    return project.store / "journals" / f"{instance_id}.jsonl"


def copy_of(project: Project, folder: Path) -> Project:
    """The project with a private copy of its store (commands run side by side)."""
    shutil.copytree(project.store, folder / "store")
    return Project(project.config, folder / "store", project.effects)


# --- torn tails ---------------------------------------------------------------------------


def test_a_torn_last_record_reads_as_not_written_at_every_byte_offset(
    finished: Project, tmp_path: Path
) -> None:
    figures = torn_sweep(copy_of(finished, tmp_path), "victim", sample_every=8)

    assert figures.failures == []
    assert figures.tried > 40


def test_a_real_wf_tolerates_a_torn_tail_and_the_next_run_cuts_it_off(
    finished: Project, tmp_path: Path
) -> None:
    project = copy_of(finished, tmp_path)
    path = journal(project)
    whole = path.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    offset = random.Random(SEED).randrange(last_start + 1, len(whole))
    path.write_bytes(whole[:offset])

    for args in (("status", "victim"), ("list",)):
        shown = run_wf(project, *args, *project.options())
        assert shown.code == 0, shown.describe()
        assert path.read_bytes() == whole[:offset]
    resumed = run_wf(project, "resume", "victim", *project.options())

    assert resumed.code == 0, resumed.describe()
    repaired = path.read_bytes()
    assert repaired.startswith(whole[:last_start])
    assert repaired.endswith(b"\n")
    assert repaired.count(b'"type":"finished"') == 1


# --- damage in the middle --------------------------------------------------------------------


def _garbage(lines: list[bytes]) -> bytes:
    return b"".join([lines[0], b"\x00\xff not a record \xfe\n", *lines[2:]])


def _flipped_key(lines: list[bytes]) -> bytes:
    broken = lines[1].replace(b'"type"', b'"tzpe"', 1)
    return b"".join([lines[0], broken, *lines[2:]])


def _deleted_line(lines: list[bytes]) -> bytes:
    return b"".join([lines[0], *lines[2:]])


def _duplicated_line(lines: list[bytes]) -> bytes:
    return b"".join([lines[0], lines[1], *lines[1:]])


def _empty(lines: list[bytes]) -> bytes:
    return b""


def _other_version(lines: list[bytes]) -> bytes:
    """Every line as a later version would write it: checksummed, with another ``v``."""
    tail = len(b',"crc":"01234567"}\n')
    return b"".join(
        add_checksum(line[:-tail].decode().replace('{"v":2,', '{"v":3,', 1)).encode() + b"\n"
        for line in lines
    )


def _torn_first_line(lines: list[bytes]) -> bytes:
    return lines[0][:20]


# damage -> (what it does to the journal's lines, the line reported, words of the reason)
DAMAGES: dict[str, tuple[Damage, int, str]] = {
    "garbage": (_garbage, 2, "not JSON"),
    "flipped key": (_flipped_key, 2, "checksum mismatch"),
    "deleted line": (_deleted_line, 2, "a line is missing"),
    "duplicated line": (_duplicated_line, 3, "a line is missing, duplicated"),
    "empty file": (_empty, 1, "empty journal"),
    "other format version": (_other_version, 1, "format version 3 is not supported"),
    "torn first line": (_torn_first_line, 1, "no complete record"),
}
SINGLE_INSTANCE_COMMANDS: list[tuple[str, ...]] = [
    ("status", "ID"),
    ("history", "ID"),
    ("resume", "ID"),
    ("pause", "ID"),
    ("terminate", "ID"),
    ("send-event", "ID", "--type", "poke"),
    ("restart", "ID"),
    ("delete", "ID"),
    ("replay", "ID"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A store of complete instances: ``victim`` (short last record) and one per damage."""
    project = make_chaos_project(tmp_path_factory.mktemp("damaged"), fsync=False)
    client = open_client(load_project(project.config), project.store)
    base = {"dir": str(project.effects), "trace": str(project.effects / "trace"), "n": 1}
    client.create("slow", params={**base, "steps": 2, "work": 0}, instance_id="victim")
    client.execute("victim")
    for damage in DAMAGES:
        client.create("chain", params={**base, "work": 0}, instance_id=damaged_id(damage))
        client.execute(damaged_id(damage))
    return project


def damaged_id(damage: str) -> str:
    return damage.replace(" ", "-")


def run_on_copies(
    project: Project, tmp_path: Path, commands: list[tuple[str, ...]]
) -> list[tuple[Outcome, bool]]:
    """Run each command on its own copy of the store; (outcome, store bytes unchanged)."""

    def one(index: int) -> tuple[Outcome, bool]:
        copy = copy_of(project, tmp_path / f"copy-{index}")
        before = snapshot(copy.store)
        outcome = run_wf(copy, *commands[index], *copy.options())
        return outcome, snapshot(copy.store) == before

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(len(commands))))


def test_damage_is_reported_by_every_command_with_file_and_line_and_left_alone(
    finished: Project, tmp_path: Path
) -> None:
    project = copy_of(finished, tmp_path / "base")
    commands: list[tuple[str, ...]] = [("list",), ("worker", "--once"), ("doctor",)]
    for damage, (damaged, _, _) in DAMAGES.items():
        path = journal(project, damaged_id(damage))
        path.write_bytes(damaged(path.read_bytes().splitlines(keepends=True)))
        # Every single-instance command for garbage; a seeded one for each other damage
        # (all of them read through the same code; garbage proves it).
        chosen = SINGLE_INSTANCE_COMMANDS
        if damage != "garbage":
            chosen = random.Random(f"{SEED}-{damage}").sample(SINGLE_INSTANCE_COMMANDS, 1)
        commands += [tuple(damaged_id(damage) if a == "ID" else a for a in c) for c in chosen]

    results = run_on_copies(project, tmp_path, commands)

    for index, ((outcome, unchanged), args) in enumerate(zip(results, commands, strict=True)):
        assert unchanged, f"{args} changed the store"
        journals = tmp_path / f"copy-{index}" / "store" / "journals"
        for damage, (_, line, reason) in DAMAGES.items():
            where = f"{journals / damaged_id(damage)}.jsonl:{line}"
            if args[0] == "doctor":
                assert outcome.code == 1, outcome.describe()
                assert f"problem: {where}: " in outcome.stdout, outcome.describe()
            elif args[0] in ("list", "worker"):
                assert outcome.code == 0, outcome.describe()
                (skipped,) = [t for t in outcome.stderr.splitlines() if where in t]
                assert f"skipped: {where}: corrupt journal: " in skipped, skipped
                assert reason in skipped, outcome.describe()
                assert "Traceback" not in outcome.stderr, outcome.describe()
            elif damaged_id(damage) in args:
                error = assert_one_line_error(outcome, mentions=f"{where}: corrupt journal: ")
                assert reason in error, outcome.describe()


def test_a_flipped_byte_anywhere_is_reported_or_reads_as_valid_records(
    finished: Project, tmp_path: Path
) -> None:
    """No flip escapes as a traceback, is skipped silently, or makes a read command write.

    Through the real ``wf`` commands; ``test_bit_flips.py`` flips every bit of a
    version 2 journal and requires each flip to be reported on its line.
    """
    project = copy_of(finished, tmp_path)
    whole = journal(project).read_bytes()
    middle = range(whole.find(b"\n") + 1, whole.rstrip(b"\n").rfind(b"\n") + 1)
    rng = random.Random(SEED)

    figures = flip_sweep(project, "victim", rng.sample(middle, 60), rng)

    assert figures.failures == []
    assert figures.reported > figures.tried // 4  # flips in keys and syntax are caught


def test_stray_files_in_the_journals_folder_do_not_hide_the_instances(
    finished: Project, tmp_path: Path
) -> None:
    project = copy_of(finished, tmp_path)
    journals = project.store / "journals"
    (journals / "copy of victim.jsonl").write_bytes((journals / "victim.jsonl").read_bytes())
    (journals / "notes.txt").write_text("mine", encoding="utf-8")

    listed = run_wf(project, "list", "--json", *project.options())
    checked = run_wf(project, "doctor", *project.options())

    assert listed.code == 0, listed.describe()
    assert "victim" in [i["id"] for i in json.loads(listed.stdout)["instances"]]
    assert checked.code == 1
    assert f"problem: {journals / 'copy of victim.jsonl'}: not a journal" in checked.stdout
