"""A payment workflow with sensitive params, a sensitive step and a sensitive event,
for tests/test_redaction.py (bound through a workflows.toml)."""

from __future__ import annotations

from typing import Any

from wfcli import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

CARD = "4111-9137-5520-0042"
PIN = "pin-8c1d-77e0"
TOKEN_PREFIX = "tok-live-"
SECRET = "launch-code-5e1f"
SECRETS = (CARD, PIN, TOKEN_PREFIX, SECRET, "9137-5520")


class Payment(WorkflowEntrypoint):
    """Tokenizes the card (sensitive), waits for a PIN (sent as sensitive), charges."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        card = event.payload["card"]
        token = step.do("tokenize", lambda: TOKEN_PREFIX + card, sensitive=True)
        pin = step.wait_for_event("pin", type="pin", timeout="1 hour")
        charged = step.do(
            "charge",
            lambda: {
                "token_ok": token == TOKEN_PREFIX + CARD,
                "pin_ok": pin.payload == {"pin": PIN},
            },
        )
        return {
            "paid": charged["token_ok"] and charged["pin_ok"],
            "amount": event.payload["amount"],
        }


class Keeper(WorkflowEntrypoint):
    """Waits for an event; its params are marked sensitive by ``wf run --sensitive``."""

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        step.wait_for_event("go", type="go", timeout="1 hour")
        return {"had_secret": event.payload == {"secret": SECRET}}
