"""``order-flow``: validate an order, charge it (with retries), wait, ship it.

The seeds' order workflow. The payment gateway fake times out on the first
attempt, so a run shows one failed attempt and a retry one second later.
"""

from __future__ import annotations

from typing import Any

from wfcli import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

from .fakes import CATALOGUE, charge_card, ship_order
from .params import InvalidParamsError, require_int, require_key, require_mapping, require_text

__all__ = ["OrderWorkflow", "validate_order"]


def validate_order(payload: object) -> dict[str, Any]:
    """The priced order from ``{"order_id", "items": [{"sku", "qty"}], "card"}``.

    Raises :class:`InvalidParamsError` for a missing or malformed field, an
    empty order, an unknown SKU or a quantity below one.
    """
    order = require_mapping(payload, "params")
    order_id = require_key(order, "order_id")
    card = require_text(order, "card")
    items = order.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidParamsError(f"params.items must be a non-empty list (order {order_id})")
    lines = []
    for index, entry in enumerate(items):
        where = f"params.items[{index}]"
        item = require_mapping(entry, where)
        sku = require_text(item, "sku", where=where)
        if sku not in CATALOGUE:
            known = ", ".join(sorted(CATALOGUE))
            raise InvalidParamsError(f"{where}.sku {sku!r} is not in the catalogue ({known})")
        qty = require_int(item, "qty", minimum=1, where=where)
        unit = CATALOGUE[sku]
        lines.append({"sku": sku, "qty": qty, "unit_cents": unit, "line_cents": unit * qty})
    return {
        "order_id": order_id,
        "card": card,
        "lines": lines,
        "total_cents": sum(line["line_cents"] for line in lines),
    }


class OrderWorkflow(WorkflowEntrypoint):
    """Params: ``{"order_id": "A-1001", "items": [{"sku": "book", "qty": 2}], "card": "4242"}``."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        order = step.do("validate", lambda: validate_order(event.payload))

        def charge(ctx: StepContext) -> dict[str, Any]:
            # The order ID is the idempotency key: a retry after a lost response
            # cannot charge twice.
            return charge_card(
                order["card"], order["total_cents"], order["order_id"], attempt=ctx.attempt
            )

        payment = step.do(
            "charge",
            charge,
            retries={"limit": 3, "delay": "1 second", "backoff": "exponential"},
            timeout="30 seconds",
        )
        step.sleep("wait-for-fraud-check", "2 seconds")
        shipment = step.do("fulfil", lambda: ship_order(order["order_id"], order["lines"]))
        return {
            "order_id": order["order_id"],
            "shipped": True,
            "charge_id": payment["charge_id"],
            "total_cents": payment["amount_cents"],
            "tracking_number": shipment["tracking_number"],
        }
