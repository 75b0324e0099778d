"""The bad input matrix (:mod:`tests.reliability.bad_inputs`) against the real ``wf``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_support import Project
from tests.reliability.bad_inputs import make_template, try_all
from tests.reliability.support import assert_one_line_error, make_chaos_project, run_wf, snapshot


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_template(tmp_path_factory.mktemp("bad-input") / "project")


def test_every_bad_input_is_one_line_exit_2_and_changes_nothing(
    template: Project, tmp_path: Path
) -> None:
    tried = try_all(template, tmp_path)

    assert [t.failure for t in tried if t.failure] == []
    assert len(tried) >= 50, len(tried)


def test_a_bad_input_on_a_project_without_a_store_creates_no_store(tmp_path: Path) -> None:
    project = make_chaos_project(tmp_path / "fresh", fsync=False)
    before = snapshot(tmp_path)

    outcome = run_wf(project, "run", "chain", "--id", "a/b", "--params", "{}")

    assert_one_line_error(outcome, mentions="instance ID")
    assert snapshot(tmp_path) == before
    assert not project.store.exists()
