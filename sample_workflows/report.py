"""``report-flow``: fetch data, total it, write the report file exactly once.

Seed 001's three steps, each with a retry policy sized to the step. The last
step checks before it writes, so re-running it (a retry after a lost response,
or ``wf restart --from-step "persist report"``) never writes the file twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wfcli import Env, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

from .fakes import ReportBucket, fetch_report_data
from .params import InvalidParamsError, require_key, require_mapping, require_text

__all__ = ["ReportWorkflow", "reports_bucket"]


def reports_bucket(env: Env, params: Mapping[str, Any]) -> ReportBucket:
    """The bucket in ``params["out_dir"]``, else in the ``REPORTS_DIR`` var.

    A relative folder is taken from the current directory.
    """
    if "out_dir" in params:
        folder = require_text(params, "out_dir")
    elif "REPORTS_DIR" in env and isinstance(env.REPORTS_DIR, str):
        folder = env.REPORTS_DIR
    else:
        raise InvalidParamsError("pass params.out_dir or set REPORTS_DIR in [vars] to a folder")
    return ReportBucket(Path(folder).absolute())


class ReportWorkflow(WorkflowEntrypoint):
    """Params: ``{"report_id": "q3-sales"}``, optionally ``"out_dir"``.

    Writes ``<out_dir>/<report_id>.json`` and returns where, and whether this
    run wrote it.
    """

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        params = require_mapping(event.payload, "params")
        report_id = require_key(params, "report_id")
        bucket = reports_bucket(self.env, params)

        raw = step.do(
            "fetch source data",
            lambda: fetch_report_data(report_id),
            retries={"limit": 5, "delay": "1 second", "backoff": "exponential"},
            timeout="30 seconds",
        )
        # Pure, so a retry is harmless without any idempotency check.
        report = step.do(
            "transform result",
            lambda: {
                "report_id": report_id,
                "item_count": len(raw["items"]),
                "total_cents": sum(item["amount_cents"] for item in raw["items"]),
            },
            retries={"limit": 1, "delay": "1 second", "backoff": "constant"},
        )

        def persist() -> dict[str, Any]:
            key = f"{report_id}.json"
            written = not bucket.exists(key)  # a previous attempt may have written it
            if written:
                bucket.put(key, report)
            return {"path": str(bucket.path(key)), "written": written}

        saved = step.do(
            "persist report",
            persist,
            retries={"limit": 3, "delay": "1 second", "backoff": "linear"},
        )
        return {**report, **saved}
