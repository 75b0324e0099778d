"""``WorkflowClient.follow``: a live view's status, read from only the journal's new lines."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from wfcli import (
    FakeClock,
    FileStore,
    WorkflowClient,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)


class Two(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.do("one", lambda: 1)
        step.wait_for_event("go", type="go", timeout="1 hour")
        return step.do("two", lambda: 2)


def test_a_follower_keeps_the_status_the_client_reads_from_scratch(store_dir: Path) -> None:
    client = WorkflowClient(FileStore(store_dir), {"two": Two}, clock=FakeClock())
    instance_id = client.create("two").id
    follower = client.follow(instance_id)
    assert follower.status().to_json() == client.status(instance_id).to_json()

    client.execute(instance_id, max_inline_wait=timedelta(0))  # one step, then it waits
    waiting = follower.status()
    assert waiting.to_json() == client.status(instance_id).to_json()
    assert waiting.status == "waiting"
    client.send_event(instance_id, "go")
    assert follower.status().to_json() == client.status(instance_id).to_json()
    client.execute(instance_id)

    new = follower.refresh()
    assert new
    assert follower.records == client.history(instance_id)
    assert follower.status().to_json() == client.status(instance_id).to_json()
    assert follower.state.status == "complete"
