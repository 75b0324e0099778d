"""``approval-flow``: a refund that waits for a person to approve it.

The human-in-the-loop case: the instance suspends at ``wait-for-approval``
until someone runs ``wf send-event ID --type approval --payload
'{"approved": true, "by": "alice"}'``, or the hour runs out.
"""

from __future__ import annotations

from typing import Any

from wfcli import WorkflowEntrypoint, WorkflowEvent, WorkflowStep, WorkflowTimeoutError

from .fakes import refund_payment
from .params import require_int, require_key, require_mapping, require_text

__all__ = ["ApprovalWorkflow", "prepare_refund_request"]


def prepare_refund_request(payload: object) -> dict[str, Any]:
    """The request a person is asked to approve, from the instance's params."""
    params = require_mapping(payload, "params")
    order_id = require_key(params, "order_id")
    return {
        "request_id": f"refund-{order_id}",
        "order_id": order_id,
        "amount_cents": require_int(params, "amount_cents", minimum=1),
        "reason": require_text(params, "reason"),
        "requester": require_text(params, "requester"),
    }


class ApprovalWorkflow(WorkflowEntrypoint):
    """Params: ``{"order_id": "A-1001", "amount_cents": 2500, "reason": "...",
    "requester": "sam"}``.

    Waits up to an hour for an ``approval`` event. Only a payload with
    ``"approved": true`` approves; anything else rejects. Returns
    ``{"status": "approved" | "rejected" | "expired", ...}``.
    """

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        request = step.do("prepare-request", lambda: prepare_refund_request(event.payload))
        try:
            decision = step.wait_for_event("wait-for-approval", type="approval", timeout="1 hour")
        except WorkflowTimeoutError:
            return {"status": "expired", "request_id": request["request_id"]}
        answer = decision.payload if isinstance(decision.payload, dict) else {}
        decided_by = answer.get("by")
        if answer.get("approved") is not True:
            return {
                "status": "rejected",
                "request_id": request["request_id"],
                "decided_by": decided_by,
                "note": answer.get("note"),
            }
        refund = step.do(
            "issue-refund",
            lambda: refund_payment(
                request["order_id"], request["amount_cents"], request["request_id"]
            ),
            retries={"limit": 3, "delay": "1 second", "backoff": "exponential"},
        )
        return {
            "status": "approved",
            "request_id": request["request_id"],
            "decided_by": decided_by,
            "refund_id": refund["refund_id"],
        }
