"""wfcli: durable workflows for Python, run from the command line.

Write a workflow as a :class:`WorkflowEntrypoint` whose ``run(event, step)``
calls ``step.do``, ``step.sleep``, ``step.sleep_until`` and
``step.wait_for_event``; every completed step is journaled, so a crashed,
sleeping or waiting instance resumes from its last completed step.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    ConfigError,
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    JournalCorruptError,
    NonRetryableError,
    StepFailedError,
    StepTimeoutError,
    UnknownWorkflowError,
    ValueTooLargeError,
    WorkflowError,
    WorkflowInputError,
    WorkflowTimeoutError,
)

if TYPE_CHECKING:
    from .client import (
        InstanceHandle,
        InstanceStatus,
        InstanceSummary,
        WorkflowBinding,
        WorkflowClient,
    )
    from .clock import Clock, FakeClock, SystemClock
    from .journal import FileStore, JournalStore, MemoryStore
    from .retry import RetryPolicy
    from .settings import Settings
    from .step import WorkflowStep
    from .workflow import Env, ReceivedEvent, StepContext, WorkflowEntrypoint, WorkflowEvent

    __version__: str

# Imported on first use: ``wf`` starts without loading the executor, and the
# package version is read from the installed metadata only when asked for.
_LAZY_NAMES = {
    "Clock": "clock",
    "Env": "workflow",
    "FakeClock": "clock",
    "FileStore": "journal",
    "InstanceHandle": "client",
    "InstanceStatus": "client",
    "InstanceSummary": "client",
    "JournalStore": "journal",
    "MemoryStore": "journal",
    "ReceivedEvent": "workflow",
    "RetryPolicy": "retry",
    "Settings": "settings",
    "StepContext": "workflow",
    "SystemClock": "clock",
    "WorkflowBinding": "client",
    "WorkflowClient": "client",
    "WorkflowEntrypoint": "workflow",
    "WorkflowEvent": "workflow",
    "WorkflowStep": "step",
}


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wfcli")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


def __getattr__(name: str) -> object:
    if name == "__version__":
        value: object = _installed_version()
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Clock",
    "ConfigError",
    "Env",
    "FakeClock",
    "FileStore",
    "InstanceBusyError",
    "InstanceExistsError",
    "InstanceHandle",
    "InstanceNotFoundError",
    "InstanceStatus",
    "InstanceSummary",
    "InvalidStateError",
    "JournalCorruptError",
    "JournalStore",
    "MemoryStore",
    "NonRetryableError",
    "ReceivedEvent",
    "RetryPolicy",
    "Settings",
    "StepContext",
    "StepFailedError",
    "StepTimeoutError",
    "SystemClock",
    "UnknownWorkflowError",
    "ValueTooLargeError",
    "WorkflowBinding",
    "WorkflowClient",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowInputError",
    "WorkflowStep",
    "WorkflowTimeoutError",
    "__version__",
]
