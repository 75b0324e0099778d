"""Inbox messages: applied in O(N) and in posting order, whatever the senders' clocks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.faults import faulty_disk
from wfcli import (
    FakeClock,
    FileStore,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wfcli.core.codec import InboxMessage

AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Collect(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return [
            step.wait_for_event(f"e{i}", type="item", timeout="1 day").payload
            for i in range(event.payload["count"])
        ]


def event(index: int, sent_at: datetime) -> InboxMessage:
    return InboxMessage(
        message_id=uuid.uuid4().hex,
        action="event",
        sent_at=sent_at,
        event_type="item",
        payload=index,
    )


def collector(root: Path, count: int) -> tuple[WorkflowClient, FileStore]:
    store = FileStore(root, durable=False)
    client = WorkflowClient(store, {"collect": Collect}, clock=FakeClock(AT))
    client.create("collect", params={"count": count}, instance_id="c")
    return client, store


def test_applying_n_messages_lists_the_inbox_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = collector(tmp_path, 2000)
    for index in range(2000):
        store.post("c", event(index, AT))

    with faulty_disk(monkeypatch) as disk:
        client.executor.apply_inbox("c")
    applying = disk.calls["listdir"] + disk.calls["scandir"]
    with faulty_disk(monkeypatch) as disk:
        done = client.execute("c")

    assert applying <= 2  # not once per message
    assert done.output == list(range(2000))
    # One look at the (now empty) inbox before each step, none per message.
    assert disk.calls["listdir"] + disk.calls["scandir"] <= 2000 + 5


def test_messages_are_applied_in_posting_order_whatever_the_senders_clocks(
    tmp_path: Path,
) -> None:
    client, store = collector(tmp_path, 4)
    for index, hours in enumerate([0, -1, 1, -2]):  # senders' clocks an hour or two apart
        store.post("c", event(index, AT + timedelta(hours=hours)))

    assert client.execute("c").output == [0, 1, 2, 3]


def test_an_inbox_written_by_an_older_wfcli_keeps_its_order_and_new_posts_follow(
    tmp_path: Path,
) -> None:
    client, store = collector(tmp_path, 4)
    inbox = store.inbox_path("c")
    inbox.mkdir(parents=True)
    # Older wfcli named message files by the sender's clock in nanoseconds.
    for index, nanoseconds in enumerate([1_700_000_000_000_000_000, 1_700_000_000_000_000_001]):
        message = event(index, AT)
        (inbox / f"{nanoseconds:020d}-{message.message_id}.json").write_text(message.encode())
    store.post("c", event(2, AT - timedelta(hours=1)))
    store.post("c", event(3, AT))

    assert client.execute("c").output == [0, 1, 2, 3]
