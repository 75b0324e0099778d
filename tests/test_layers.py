"""The package's layers, checked from its source: imports run one way.

cli -> project, ui -> client -> engine -> store -> core -> errors. A module may
import its own layer and the ones below it, never one above, not even for type
checking; ``wfcli.testing`` sits on top and the package ``__init__`` above all.
Store backends never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wfcli"
LAYERS = {
    "errors": 0,
    "core": 1,
    "store": 2,
    "engine": 3,
    "client": 4,
    "ui": 5,
    "project": 5,
    "cli": 6,
    "testing": 7,
    "__init__": 8,
    "__main__": 8,
}
BACKENDS = ("wfcli.store.files", "wfcli.store.postgres", "wfcli.store.memory")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def imported(path: Path) -> list[tuple[int, str]]:
    """Every ``wfcli`` module ``path`` imports (at any depth, under TYPE_CHECKING too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "wfcli":  # from wfcli import project: the module wfcli.project
                found += [(node.lineno, f"wfcli.{alias.name}") for alias in node.names]
            elif node.module.split(".")[0] == "wfcli":
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("wfcli")]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    assert SOURCES
    for path in SOURCES:
        layer(module_name(path))  # a KeyError names a package outside the layers


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_imports_run_down_the_layers(path: Path) -> None:
    own = module_name(path)
    upward = [
        f"{path.name}:{line}: {own} imports {target}"
        for line, target in imported(path)
        if layer(target) > layer(own)
    ]
    assert upward == []


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_store_backends_do_not_import_each_other(path: Path) -> None:
    own = module_name(path)
    mine = next((b for b in BACKENDS if own == b or own.startswith(b + ".")), None)
    if mine is None:
        return
    others = [t for _, t in imported(path) if any(t.startswith(b) for b in BACKENDS if b != mine)]
    assert others == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The probe itself: an engine module importing the client is caught."""
    fake = PACKAGE / "engine" / "step.py"
    source = tmp_path / "step.py"
    source.write_text("from wfcli.client.client import WorkflowClient\n", encoding="utf-8")
    (_, target), *_ = imported(source)
    assert layer(target) > layer(module_name(fake))
