"""The ``wf`` command line on a PostgreSQL store: the main scenarios of ``test_cli`` run
again with ``--store postgresql://...``, ``[store] url`` reaching the store, and the
one-line error without the driver."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests import test_cli
from tests.cli_support import Project, make_project
from tests.postgres_support import PgServer
from tests.test_cli import ok, one_line_error, wf
from tests.workflows_for_tests import Effects

_SCENARIOS = (
    "test_run_to_completion_prints_one_plain_line_per_event",
    "test_run_json_is_one_status_document",
    "test_run_shows_a_retried_attempt",
    "test_run_errored_exits_1_with_the_error",
    "test_run_suspended_on_a_sleep_exits_3_and_says_how_it_continues",
    "test_run_waiting_for_an_event_says_how_to_send_it",
    "test_detach_only_creates_a_queued_instance",
    "test_status_shows_the_instance_and_its_steps",
    "test_list_filters_and_orders_newest_first",
    "test_history_lists_every_record",
    "test_pause_then_resume",
    "test_pause_while_a_step_runs_takes_effect_after_it",
    "test_terminate_ends_it_and_resume_refuses",
    "test_terminated_while_running_exits_4",
    "test_an_instance_held_elsewhere_is_busy_exit_5",
    "test_restart_runs_again_keeping_history",
    "test_send_event_resumes_the_waiter_in_the_foreground",
    "test_send_event_of_another_type_is_buffered",
    "test_send_event_to_an_instance_held_elsewhere_leaves_it_to_that_process",
    "test_resume_several_reports_the_worst_outcome",
    "test_resume_due_runs_queued_instances",
    "test_resume_refuses_a_finished_instance_before_running_anything",
    "test_worker_once_runs_everything_due_and_exits",
)
for _name in _SCENARIOS:  # collected here again, with the fixtures below
    globals()[_name] = getattr(test_cli, _name)


class PgProject(Project):
    """A test project whose store is a PostgreSQL URL (``store`` holds the URL)."""


@pytest.fixture
def project(tmp_path: Path, pg_server: PgServer) -> Project:
    made = make_project(tmp_path / "project")
    url: Any = pg_server.store_url()
    return PgProject(made.config, url, made.effects)


@pytest.fixture
def effects(project: Project) -> Effects:
    return Effects(project.effects)


def test_store_url_in_workflows_toml_reaches_postgresql(
    tmp_path: Path, pg_server: PgServer
) -> None:
    made = make_project(tmp_path / "project")
    url = pg_server.store_url()
    text = made.config.read_text(encoding="utf-8")
    made.config.write_text(text.replace('dir = "store"', f'url = "{url}"'), encoding="utf-8")
    args = ["--config", str(made.config)]
    params = json.dumps({"dir": str(made.effects), "n": 1})
    ok(
        test_cli.runner.invoke(
            test_cli.app, ["run", "pipeline", "--id", "u1", "--params", params, *args]
        )
    )
    listed = ok(wf(None, "list", "--json", "--store", url))
    assert [each["id"] for each in json.loads(listed.stdout)["instances"]] == ["u1"]


def test_without_the_driver_a_postgresql_store_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def no_psycopg(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "psycopg" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_psycopg)
    line = one_line_error(wf(None, "list", "--store", "postgresql://wf:s3cret@db.example:5433/wf"))
    assert line == (
        "error: store postgresql://wf@db.example:5433/wf: the PostgreSQL driver is not"
        " installed: pip install 'wfcli[postgres]'"
    )


# --- wf export / wf import between a folder store and PostgreSQL ---------------------------------


def test_export_and_import_move_instances_both_ways_losslessly(
    tmp_path: Path, pg_server: PgServer
) -> None:
    folder = make_project(tmp_path / "project")
    url = pg_server.store_url()
    on_pg = PgProject(folder.config, url, folder.effects)  # type: ignore[arg-type]
    ok(wf(folder, "run", "pipeline", "--id", "done", "--params", folder.params(n=1)))
    ok(wf(folder, "run", "approval", "--id", "waits", "--params", folder.params()), 3)
    ok(wf(folder, "pause", "waits"))
    exported = ok(wf(folder, "export", "done", "waits")).stdout
    dump = tmp_path / "moved.jsonl"
    dump.write_text(exported, encoding="utf-8")

    assert ok(wf(on_pg, "import", str(dump))).stdout.splitlines() == [
        "imported done",
        "imported waits",
    ]
    for instance_id in ("done", "waits"):
        journal = (folder.store / "journals" / f"{instance_id}.jsonl").read_text(encoding="utf-8")
        assert ok(wf(on_pg, "export", instance_id)).stdout.splitlines()[1:] == journal.splitlines()
    assert json.loads(ok(wf(on_pg, "status", "done", "--json")).stdout)["output"]["a"] == 2

    refused = one_line_error(wf(on_pg, "import", str(dump)))
    assert "'done'" in refused
    ok(wf(on_pg, "resume", "waits"), 3)  # it goes on where it was, on PostgreSQL
    ok(wf(on_pg, "send-event", "waits", "--type", "approve", "--payload", '{"by": "pg"}'))
    assert json.loads(ok(wf(on_pg, "status", "waits", "--json")).stdout)["status"] == "complete"

    back = tmp_path / "back.jsonl"
    back.write_text(ok(wf(on_pg, "export", "waits")).stdout, encoding="utf-8")
    elsewhere = make_project(tmp_path / "elsewhere")
    ok(wf(elsewhere, "import", str(back)))
    status = json.loads(ok(wf(elsewhere, "status", "waits", "--json")).stdout)
    assert (status["status"], status["output"]) == ("complete", {"approved_by": "pg"})


def test_import_of_a_damaged_export_is_one_line_naming_the_line(
    project: Project, tmp_path: Path
) -> None:
    dump = tmp_path / "bad.jsonl"
    dump.write_text('{"wfcli_export":1,"instance":"x","lines":1,"messages":0}\n{nope\n')
    assert one_line_error(wf(project, "import", str(dump))) == (
        f"error: {dump}:2: corrupt journal: not JSON"
    )


def _connections_to(database_url: str) -> int:
    """Connections to the session's database other than the one asking."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_command_run_in_process_closes_its_connections(
    project: Project, pg_server: PgServer
) -> None:
    before = _connections_to(pg_server.database_url)
    params = json.dumps({"dir": str(project.effects), "n": 2})
    ok(wf(project, "run", "pipeline", "--id", "c1", "--params", params))
    ok(wf(project, "status", "c1", "--json"))
    ok(wf(project, "list", "--json"))
    one_line_error(wf(project, "status", "missing"))
    assert _connections_to(pg_server.database_url) == before
