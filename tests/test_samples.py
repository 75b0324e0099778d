"""The bundled sample workflows, run through the project's own ``workflows.toml``.

Every test loads the repository's ``workflows.toml`` as ``wf`` would, runs the
samples against a real file store in a temporary folder with a fake clock, and
works in that folder so the relative ``REPORTS_DIR`` lands there.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from wfcli import FakeClock, InstanceStatus, WorkflowClient
from wfcli.core.codec import AttemptFailed, AttemptStarted
from wfcli.project import Project, load_project, open_client

ROOT = Path(__file__).resolve().parent.parent
ORDER = {"order_id": "A-1001", "items": [{"sku": "book", "qty": 2}], "card": "4242"}
BRIEF = {
    "project_id": "p-42",
    "user_id": "u-1",
    "brief_text": "A new logo and brand palette for our app launch",
}
REFUND = {"order_id": "A-1001", "amount_cents": 2500, "reason": "damaged", "requester": "sam"}


@pytest.fixture
def project() -> Project:
    return load_project(ROOT / "workflows.toml")


@pytest.fixture
def client(
    project: Project,
    store_dir: Path,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> WorkflowClient:
    """Overrides conftest's ``client``: the samples as ``workflows.toml`` binds them."""
    monkeypatch.chdir(tmp_path)
    return open_client(project, store_dir, clock=clock)


def run(client: WorkflowClient, workflow: str, params: object, instance_id: str) -> InstanceStatus:
    return client.create(workflow, params=params, instance_id=instance_id).execute()


def output_of(status: InstanceStatus) -> dict[str, Any]:
    assert status.status == "complete", status.error
    assert isinstance(status.output, dict)
    return status.output


def step_output(status: InstanceStatus, step: str) -> dict[str, Any]:
    output = status.state.steps[step].output
    assert isinstance(output, dict)
    return output


def attempts_started(client: WorkflowClient, instance_id: str, step: str) -> int:
    return sum(
        1
        for record in client.history(instance_id)
        if isinstance(record, AttemptStarted) and record.step == step
    )


# --- workflows.toml ------------------------------------------------------------------------


def test_workflows_toml_binds_every_sample(project: Project) -> None:
    import sample_workflows

    classes = project.load_workflows()

    assert {name: cls.__name__ for name, cls in classes.items()} == {
        "order-flow": "OrderWorkflow",
        "report-flow": "ReportWorkflow",
        "brief-analysis": "BriefAnalysisWorkflow",
        "approval-flow": "ApprovalWorkflow",
        "trip-booking": "TripWorkflow",
    }
    assert sorted(cls.__name__ for cls in classes.values()) == sorted(sample_workflows.__all__)
    assert {w.binding: w.name for w in project.workflows} == {
        "ORDER_FLOW": "order-flow",
        "REPORT_FLOW": "report-flow",
        "BRIEF_ANALYSIS": "brief-analysis",
        "APPROVAL_FLOW": "approval-flow",
        "TRIP_BOOKING": "trip-booking",
    }
    assert project.variables == {"REPORTS_DIR": "reports"}


# --- order-flow -----------------------------------------------------------------------------


def test_order_flow_completes_after_retrying_the_charge(
    client: WorkflowClient, clock: FakeClock
) -> None:
    started = clock.now()

    status = run(client, "order-flow", ORDER, "order-1")

    assert output_of(status) == {
        "order_id": "A-1001",
        "shipped": True,
        "charge_id": step_output(status, "charge")["charge_id"],
        "total_cents": 2500,
        "tracking_number": step_output(status, "fulfil")["tracking_number"],
    }
    assert [s.name for s in status.steps] == [
        "validate",
        "charge",
        "wait-for-fraud-check",
        "fulfil",
    ]
    assert status.state.steps["charge"].attempts == 2
    failures = [r for r in client.history("order-1") if isinstance(r, AttemptFailed)]
    assert [(f.step, f.attempt, f.error.name) for f in failures] == [
        ("charge", 1, "GatewayUnavailableError")
    ]
    assert failures[0].retry_at == failures[0].at + timedelta(seconds=1)
    sleep = status.state.steps["wait-for-fraud-check"]
    assert sleep.until is not None
    assert sleep.started is not None
    assert sleep.until - sleep.started == timedelta(seconds=2)
    assert clock.now() - started >= timedelta(seconds=3)


def test_order_flow_resumes_after_the_fraud_check_without_charging_again(
    client: WorkflowClient, clock: FakeClock
) -> None:
    handle = client.create("order-flow", params=ORDER, instance_id="order-2")

    waiting = handle.execute(max_inline_wait=timedelta(seconds=1))
    assert waiting.status == "waiting"
    assert waiting.waiting is not None
    assert waiting.waiting.step == "wait-for-fraud-check"

    clock.advance(timedelta(seconds=2))
    done = handle.execute()

    assert done.status == "complete", done.error
    assert attempts_started(client, "order-2", "charge") == 2
    assert attempts_started(client, "order-2", "fulfil") == 1


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"items": []}, "params.items must be a non-empty list"),
        ({"items": None}, "params.items must be a non-empty list"),
        ({"items": [{"sku": "book", "qty": 0}]}, "params.items[0].qty must be a whole number >= 1"),
        ({"items": [{"sku": "book", "qty": -3}]}, "params.items[0].qty must be a whole number"),
        ({"items": [{"sku": "yacht", "qty": 1}]}, "params.items[0].sku 'yacht' is not in the"),
        ({"order_id": "../etc"}, "params.order_id must be 1-64 letters"),
    ],
)
def test_order_flow_rejects_an_invalid_order_without_retrying(
    client: WorkflowClient, change: dict[str, object], complaint: str
) -> None:
    status = run(client, "order-flow", {**ORDER, **change}, "order-bad")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "InvalidParamsError"
    assert complaint in status.error.message
    assert [s.name for s in status.steps] == ["validate"]
    assert status.state.steps["validate"].attempts == 1


def test_order_flow_stops_at_a_declined_card(client: WorkflowClient) -> None:
    status = run(client, "order-flow", {**ORDER, "card": "0002"}, "order-declined")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "CardDeclinedError"
    assert status.state.steps["charge"].attempts == 1
    assert "fulfil" not in status.state.steps


# --- report-flow ----------------------------------------------------------------------------


def test_report_flow_writes_its_file_once_even_when_persist_runs_again(
    client: WorkflowClient, tmp_path: Path
) -> None:
    report = tmp_path / "reports" / "q3-sales.json"

    first = output_of(run(client, "report-flow", {"report_id": "q3-sales"}, "report-1"))

    assert first == {
        "report_id": "q3-sales",
        "item_count": 3,
        "total_cents": json.loads(report.read_text())["total_cents"],
        "path": str(report),
        "written": True,
    }
    written = report.stat()

    client.restart("report-1", from_step="persist report")
    again = output_of(client.execute("report-1"))

    assert again == {**first, "written": False}
    assert attempts_started(client, "report-1", "fetch source data") == 1
    unchanged = report.stat()
    assert (unchanged.st_ino, unchanged.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert sorted(p.name for p in report.parent.iterdir()) == ["q3-sales.json"]


def test_report_flow_writes_to_the_folder_in_its_params(
    client: WorkflowClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "elsewhere"

    status = run(client, "report-flow", {"report_id": "r-7", "out_dir": str(out_dir)}, "report-2")

    output = output_of(status)
    saved = json.loads((out_dir / "r-7.json").read_text())
    assert saved == {"report_id": "r-7", "item_count": 3, "total_cents": output["total_cents"]}
    assert output["path"] == str(out_dir / "r-7.json")
    assert not (tmp_path / "reports").exists()


# --- brief-analysis -------------------------------------------------------------------------


def test_brief_analysis_runs_parallel_steps_and_starts_a_report(
    client: WorkflowClient, tmp_path: Path
) -> None:
    status = run(client, "brief-analysis", BRIEF, "brief-1")

    output = output_of(status)
    assert [s.name for s in status.steps] == [
        "classify-intent",
        "retrieve-skills",
        "load-user-profile",
        "generate-analysis",
        "start-report",
        "save-results",
    ]
    assert all(s.status == "completed" for s in status.steps)
    assert status.state.steps["load-user-profile"].output == {
        "user_id": "u-1",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "plan": "pro",
    }
    assert output["domain"] == "branding"
    assert output["skills"] == status.state.steps["retrieve-skills"].output
    assert output["report_instance"] == "report-brief-1"
    analysis = json.loads((tmp_path / "reports" / "analysis-p-42.json").read_text())
    assert analysis == status.state.steps["generate-analysis"].output

    child = client.status("report-brief-1")
    assert (child.workflow, child.status) == ("report-flow", "queued")
    assert child.state.params == {"report_id": "brief-p-42"}
    assert client.execute("report-brief-1").status == "complete"
    assert (tmp_path / "reports" / "brief-p-42.json").exists()


def test_brief_analysis_adopts_a_report_an_earlier_attempt_started(
    client: WorkflowClient,
) -> None:
    client.create("report-flow", params={"report_id": "brief-p-42"}, instance_id="report-brief-2")

    status = run(client, "brief-analysis", BRIEF, "brief-2")

    assert status.status == "complete", status.error
    assert status.state.steps["start-report"].output == "report-brief-2"
    assert status.state.steps["start-report"].attempts == 1
    assert [s.id for s in client.list_instances(workflow="report-flow")] == ["report-brief-2"]


def test_brief_analysis_refuses_a_report_id_taken_by_another_workflow(
    client: WorkflowClient,
) -> None:
    client.create("order-flow", params=ORDER, instance_id="report-brief-3")

    status = run(client, "brief-analysis", BRIEF, "brief-3")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "NonRetryableError"
    assert "'report-brief-3' exists but runs 'order-flow'" in status.error.message
    assert status.state.steps["start-report"].attempts == 1


def test_brief_analysis_fails_for_an_unknown_user_after_both_branches_ran(
    client: WorkflowClient,
) -> None:
    status = run(client, "brief-analysis", {**BRIEF, "user_id": "u-404"}, "brief-4")

    assert status.status == "errored"
    assert status.error is not None
    assert status.error.name == "UserNotFoundError"
    assert status.state.steps["retrieve-skills"].status == "completed"
    assert status.state.steps["load-user-profile"].status == "failed"
    assert status.state.steps["load-user-profile"].attempts == 1
    assert "generate-analysis" not in status.state.steps


# --- approval-flow --------------------------------------------------------------------------


def start_approval(client: WorkflowClient, instance_id: str) -> InstanceStatus:
    status = run(client, "approval-flow", REFUND, instance_id)
    assert status.status == "waiting", status.error
    assert status.waiting is not None
    assert (status.waiting.kind, status.waiting.step, status.waiting.event_type) == (
        "event",
        "wait-for-approval",
        "approval",
    )
    return status


def test_approval_flow_waits_then_completes_on_approval(
    client: WorkflowClient, clock: FakeClock
) -> None:
    waiting = start_approval(client, "approval-1")
    assert waiting.waiting is not None
    assert waiting.waiting.until == clock.now() + timedelta(hours=1)

    client.send_event("approval-1", "approval", {"approved": True, "by": "alice"})
    status = client.execute("approval-1")

    assert output_of(status) == {
        "status": "approved",
        "request_id": "refund-A-1001",
        "decided_by": "alice",
        "refund_id": step_output(status, "issue-refund")["refund_id"],
    }
    assert attempts_started(client, "approval-1", "prepare-request") == 1


def test_approval_flow_returns_rejected_without_refunding(client: WorkflowClient) -> None:
    start_approval(client, "approval-2")

    client.send_event("approval-2", "approval", {"approved": False, "by": "bob", "note": "no"})
    status = client.execute("approval-2")

    assert status.status == "complete", status.error
    assert status.output == {
        "status": "rejected",
        "request_id": "refund-A-1001",
        "decided_by": "bob",
        "note": "no",
    }
    assert "issue-refund" not in status.state.steps


def test_approval_flow_expires_when_nobody_answers(
    client: WorkflowClient, clock: FakeClock
) -> None:
    start_approval(client, "approval-3")

    clock.advance(timedelta(minutes=59))
    assert client.execute("approval-3").status == "waiting"
    clock.advance(timedelta(minutes=1))
    status = client.execute("approval-3")

    assert status.status == "complete", status.error
    assert status.output == {"status": "expired", "request_id": "refund-A-1001"}
    assert status.state.steps["wait-for-approval"].status == "failed"


# --- trip-booking (a saga) ------------------------------------------------------------------


def test_trip_booking_rolls_back_every_booking_last_first(client: WorkflowClient) -> None:
    status = run(client, "trip-booking", {"trip_id": "T-1", "fail_at": "car"}, "trip-1")

    assert status.status == "errored"
    assert status.error is not None
    assert (status.error.name, status.error.message) == (
        "NonRetryableError",
        "no car available for T-1",
    )
    rollback = status.state.rollback
    assert rollback is not None
    assert (rollback.status, rollback.plan) == (
        "complete",
        ["book-car", "book-hotel", "book-flight"],
    )
    assert status.state.deadline == status.state.created + timedelta(hours=1)


def test_trip_booking_completes_with_no_rollback(client: WorkflowClient) -> None:
    status = run(client, "trip-booking", {"trip_id": "T-2"}, "trip-2")

    assert output_of(status) == {
        "flight": {"booking": "flight-T-2"},
        "hotel": {"booking": "hotel-T-2"},
        "car": {"booking": "car-T-2"},
    }
    assert status.state.rollback is None
