"""Fixtures shared by the core tests: clocks, stores, effects and child processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workflows_for_tests import Children, Effects, make_client
from wfcli import FakeClock, WorkflowClient

pytest_plugins = ["tests.postgres_support"]  # the pg_server fixture


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
