"""Fixtures shared by the core tests: clocks, stores, effects and child processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # tests import tests.workflows_for_tests, as drivers do
    sys.path.insert(0, str(REPO_ROOT))

from tests.workflows_for_tests import Children, Effects, make_client  # noqa: E402
from wfcli import FakeClock, WorkflowClient  # noqa: E402


@pytest.fixture
def children() -> Iterator[Children]:
    spawned = Children()
    try:
        yield spawned
    finally:
        spawned.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def effects(tmp_path: Path) -> Effects:
    """A folder for countable side effects (``params["dir"]`` of the test workflows)."""
    folder = tmp_path / "effects"
    folder.mkdir()
    return Effects(folder)


@pytest.fixture
def client(store_dir: Path, clock: FakeClock) -> WorkflowClient:
    """An in-process client over a file store, on a fake clock."""
    return make_client(store_dir, clock=clock)
