"""The pytest plugin of wfcli (entry point ``pytest11``): the ``wf_harness`` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfcli.store.files.store import FileStore
from wfcli.testing.harness import WorkflowHarness

__all__ = ["wf_harness"]


@pytest.fixture
def wf_harness(tmp_path: Path) -> WorkflowHarness:
    """A :class:`~wfcli.testing.WorkflowHarness` over a fresh store in ``tmp_path``.

    Journals are real files (not fsynced, for speed) under ``tmp_path / "wf-store"``;
    time is a :class:`~wfcli.testing.FakeClock` at ``wf_harness.clock``.
    """
    return WorkflowHarness(store=FileStore(tmp_path / "wf-store", durable=False))
