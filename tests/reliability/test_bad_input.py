"""The bad input matrix: every case is one ``error:`` line, exit 2, and not one byte changed.

Each case runs the real ``wf`` on its own copy of a project (config, store with a
complete instance ``done`` and one ``waiting`` for an event, side-effect
folder); the copy's every file and folder is compared before and after.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.support import (
    Outcome,
    assert_one_line_error,
    make_chaos_project,
    run_wf,
    snapshot,
)
from wfcli.config import load_project, open_client


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
    for label, instance_id in LOOK_ALIKE_IDS.items():
        run = ("run", "chain", "--params", "{}", f"--id={instance_id}")
        cases.append(Case(f"run --id with {label}", run, "instance ID"))
        for command in ("status", "send-event"):
            args = (command, "--type", "x", "--", instance_id)
            if command == "status":
                args = (command, "--", instance_id)
            cases.append(Case(f"{command} with an ID with {label}", args, "instance ID"))
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


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_chaos_project(tmp_path_factory.mktemp("bad-input") / "project", fsync=False)
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


def test_every_bad_input_is_one_line_exit_2_and_changes_nothing(
    template: Project, tmp_path: Path
) -> None:
    cases = matrix(tmp_path, template)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda item: attempt(template, tmp_path / f"case-{item[0]}", item[1]),
                enumerate(cases),
            )
        )

    failures = []
    for case, (outcome, unchanged) in zip(cases, results, strict=True):
        try:
            assert_one_line_error(outcome, mentions=case.mentions)
            assert unchanged, "the project's files changed"
        except AssertionError as error:
            failures.append(f"{case.label}: {error}")
    assert failures == [], "\n\n".join(failures)
    assert len(cases) >= 50


def test_a_bad_input_on_a_project_without_a_store_creates_no_store(tmp_path: Path) -> None:
    project = make_chaos_project(tmp_path / "fresh", fsync=False)
    before = snapshot(tmp_path)

    outcome = run_wf(project, "run", "chain", "--id", "a/b", "--params", "{}")

    assert_one_line_error(outcome, mentions="instance ID")
    assert snapshot(tmp_path) == before
    assert not project.store.exists()
