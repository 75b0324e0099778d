"""``wf timeline``: spans from journals, the picture on a fake clock (golden SVGs), the CLI.

The golden files in ``tests/golden/`` are the SVGs rich exports for two instances run
by the harness on its fake clock. After a deliberate change to the picture (or a rich
upgrade that changes its SVG), write them again and look at the difference:

    WF_UPDATE_GOLDEN=1 python -m pytest -q tests/test_timeline.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wfcli import WorkflowEntrypoint
from wfcli.cli import app
from wfcli.core.timeline import Timeline
from wfcli.store.files import FileStore
from wfcli.testing import WorkflowHarness
from wfcli.ui.timeline import export_timeline, timeline_view

GOLDEN = Path(__file__).parent / "golden"


def order_harness(store: FileStore | None = None) -> WorkflowHarness:
    """A harness with ``Order``: a fetch, a charge that fails twice, a sleep, an
    approval event wait and a shipment; each callback takes its time on the fake clock."""
    harness = WorkflowHarness(store=store)
    clock = harness.clock

    def taking(seconds: float, value: object, fails: int = 0) -> object:
        def callback(context: object) -> object:
            clock.advance(timedelta(seconds=seconds))
            if getattr(context, "attempt", 1) <= fails:
                raise ConnectionError("card network timed out")
            return value

        return callback

    class Order(WorkflowEntrypoint):
        def run(self, event: object, step: object) -> object:
            step.do("fetch order", taking(1.5, {"sku": "x"}))  # type: ignore[attr-defined]
            step.do(  # type: ignore[attr-defined]
                "charge card",
                taking(0.8, {"charge": "ch_1"}, fails=2),
                retries={"limit": 4, "delay": "2 seconds", "backoff": "exponential"},
            )
            step.sleep("cool off", "10 minutes")  # type: ignore[attr-defined]
            step.wait_for_event("approval", type="approved", timeout="1 hour")  # type: ignore[attr-defined]
            return step.do("ship", taking(3, "shipped"))  # type: ignore[attr-defined]

    harness.register(Order, "order")
    harness.disable_sleeps()  # the sleep and the retry delays pass on the fake clock
    return harness


def run_order(harness: WorkflowHarness, *, approve: bool) -> str:
    harness.run("order", params={"order": 7}, instance_id="order-7")
    harness.clock.advance(timedelta(minutes=4))
    if approve:
        harness.send_event("order-7", "approved", {"by": "ann"})
    return "order-7"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("WF_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        f"{path} differs; if the change is meant, WF_UPDATE_GOLDEN=1 writes it again"
    )


@pytest.mark.parametrize("approve", [True, False], ids=["complete", "waiting"])
def test_the_picture_matches_its_golden_svg(approve: bool) -> None:
    harness = order_harness()
    instance = run_order(harness, approve=approve)
    timeline = Timeline.of(harness.client.history(instance))
    view = timeline_view(timeline, harness.clock.now(), 100, plain=False)
    svg, html = export_timeline(view, 100, f"wf timeline {instance}")
    check_golden(f"timeline_{'complete' if approve else 'waiting'}.svg", svg)
    assert "<span" in html
    assert "fetch order" in html


def test_spans_follow_the_journal() -> None:
    harness = order_harness()
    instance = run_order(harness, approve=True)
    timeline = Timeline.of(harness.client.history(instance))
    charge = timeline.rows["charge card"]
    assert [(s.kind, s.outcome, s.attempt) for s in charge.spans] == [
        ("attempt", "failed", 1),
        ("retry_delay", "ok", 1),
        ("attempt", "failed", 2),
        ("retry_delay", "ok", 2),
        ("attempt", "ok", 3),
    ]
    assert charge.spans[0].detail == "ConnectionError: card network timed out"
    assert charge.spans[1].until == charge.spans[2].start  # the delay ends as attempt 2 starts
    assert charge.spans[0].end is not None
    assert (charge.spans[0].end - charge.spans[0].start) == timedelta(seconds=0.8)
    (sleep,) = timeline.rows["cool off"].spans
    assert (sleep.kind, sleep.outcome, sleep.end - sleep.start) == (
        "sleep",
        "ok",
        timedelta(minutes=10),
    )
    (wait,) = timeline.rows["approval"].spans
    assert (wait.kind, wait.detail, wait.end - wait.start) == (
        "event_wait",
        "approved",
        timedelta(minutes=4),
    )


def test_an_open_wait_is_the_current_wait_and_the_timeline_grows_record_by_record() -> None:
    harness = order_harness()
    instance = run_order(harness, approve=False)
    records = harness.client.history(instance)
    timeline = Timeline.of(records)
    assert timeline.waiting is not None
    assert timeline.waiting.event_type == "approved"
    (wait,) = timeline.rows["approval"].spans
    assert (wait.end, wait.outcome) == (None, "open")
    harness.send_event(instance, "approved")
    grown = harness.client.store.read_after(instance, timeline.state.record_count)
    timeline.extend(grown)
    assert timeline.rows["approval"].spans[0].outcome == "ok"
    assert timeline.state.status == "complete"
    assert timeline.to_json(harness.clock.now()) == Timeline.of(
        harness.client.history(instance)
    ).to_json(harness.clock.now())


def test_a_terminated_instance_cuts_its_open_spans_short() -> None:
    harness = order_harness()
    instance = run_order(harness, approve=False)
    harness.client.terminate(instance)
    timeline = Timeline.of(harness.client.history(instance))
    assert timeline.rows["approval"].spans[0].outcome == "cancelled"
    plain = timeline_view(timeline, harness.clock.now(), 90, plain=True)
    text = _text(plain, 90)
    assert "terminated" in text
    assert "cut short" not in text


def _text(renderable: object, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=__import__("io").StringIO())
    console.print(renderable)
    return console.export_text()


def test_plain_text_has_a_row_per_step_an_axis_and_a_legend() -> None:
    harness = order_harness()
    instance = run_order(harness, approve=True)
    timeline = Timeline.of(harness.client.history(instance))
    text = _text(timeline_view(timeline, harness.clock.now(), 100, plain=True), 100)
    lines = text.splitlines()
    assert lines[0].startswith("order-7  order  complete  14m 13s from 2030-01-01 00:00:00 UTC")
    rows = {line.split()[0]: line for line in lines if line.startswith(("fetch", "charge", "ship"))}
    assert rows["charge"].count("▓") > 0
    assert "░" in rows["charge"]
    assert rows["charge"].endswith("8.4s")
    assert all(len(line) <= 100 for line in lines)
    assert "╌10m╌" in text
    assert "00:14:12" in text
    assert lines[-1].startswith("█ attempt ok  ▓ attempt failed  ░ retry delay  ▃ sleep")
    linear = _text(timeline_view(timeline, harness.clock.now(), 100, True, "linear"), 100)
    assert "╌10m╌" not in linear
    assert "break" not in linear


# --- the command ----------------------------------------------------------------------


@pytest.fixture
def order_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    run_order(order_harness(FileStore(root)), approve=True)
    return root


def test_wf_timeline_json_is_the_spans(order_store: Path) -> None:
    result = CliRunner().invoke(app, ["timeline", "order-7", "--store", str(order_store), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("id", "workflow", "status", "waiting")} == {
        "id": "order-7",
        "workflow": "order",
        "status": "complete",
        "waiting": None,
    }
    assert document["start"] == "2030-01-01T00:00:00.000000+00:00"
    assert [step["name"] for step in document["steps"]] == [
        "fetch order",
        "charge card",
        "cool off",
        "approval",
        "ship",
    ]
    first = document["steps"][1]["spans"][0]
    assert first == {
        "kind": "attempt",
        "start": "2030-01-01T00:00:01.500000+00:00",
        "end": "2030-01-01T00:00:02.300000+00:00",
        "outcome": "failed",
        "attempt": 1,
        "until": None,
        "detail": "ConnectionError: card network timed out",
    }


def test_wf_timeline_saves_the_picture_the_view_draws(order_store: Path, tmp_path: Path) -> None:
    svg, html = tmp_path / "t.svg", tmp_path / "t.html"
    result = CliRunner().invoke(
        app,
        [
            "timeline",
            "order-7",
            "--store",
            str(order_store),
            "--svg",
            str(svg),
            "--html",
            str(html),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "charge card" in result.stdout
    assert "attempt failed" in result.stdout
    assert svg.read_text() == (GOLDEN / "timeline_complete.svg").read_text()
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert "charge card" in html.read_text()


def test_wf_timeline_refuses_a_bad_scale_and_an_unwritable_file(order_store: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["timeline", "order-7", "--store", str(order_store), "--scale", "log"])
    assert bad.exit_code == 2
    assert "compact or linear" in bad.stderr
    unwritable = runner.invoke(
        app, ["timeline", "order-7", "--store", str(order_store), "--svg", "/nonexistent/t.svg"]
    )
    assert unwritable.exit_code == 2
    assert "cannot write it" in unwritable.stderr
    missing = runner.invoke(app, ["timeline", "nobody", "--store", str(order_store)])
    assert missing.exit_code == 2


def test_wf_timeline_follow_ends_when_the_instance_does(tmp_path: Path) -> None:
    """A real follower process, reading the journal's new lines, while another process
    sends the event that lets the instance finish."""
    root = tmp_path / "store"
    harness = order_harness(FileStore(root))
    instance = run_order(harness, approve=False)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wfcli",
            "timeline",
            instance,
            "--store",
            str(root),
            "--follow",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the follower has read the journal and waits for it to grow
        assert follower.poll() is None
        harness.send_event(instance, "approved")
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    document = json.loads(out)
    assert document["status"] == "complete"
    assert document["steps"][-1]["name"] == "ship"


def test_a_follower_of_a_journal_file_skips_a_torn_line_until_it_is_whole(tmp_path: Path) -> None:
    """``FileStore.read_after`` reads from where it stopped: a line still being written
    (a crash mid-write, or a writer not done) is not a record yet; a damaged one is."""
    from wfcli.core.codec import encode_record
    from wfcli.errors import JournalCorruptError
    from wfcli.testing.store_contract import created, step_records

    store = FileStore(tmp_path / "store", durable=False)
    store.create(created("i-1"))
    assert len(store.read_after("i-1", 0)) == 1
    first, second = step_records(2)
    line = (encode_record(first, 2) + "\n").encode()
    path = store.journal_path("i-1")
    with path.open("ab") as journal:
        journal.write(line[:10])
    assert store.read_after("i-1", 1) == []
    with path.open("ab") as journal:
        journal.write(line[10:])
    assert store.read_after("i-1", 1) == [first]
    with path.open("ab") as journal:
        journal.write(encode_record(second, 3).replace('"s1"', '"s9"').encode() + b"\n")
    with pytest.raises(JournalCorruptError, match=r":3: .*checksum mismatch"):
        store.read_after("i-1", 2)
