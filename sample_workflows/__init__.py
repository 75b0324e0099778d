"""Sample workflows bound in the repository's ``workflows.toml``.

Each runs in seconds against local fakes (``sample_workflows.fakes``): no
network, and deterministic, so the README's output is what you will see.
"""

from .approval import ApprovalWorkflow
from .brief import BriefAnalysisWorkflow
from .order import OrderWorkflow
from .report import ReportWorkflow
from .trip import TripWorkflow

__all__ = [
    "ApprovalWorkflow",
    "BriefAnalysisWorkflow",
    "OrderWorkflow",
    "ReportWorkflow",
    "TripWorkflow",
]
