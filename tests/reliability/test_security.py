"""Security: journal content is data, IDs stay inside the store, files are private,
and a hostile journal fails cleanly without exhausting memory."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.support import (
    assert_one_line_error,
    make_chaos_project,
    run_wf,
    snapshot,
)
from wfcli import FileStore, WorkflowInputError

WFCLI = Path(__file__).resolve().parents[2] / "wfcli"
# Modules and builtins that turn bytes into code or objects.
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
HOSTILE_IDS = ["..", "../outside", "/etc/passwd", "a/b", ".hidden", "x" * 101, "\uff58", "\u0430"]


def unsafe_uses(source: str) -> list[str]:
    """Imports of deserialising modules and calls of eval-like builtins in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in UNSAFE_CALLS:
                found.append(f"{node.func.id}()")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("loads", "load")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in UNSAFE_MODULES | {"yaml"}
        ):
            found.append(f"{node.func.value.id}.{node.func.attr}()")
    return found


def test_the_checker_spots_eval_and_pickle() -> None:
    assert unsafe_uses("import pickle\nx = eval(s)\npickle.loads(b)") == [
        "pickle",
        "eval()",
        "pickle.loads()",
    ]


def test_no_module_of_wfcli_unpickles_or_evaluates_anything() -> None:
    offenders = {
        path.name: unsafe_uses(path.read_text(encoding="utf-8"))
        for path in sorted(WFCLI.glob("*.py"))
    }
    assert {name: uses for name, uses in offenders.items() if uses} == {}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_chaos_project(tmp_path / "project", fsync=False)


def base_params(project: Project, **extra: object) -> str:
    trace = str(project.effects / "trace")
    return json.dumps({"dir": str(project.effects), "trace": trace, "n": 1, "work": 0, **extra})


def test_code_in_params_is_only_ever_text(project: Project, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {canary}')"
    params = base_params(project, note=payload, pickle="cos\nsystem\n(S'touch {canary}'\ntR.")
    assert run_wf(project, "run", "chain", "--id", "data", "--params", params).code == 0
    for args in (("status", "data"), ("history", "data"), ("replay", "data"), ("list",)):
        assert run_wf(project, *args).code == 0
    assert not canary.exists()
    shown = json.loads(run_wf(project, "status", "data", "--json").stdout)
    assert shown["params"]["note"] == payload


def test_ids_never_name_a_path_outside_the_store(project: Project, tmp_path: Path) -> None:
    store = FileStore(project.store)
    for hostile in [*HOSTILE_IDS, "x\x00y", ""]:
        with pytest.raises(WorkflowInputError):
            store.journal_path(hostile)
        with pytest.raises(WorkflowInputError):
            store.inbox_path(hostile)
    before = snapshot(tmp_path)
    for hostile in HOSTILE_IDS:
        created = run_wf(project, "run", "chain", "--id", hostile, "--params", base_params(project))
        assert_one_line_error(created, mentions="instance ID")
        assert_one_line_error(run_wf(project, "send-event", hostile, "--type", "x"))
    assert snapshot(tmp_path) == before


def test_store_files_are_private_whatever_the_umask(project: Project) -> None:
    def permissive() -> None:
        os.umask(0)

    params = base_params(project, event_timeout="1 hour")
    steps = [
        ("run", "approval", "--id", "private", "--params", params),
        ("pause", "private"),
        ("send-event", "private", "--type", "approve", "--payload", '{"by": "x"}'),
    ]
    for args in steps:
        assert run_wf(project, *args, preexec=permissive).code in (0, 3)
    inbox_message = project.store / "inbox" / "private"
    assert inbox_message.is_dir()  # messages passed through it

    found = snapshot(project.store)
    assert found
    wrong = {
        path: f"{stat.S_IMODE(mode):o}"
        for path, (mode, _) in {"./": (project.store.stat().st_mode, b""), **found}.items()
        if stat.S_IMODE(mode) != (0o700 if path.endswith("/") else 0o600)
    }
    assert wrong == {}
