"""The Python client (create, run, inspect and control instances), its views of
instances, and the worker that executes what is due."""

import importlib
from typing import TYPE_CHECKING

from wfcli.client.client import (
    EventDelivery,
    EventFate,
    InstanceHandle,
    WorkflowBinding,
    WorkflowClient,
)
from wfcli.client.views import InstanceStatus
from wfcli.core.summary import InstanceSummary

if TYPE_CHECKING:
    from wfcli.client.worker import NullWorkerEvents, Worker, WorkerEvents

_WORKER_NAMES = ("NullWorkerEvents", "Worker", "WorkerEvents")  # only `wf worker` needs them


def __getattr__(name: str) -> object:
    if name not in _WORKER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module("wfcli.client.worker"), name)
    globals()[name] = value
    return value


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
