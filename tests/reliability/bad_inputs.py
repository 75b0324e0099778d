"""The bad input matrix: what ``tests/reliability/test_bad_input.py`` and the long run try.

Every case must give one ``error:`` line and exit 2, and leave every byte of the
project (config, store, side-effect folder) as it was. Each runs the real ``wf``
on its own copy of a template project.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.cli_support import Project
from tests.reliability.support import (
    Outcome,
    assert_one_line_error,
    make_chaos_project,
    run_wf,
    snapshot,
)
from wfcli.project import load_project, open_client

__all__ = ["Case", "Tried", "make_template", "matrix", "try_all"]


@dataclass(frozen=True)
class Case:
    """One bad input: the ``wf`` arguments, words the error must contain, stdin."""

    label: str
    args: tuple[str, ...]
    mentions: str
    stdin: str | None = None


LOOK_ALIKE_IDS = {
    "a slash": "a/b",
    "dot-dot": "..",
    "a fullwidth letter": "\uff44one",
    "a Cyrillic letter": "d\u043ene",
    "101 characters": "d" * 101,
    "a leading dash": "-done",
}
BAD_DURATIONS = {
    "negative": "-5 seconds",
    "unknown unit": "5 parsecs",
    "overflowing": "1e309 seconds",
    "infinite": "1e309",
}
LONG_NAME = "s" * 257


def bad_json_values(folder: Path, option: str) -> Iterator[tuple[str, str, str, str | None]]:
    """(label, option value, words of the error, stdin) for ``--params`` or ``--payload``."""
    big = folder / "big.json"
    big.write_text(json.dumps("x" * (2 * 1024 * 1024)), encoding="utf-8")
    deep = folder / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    binary = folder / "binary.json"
    binary.write_bytes(b'{"x": "\xff\xfe"}')
    yield "not JSON", "{n: 1}", "not valid JSON", None
    yield "too large", f"@{big}", "over the limit", None
    yield "deeply nested", f"@{deep}", "nested too deeply", None
    yield "nested deeper than 256", "[" * 300 + "]" * 300, "nested deeper than 256", None
    yield "NaN", '{"x": NaN}', "not a JSON number", None
    yield "an integer of 5000 digits", "9" * 5000, "digits", None
    yield "an unpaired surrogate", '"\\ud800"', "surrogate", None
    yield "a missing file", f"@{folder / 'missing.json'}", "cannot read it", None
    yield "a file that is not UTF-8", f"@{binary}", "not UTF-8", None
    yield "stdin that is not JSON", "-", f"{option} from stdin: not valid JSON", "nope"


def bad_configs(folder: Path, good: str) -> Iterator[tuple[str, Path, str]]:
    """(label, config file, words of the error) for broken copies of ``good``."""
    edits = {
        "a TOML syntax error": (good.replace('name = "chain"', 'name = "chain'), "invalid TOML"),
        "an unknown key": (good.replace("[defaults]", "[defaults]\nretires = 3"), "retires"),
        "a duplicate name": (good.replace('name = "bulky"', 'name = "chain"'), "already"),
        "a missing class": (good.replace('"Chain"', '"Missing"'), "has no 'Missing'"),
        "a class that is not a workflow": (
            good.replace('class_name = "Chain"', 'class_name = "Path"'),
            "not a subclass of wfcli.WorkflowEntrypoint",
        ),
        "a missing module": (
            good.replace("chaos_workflows.py", "no_such_module.py"),
            "file not found",
        ),
        "a bad default duration": (
            good.replace('max_inline_wait = "1 minute"', 'max_inline_wait = "5 parsecs"'),
            "parsecs",
        ),
    }
    for label, (text, mentions) in edits.items():
        assert text != good, label
        path = folder / f"{label.replace(' ', '-')}.toml"
        path.write_text(text, encoding="utf-8")
        yield label, path, mentions


def matrix(folder: Path, project: Project) -> list[Case]:
    cases: list[Case] = []
    for label, value, mentions, stdin in bad_json_values(folder, "--params"):
        args = ("run", "chain", "--id", "new", "--params", value)
        cases.append(Case(f"params: {label}", args, mentions, stdin))
    for label, value, mentions, stdin in bad_json_values(folder, "--payload"):
        if label.startswith(("NaN", "a missing", "a file")):
            continue  # the same parser as --params; one of each is enough
        args = ("send-event", "waiting", "--type", "approve", "--payload", value)
        cases.append(Case(f"payload: {label}", args, mentions, stdin))
    # Every ID through run; through status and send-event in turn (one validator for all).
    for index, (label, instance_id) in enumerate(LOOK_ALIKE_IDS.items()):
        run = ("run", "chain", "--params", "{}", f"--id={instance_id}")
        cases.append(Case(f"run --id with {label}", run, "instance ID"))
        other = ("status", "--", instance_id)
        if index % 2:
            other = ("send-event", "--type", "x", "--", instance_id)
        cases.append(Case(f"{other[0]} with an ID with {label}", other, "instance ID"))
    for label, text in BAD_DURATIONS.items():
        cases.append(
            Case(f"--max-wait {label}", ("resume", "waiting", f"--max-wait={text}"), "--max-wait")
        )
    cases.append(Case("--poll negative", ("worker", "--once", "--poll=-5 seconds"), "--poll"))
    cases.append(
        Case("--older-than in parsecs", ("prune", "--older-than", "5 parsecs"), "--older-than")
    )
    good = project.config.read_text(encoding="utf-8")
    for label, path, mentions in bad_configs(folder, good):
        args = ("run", "chain", "--params", "{}", "--config", str(path))
        cases.append(Case(f"workflows.toml with {label}", args, mentions))
    for label, name in (("too long", LONG_NAME), ("with a control character", "a\tb")):
        restart = ("restart", "done", "--from-step", name)
        cases.append(Case(f"--from-step {label}", restart, "step name"))
        send = ("send-event", "waiting", "--type", name)
        cases.append(Case(f"event type {label}", send, "event type"))
    cases += [
        Case(
            "an event for an unknown instance",
            ("send-event", "nosuch", "--type", "x"),
            "no instance",
        ),
        Case("an event for a finished instance", ("send-event", "done", "--type", "x"), "complete"),
        Case("resuming a finished instance", ("resume", "done"), "complete"),
        Case("an unknown workflow", ("run", "nosuch", "--params", "{}"), "unknown workflow"),
        Case("an unknown status filter", ("list", "--status", "sleepy"), "sleepy"),
        Case(
            "an existing ID", ("run", "chain", "--id", "done", "--params", "{}"), "already exists"
        ),
    ]
    return cases


def make_template(root: Path) -> Project:
    """A project whose store has ``done`` (complete) and ``waiting`` (for an event)."""
    project = make_chaos_project(root, fsync=False)
    client = open_client(load_project(project.config), project.store)
    base = {"dir": str(project.effects), "trace": str(project.effects / "trace"), "n": 1}
    client.create("chain", params={**base, "work": 0}, instance_id="done")
    client.execute("done")
    client.create("approval", params={**base, "event_timeout": "1 hour"}, instance_id="waiting")
    client.execute("waiting")
    return project


def attempt(template: Project, folder: Path, case: Case) -> tuple[Outcome, bool]:
    """Run the case on a fresh copy of the project; (outcome, every byte unchanged)."""
    root = folder / "project"
    shutil.copytree(template.config.parent, root)
    copy = Project(root / "workflows.toml", root / "store", root / "effects")
    before = snapshot(root)
    outcome = run_wf(copy, *case.args, input_text=case.stdin)
    return outcome, snapshot(root) == before


@dataclass(frozen=True)
class Tried:
    """A case and what came of it; ``failure`` is None when it behaved."""

    case: Case
    outcome: Outcome
    store_unchanged: bool
    failure: str | None


def try_all(template: Project, folder: Path, *, workers: int = 2) -> list[Tried]:
    """Run every case of the matrix, each on its own copy of ``template``."""
    cases = matrix(folder, template)

    def one(index: int) -> Tried:
        case = cases[index]
        outcome, unchanged = attempt(template, folder / f"case-{index}", case)
        try:
            assert_one_line_error(outcome, mentions=case.mentions)
            assert unchanged, "the project's files changed"
        except AssertionError as error:
            return Tried(case, outcome, unchanged, f"{case.label}: {error}")
        return Tried(case, outcome, unchanged, None)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(cases))))
