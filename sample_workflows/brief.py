"""``brief-analysis``: classify a brief, look things up in parallel, analyse it,
start a report workflow for it, save the analysis.

Seed 003's workflow (without its five-minute wait before notifying). The
child report is started through ``self.env.REPORT_FLOW`` under an ID derived
from this instance's, so a retried step finds it instead of starting another.
"""

from __future__ import annotations

from typing import Any

from wfcli import (
    InstanceExistsError,
    NonRetryableError,
    WorkflowBinding,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

from .fakes import classify_brief, generate_analysis, load_user, search_skills
from .params import require_key, require_mapping, require_text
from .report import reports_bucket

__all__ = ["BriefAnalysisWorkflow"]


class BriefAnalysisWorkflow(WorkflowEntrypoint):
    """Params: ``{"project_id": "p-42", "user_id": "u-1", "brief_text": "..."}``.

    Saves ``<REPORTS_DIR>/analysis-<project_id>.json`` and queues a
    ``report-flow`` instance ``report-<this instance's ID>``.
    """

    def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        params = require_mapping(event.payload, "params")
        project_id = require_key(params, "project_id")
        user_id = require_key(params, "user_id")
        brief_text = require_text(params, "brief_text")
        bucket = reports_bucket(self.env, params)
        quick_retries = {"limit": 3, "delay": "1 second", "backoff": "exponential"}

        classification = step.do(
            "classify-intent", lambda: classify_brief(brief_text), retries=quick_retries
        )
        skills, user = step.parallel(
            {
                "retrieve-skills": lambda: search_skills(brief_text, classification["domain"]),
                "load-user-profile": lambda: load_user(user_id),
            },
            retries=quick_retries,
        )
        analysis = step.do(
            "generate-analysis",
            lambda: generate_analysis(brief_text, classification, skills, user),
            retries=quick_retries,
            timeout="2 minutes",
        )

        def start_report() -> str:
            child_id = f"report-{event.instance_id}"
            binding: WorkflowBinding = self.env.REPORT_FLOW
            report_params = {"report_id": f"brief-{project_id}"}
            if "out_dir" in params:
                report_params["out_dir"] = params["out_dir"]
            try:
                return binding.create(params=report_params, id=child_id).id
            except InstanceExistsError:
                # Created by an earlier attempt whose result was not journaled.
                existing = binding.get(child_id).status()
                if existing.workflow != binding.workflow:
                    raise NonRetryableError(
                        f"instance {child_id!r} exists but runs {existing.workflow!r}"
                    ) from None
                return child_id

        report_instance = step.do("start-report", start_report, retries=quick_retries)

        # An UPDATE, as in the seed: writing the same analysis again is harmless.
        saved = step.do(
            "save-results",
            lambda: str(bucket.put(f"analysis-{project_id}.json", analysis)),
            retries=quick_retries,
        )
        return {
            "project_id": project_id,
            "domain": classification["domain"],
            "skills": skills,
            "report_instance": report_instance,
            "analysis_path": saved,
        }
