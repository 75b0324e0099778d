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
    memory_cap,
    run_wf,
    snapshot,
)
from wfcli import FakeClock, FileStore, WorkflowInputError
from wfcli.core.codec import Created, encode_record

WFCLI = Path(__file__).resolve().parents[2] / "wfcli"
# Modules and builtins that turn bytes into code or objects.
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
MEMORY_CAP = 320 * 1024 * 1024
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


# The codec compiles its per-record-type encoders and decoders from the record classes'
# own field names and types (source made in the module, never from what it reads).
COMPILED_FROM_LAYOUTS = {"core/codec.py": ["exec()", "compile()"]}


def test_no_module_of_wfcli_unpickles_or_evaluates_anything() -> None:
    modules = sorted(WFCLI.rglob("*.py"))
    assert len(modules) > 50, "every module of every subpackage is read"
    uses = {
        path.relative_to(WFCLI).as_posix(): unsafe_uses(path.read_text(encoding="utf-8"))
        for path in modules
    }
    assert {name: found for name, found in uses.items() if found} == COMPILED_FROM_LAYOUTS


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
    for args in (("history", "data"), ("replay", "data")):
        assert run_wf(project, *args).code == 0
    shown = json.loads(run_wf(project, "status", "data", "--json").stdout)

    assert not canary.exists()
    assert shown["params"]["note"] == payload


def test_ids_never_name_a_path_outside_the_store(project: Project, tmp_path: Path) -> None:
    store = FileStore(project.store)
    for hostile in [*HOSTILE_IDS, "x\x00y", ""]:
        for path_of in (store.journal_path, store.lock_path, store.inbox_path):
            with pytest.raises(WorkflowInputError):
                path_of(hostile)
    before = snapshot(tmp_path)
    # The bad input matrix tries every look-alike; these three aim outside the store.
    attempts = [
        ("run", "chain", "--id", "../outside", "--params", base_params(project)),
        ("send-event", "--type", "x", "--", "/etc/passwd"),
        ("delete", ".."),
    ]
    for args in attempts:
        assert_one_line_error(run_wf(project, *args), mentions="instance ID")
    assert snapshot(tmp_path) == before


def test_store_files_are_private_whatever_the_umask(project: Project) -> None:
    def permissive() -> None:
        os.umask(0)

    params = base_params(project, event_timeout="1 hour")
    steps = [
        ("run", "approval", "--id", "private", "--params", params),
        ("pause", "private"),
        ("send-event", "private", "--type", "approve", "--payload", '{"by": "x"}'),
        ("list",),
    ]
    for args in steps:
        assert run_wf(project, *args, preexec=permissive).code in (0, 3)
    inbox_message = project.store / "inbox" / "private"
    assert inbox_message.is_dir()  # messages passed through it

    found = snapshot(project.store, with_cache=True)
    assert "cache/" in found  # `wf list` wrote the listing index
    wrong = {
        path: f"{stat.S_IMODE(mode):o}"
        for path, (mode, _) in {"./": (project.store.stat().st_mode, b""), **found}.items()
        if stat.S_IMODE(mode) != (0o700 if path.endswith("/") else 0o600)
    }
    assert wrong == {}


# --- a hostile journal fails cleanly, in bounded memory ------------------------------------------


def hostile_store(project: Project, line: bytes, *, sparse_size: int = 0) -> Path:
    """A store whose instance ``evil`` has a valid first line, then ``line``."""
    created = Created(at=FakeClock().now(), instance_id="evil", workflow="slow", params=None)
    FileStore(project.store).create(created)
    path = project.store / "journals" / "evil.jsonl"
    # Version 1, whose lines have no checksum: the hostile lines reach every check.
    path.write_text(encode_record(created, 1, 1) + "\n", encoding="utf-8")
    with open(path, "ab") as journal:
        journal.write(line)
    if sparse_size:
        os.truncate(path, sparse_size)  # a hole: NUL bytes that cost no disk
    return path


HOSTILE_LINES = {
    "a huge line": (b"", 1000 * 1024 * 1024, "line longer than"),
    "deep nesting": (b"[" * 2_000_000 + b"\n", 0, "nested too deeply"),
    # Deeper than wfcli ever writes, shallow enough for json.loads: refused on reading,
    # not left to overflow the stack of whoever walks the value later (replay, resume).
    "a value nested 900 deep": (
        b'{"v":1,"n":2,"type":"event_received","at":"2030-01-01T00:00:00+00:00",'
        b'"message_id":"m","event_type":"e","payload":' + b"[" * 900 + b"]" * 900 + b"}\n",
        0,
        "nested deeper than 256 levels",
    ),
    "wrong field types": (
        b'{"v":1,"n":2,"type":"run_started","at":"2030-01-01T00:00:00+00:00","pid":"1","host":7}\n',
        0,
        "expected a non-negative integer",
    ),
    "a negative count": (
        b'{"v":1,"n":2,"type":"attempt_started","at":"2030-01-01T00:00:00+00:00",'
        b'"step":"s","attempt":-1}\n',
        0,
        "expected a non-negative integer",
    ),
    "an event result of the wrong shape": (
        b'{"v":1,"n":2,"type":"step_completed","at":"2030-01-01T00:00:00+00:00",'
        b'"step":"approval","kind":"event","attempt":1,"output":5}\n',
        0,
        "an event step's result must be an object",
    ),
    "an integer too long to read": (b'{"v":1,"n":' + b"9" * 5000 + b"}\n", 0, "not JSON"),
}


@pytest.mark.parametrize("hostile", HOSTILE_LINES)
def test_a_hostile_journal_fails_with_one_line_in_bounded_memory(
    project: Project, hostile: str
) -> None:
    line, sparse_size, reason = HOSTILE_LINES[hostile]
    path = hostile_store(project, line, sparse_size=sparse_size)
    # Every command reads through one reader; the huge line also goes through the others.
    commands = [("status", "evil")]
    if sparse_size:
        commands += [("resume", "evil"), ("doctor",)]
    elif "900" in hostile or "event" in hostile:
        commands += [("replay", "evil")]
    for args in commands:
        outcome = run_wf(project, *args, preexec=memory_cap(MEMORY_CAP))
        if args[0] == "doctor":
            assert outcome.code == 1, outcome.describe()
            assert f"problem: {path}:2: " in outcome.stdout, outcome.describe()
            assert reason in outcome.stdout, outcome.describe()
        else:
            error = assert_one_line_error(outcome, mentions=f"{path}:2: corrupt journal: ")
            assert reason in error, outcome.describe()


def test_a_huge_inbox_message_fails_with_one_line_in_bounded_memory(project: Project) -> None:
    hostile_store(project, b"")
    message = project.store / "inbox" / "evil" / f"{'0' * 20}-{'a' * 32}.json"
    message.parent.mkdir(exist_ok=True)
    message.write_bytes(b'{"v":1,"payload":"')
    os.truncate(message, 1000 * 1024 * 1024)

    for args in (("status", "evil"), ("resume", "evil"), ("doctor",)):
        outcome = run_wf(project, *args, preexec=memory_cap(MEMORY_CAP))
        if args[0] == "doctor":
            assert outcome.code == 1, outcome.describe()
            assert f"problem: {message}:1: message longer than" in outcome.stdout
        else:
            assert_one_line_error(outcome, mentions=f"{message}:1: corrupt journal: message longer")
