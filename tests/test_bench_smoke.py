"""``python -m bench --quick`` runs every benchmark at tiny sizes, so none of them rots.

It checks that each section produced figures and that the report files are
written, never how fast anything was (speed belongs in bench/, not in tests).
Only the DBOS comparison may be left out, and only when dbos is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Every row of the quick report, by section; the DBOS rows are checked separately.
EXPECTED_SECTIONS = {
    "1-2 per step (durable)": 4,
    "1-2 per step (relaxed)": 6,
    "3 per instance": 10,
    "4 growth": 22,
    "5 cold start": 9,
    "7 memory": 3,
    "16.8 progress output per step": 9,
}
PEER_SECTION = "6 peer: DBOS"
POSTGRES_SECTION = "8 postgres"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    output = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((output / "latest.json").read_text(encoding="utf-8"))
    table = (output / "latest.md").read_text(encoding="utf-8")
    assert done.stdout == table
    return report, table


def _rows(report: dict[str, object], section: str) -> dict[str, dict[str, object]]:
    sections = report["sections"]
    assert isinstance(sections, dict)
    rows = sections[section]
    return {name: row for name, row in rows.items() if not name.startswith("_")}


def test_every_section_reports_its_measurements(
    quick_report: tuple[dict[str, object], str],
) -> None:
    report, _ = quick_report
    assert report["quick"] is True
    for section, count in EXPECTED_SECTIONS.items():
        rows = _rows(report, section)
        assert len(rows) == count, (section, sorted(rows))
        for name, row in rows.items():
            measured = row["median"] if "median" in row else row["value"]
            assert isinstance(measured, float), (section, name)
            assert measured > 0, (section, name)
            if "median" in row:
                assert row["min"] <= row["median"] <= row["max"], (section, name)


def test_ratios_against_targets_say_whether_they_were_met(
    quick_report: tuple[dict[str, object], str],
) -> None:
    report, table = quick_report
    durable = _rows(report, "1-2 per step (durable)")["step.do / floor (medians)"]
    assert durable["target"] == 1.3
    assert isinstance(durable["met"], bool)
    assert ("<= 1.30 met" in table) or ("<= 1.30 MISSED" in table)


def test_machine_and_load_are_recorded(quick_report: tuple[dict[str, object], str]) -> None:
    report, _ = quick_report
    machine = report["machine"]
    assert isinstance(machine, dict)
    for fact in ("nproc", "cpu", "disk", "python"):
        assert machine[fact], fact
    assert machine["failed_sections"] == []
    assert isinstance(machine["load_at_start"], float)


def test_dbos_comparison_runs_when_dbos_is_installed(
    quick_report: tuple[dict[str, object], str],
) -> None:
    report, table = quick_report
    if importlib.util.find_spec("dbos") is None:
        info = report["sections"][PEER_SECTION]["_info"]
        assert "dbos is not installed" in info["skipped"]
        assert "skipped (dbos is not installed" in table
        return
    rows = _rows(report, PEER_SECTION)
    assert rows["wfcli / DBOS per step"]["value"] > 0
    assert rows["`dbos --help`"]["median"] > 0


def test_postgres_section_runs_or_says_why_not(
    quick_report: tuple[dict[str, object], str],
) -> None:
    report, table = quick_report
    sections = report["sections"]
    assert isinstance(sections, dict)
    info = sections[POSTGRES_SECTION]["_info"]
    if "skipped" in info:
        assert "psycopg is not installed" in info["skipped"] or "no PostgreSQL" in info["skipped"]
        assert f"- {POSTGRES_SECTION}: skipped (" in table
        return
    rows = _rows(report, POSTGRES_SECTION)
    with_dbos = importlib.util.find_spec("dbos") is not None
    assert len(rows) == (15 if with_dbos else 9), sorted(rows)  # DBOS: 3 rows per durability
    for name, row in rows.items():
        measured = row["median"] if "median" in row else row["value"]
        assert isinstance(measured, float), name
        assert measured > 0, name
    assert rows["step.do / fenced insert (medians)"]["target"] == 1.5
    if with_dbos:
        for commits in ("flushed commits", "synchronous_commit = off"):
            ratio = rows[f"wfcli / DBOS per step on PostgreSQL, {commits} (medians)"]
            assert ratio["target"] == 0.1
    else:
        assert "dbos is not installed" in info["dbos"]
