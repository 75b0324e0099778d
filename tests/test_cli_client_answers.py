"""The client's answers that ``wf`` renders: an event's fate (``wf send-event``) and the
plan of a resume (``wf resume``), checked on a memory store without the CLI."""

from __future__ import annotations

from typing import Any

import pytest

from wfcli import FakeClock, WorkflowClient, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wfcli.client import EventFate
from wfcli.core.codec import InboxMessage
from wfcli.core.owner import Owner
from wfcli.errors import InstanceNotFoundError, InvalidStateError
from wfcli.store.memory import MemoryStore


class Approval(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        approval = step.wait_for_event("approval", type="approve", timeout="1 hour")
        return approval.payload


class Quick(WorkflowEntrypoint):
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return step.do("only", lambda: 1)


WORKFLOWS: dict[str, type[WorkflowEntrypoint]] = {"approval": Approval, "quick": Quick}


class RacedStore(MemoryStore):
    """A memory store where another process executes an instance right after a message
    is posted to it, before the sender looks again."""

    def __init__(self) -> None:
        super().__init__()
        self.racer: WorkflowClient | None = None

    def post(self, instance_id: str, message: InboxMessage) -> None:
        super().post(instance_id, message)
        if self.racer is not None:
            self.racer.execute(instance_id)


@pytest.fixture
def store() -> RacedStore:
    return RacedStore()


@pytest.fixture
def client(store: RacedStore) -> WorkflowClient:
    return WorkflowClient(store, WORKFLOWS, clock=FakeClock())


def waiting_for_approval(client: WorkflowClient, instance_id: str = "a1") -> None:
    client.create("approval", instance_id=instance_id)
    assert client.execute(instance_id).status == "waiting"


def test_an_event_the_instance_waits_for_is_ready_to_go_on(client: WorkflowClient) -> None:
    waiting_for_approval(client)
    delivery = client.deliver_event("a1", "approve", {"by": "ada"})
    assert delivery.fate is EventFate.READY
    assert delivery.status.status == "waiting"
    assert client.execute("a1").output == {"by": "ada"}


def test_an_event_of_another_type_is_buffered(client: WorkflowClient) -> None:
    waiting_for_approval(client)
    delivery = client.deliver_event("a1", "other", 7)
    assert delivery.fate is EventFate.BUFFERED
    assert [e.payload for e in delivery.status.state.buffered_events("other")] == [7]
    client.create("quick", instance_id="q1")  # not started: it keeps every event
    assert client.deliver_event("q1", "approve").fate is EventFate.BUFFERED


def test_an_event_to_an_instance_held_elsewhere_is_left_to_its_holder(
    client: WorkflowClient, store: RacedStore
) -> None:
    waiting_for_approval(client)
    elsewhere = Owner("another-worker", 4242, "elsewhere")
    with store.acquire("a1", elsewhere):
        delivery = client.deliver_event("a1", "approve")
        assert delivery.fate is EventFate.HOLDER_TAKES
        assert delivery.status.holder == elsewhere
        assert delivery.status.pending_messages == ("event",)


def test_an_event_a_holder_took_and_finished_with_meanwhile_was_taken(
    client: WorkflowClient, store: RacedStore
) -> None:
    waiting_for_approval(client)
    store.racer = WorkflowClient(store, WORKFLOWS, clock=client.clock)
    delivery = client.deliver_event("a1", "approve", "yes")
    assert delivery.fate is EventFate.TAKEN
    assert (delivery.status.status, delivery.status.output) == ("complete", "yes")


def test_send_event_answers_the_status_alone(client: WorkflowClient) -> None:
    waiting_for_approval(client)
    assert client.send_event("a1", "approve").status == "waiting"


def test_a_resume_plan_names_each_instance_once_then_the_due_ones(
    client: WorkflowClient,
) -> None:
    for instance_id in ("q1", "q2", "q3"):
        client.create("quick", instance_id=instance_id)
    waiting_for_approval(client, "a1")
    assert client.plan_resume(["q3", "a1", "q3"]) == ["q3", "a1"]
    assert client.plan_resume(["q3"], due=True) == ["q3", "q1", "q2"]
    assert client.plan_resume([], due=True) == ["q1", "q2", "q3"]


def test_a_resume_plan_refuses_an_unknown_or_finished_instance_before_anything_runs(
    client: WorkflowClient,
) -> None:
    client.create("quick", instance_id="q1")
    client.create("quick", instance_id="done")
    client.execute("done")
    client.pause("q1")
    with pytest.raises(InvalidStateError, match="cannot resume instance 'done': it is complete"):
        client.plan_resume(["q1", "done"])
    with pytest.raises(InstanceNotFoundError, match="ghost"):
        client.plan_resume(["q1", "ghost"], due=True)
    assert client.status("q1").status == "paused"  # planning resumes nothing
