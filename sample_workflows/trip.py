"""``trip-booking``: a saga. Each booking has a rollback that cancels it.

If a booking fails for good, the instance rolls back every booking it started,
the last first (the failing one too, with no output), and ends ``errored`` with
the original error. ``wf terminate ID --rollback`` rolls back the same way.
"""

from __future__ import annotations

from typing import Any

from wfcli import (
    NonRetryableError,
    RollbackContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

from .params import require_mapping, require_text

__all__ = ["TripWorkflow"]

_BOOKINGS = ("flight", "hotel", "car")


def _book(trip_id: str, what: str, fail_at: str | None) -> dict[str, Any]:
    if what == fail_at:
        raise NonRetryableError(f"no {what} available for {trip_id}")
    return {"booking": f"{what}-{trip_id}"}


def _cancel(rollback: RollbackContext) -> dict[str, Any]:
    # A booking that never finished (rollback.output is None) has nothing to cancel here;
    # a real service would cancel by an idempotency key instead.
    booking = None if rollback.output is None else rollback.output["booking"]
    return {"cancelled": booking}


class TripWorkflow(WorkflowEntrypoint):
    """Params: ``{"trip_id": "T-1", "fail_at": "car"}`` (``fail_at`` optional: one of
    flight, hotel, car). Returns the three bookings."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        params = require_mapping(event.payload, "params")
        trip_id = require_text(params, "trip_id")
        fail_at = params.get("fail_at")
        bookings = {}
        for what in _BOOKINGS:
            bookings[what] = step.do(
                f"book-{what}",
                lambda what=what: _book(trip_id, what, fail_at),
                retries={"limit": 1, "delay": "1 second"},
                rollback=_cancel,
                rollback_config={"retries": {"limit": 3, "delay": "1 second"}},
            )
        return bookings
