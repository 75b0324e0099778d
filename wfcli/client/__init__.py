"""The Python client (create, run, inspect and control instances), its views of
instances, and the worker that executes what is due."""

from wfcli.client.client import (
    EventDelivery,
    EventFate,
    InstanceHandle,
    WorkflowBinding,
    WorkflowClient,
)
from wfcli.client.views import InstanceStatus
from wfcli.client.worker import NullWorkerEvents, Worker, WorkerEvents
from wfcli.core.summary import InstanceSummary

__all__ = [
    "EventDelivery",
    "EventFate",
    "InstanceHandle",
    "InstanceStatus",
    "InstanceSummary",
    "NullWorkerEvents",
    "Worker",
    "WorkerEvents",
    "WorkflowBinding",
    "WorkflowClient",
]
