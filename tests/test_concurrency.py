"""Several processes at one instance: one executor at a time, no lost or interleaved writes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.workflows_for_tests import (
    Children,
    Effects,
    assert_journal_sane,
    journal_path,
    make_client,
)
from wfcli import FileStore
from wfcli.core.codec import Created, EventReceived, RunStarted

PIPELINE_OUTPUT = {"a": 42, "b": {"double": 84}, "c": [42, 84, "done"]}


def test_of_processes_racing_to_execute_an_instance_one_runs_it(
    store_dir: Path, effects: Effects, children: Children, tmp_path: Path
) -> None:
    make_client(store_dir).create(
        "pipeline", params={"dir": str(effects.folder), "n": 41}, instance_id="race"
    )
    gate = tmp_path / "go"
    racers = [children.start("execute", store_dir, "race", "--start-gate", gate) for _ in range(4)]

    gate.touch()
    results = [children.finish(racer) for racer in racers]

    executed = [output for code, output in results if code == 0]
    refused = [output for code, output in results if code == 5]
    assert len(executed) + len(refused) == 4
    assert executed
    assert all(output["output"] == PIPELINE_OUTPUT for output in executed)
    assert all(output["pid"] in {racer.pid for racer in racers} for output in refused)
    assert [effects.count(step) for step in "abc"] == [1, 1, 1]
    records = assert_journal_sane(journal_path(store_dir, "race"))
    assert len([r for r in records if isinstance(r, RunStarted)]) == 1


def test_events_sent_by_several_processes_during_a_run_all_arrive_in_each_senders_order(
    store_dir: Path, children: Children, tmp_path: Path
) -> None:
    senders, each = 3, 5
    make_client(store_dir).create(
        "collector", params={"count": senders * each}, instance_id="inbox"
    )
    gate = tmp_path / "go"
    collector = children.start("execute", store_dir, "inbox", "--max-inline-wait", 600)
    posting = [
        children.start(
            "send_events", store_dir, "inbox", "item", f"s{n}", each, "--start-gate", gate
        )
        for n in range(senders)
    ]

    gate.touch()
    for sender in posting:
        children.finish(sender)
    _, final = children.finish(collector)

    assert final["status"] == "complete"
    received = final["output"]
    assert len(received) == senders * each
    for n in range(senders):
        sequence = [p["sequence"] for p in received if p["sender"] == f"s{n}"]
        assert sequence == list(range(each))
    records = assert_journal_sane(journal_path(store_dir, "inbox"))
    assert len([r for r in records if isinstance(r, EventReceived)]) == senders * each
    assert FileStore(store_dir).pending("inbox") == []


def test_of_processes_racing_to_create_one_id_exactly_one_succeeds(
    store_dir: Path, children: Children, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    creators = [
        children.start(
            "create",
            store_dir,
            "pipeline",
            "contested",
            json.dumps({"dir": "x", "n": n}),
            "--start-gate",
            gate,
        )
        for n in range(4)
    ]

    gate.touch()
    verdicts = [children.finish(creator)[1] for creator in creators]

    assert sorted(verdicts) == ["created", "exists", "exists", "exists"]
    (created,) = assert_journal_sane(journal_path(store_dir, "contested"))
    assert isinstance(created, Created)
    assert isinstance(created.params, dict)
    assert verdicts[created.params["n"]] == "created"
