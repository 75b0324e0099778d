"""wfcli: durable workflows for Python, run from the command line.

Write a workflow as a :class:`WorkflowEntrypoint` whose ``run(event, step)``
calls ``step.do``, ``step.sleep``, ``step.sleep_until`` and
``step.wait_for_event``; every completed step is journaled, so a crashed,
sleeping or waiting instance resumes from its last completed step.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wfcli.errors import (
    ConfigError,
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    JournalCorruptError,
    NonRetryableError,
    RollbackMissingError,
    StepFailedError,
    StepTimeoutError,
    UnknownWorkflowError,
    ValueTooLargeError,
    WorkflowError,
    WorkflowInputError,
    WorkflowTimeoutError,
)

if TYPE_CHECKING:
    from wfcli.client.client import InstanceHandle, WorkflowBinding, WorkflowClient
    from wfcli.client.views import InstanceStatus
    from wfcli.core.clock import Clock, FakeClock, SystemClock
    from wfcli.core.retry import RetryPolicy
    from wfcli.core.settings import Settings
    from wfcli.core.summary import InstanceSummary
    from wfcli.engine.step import WorkflowStep
    from wfcli.engine.workflow import (
        Env,
        ReceivedEvent,
        RollbackContext,
        StepConfig,
        StepContext,
        WorkflowEntrypoint,
        WorkflowEvent,
    )
    from wfcli.store.contract import JournalStore
    from wfcli.store.files.store import FileStore
    from wfcli.store.memory import MemoryStore

    __version__: str

# Imported on first use: ``wf`` starts without loading the executor, and the
# package version is read from the installed metadata only when asked for.
_LAZY_NAMES = {
    "Clock": "wfcli.core.clock",
    "Env": "wfcli.engine.workflow",
    "FakeClock": "wfcli.core.clock",
    "FileStore": "wfcli.store",
    "InstanceHandle": "wfcli.client",
    "InstanceStatus": "wfcli.client",
    "InstanceSummary": "wfcli.client",
    "JournalStore": "wfcli.store",
    "MemoryStore": "wfcli.store",
    "ReceivedEvent": "wfcli.engine.workflow",
    "RetryPolicy": "wfcli.core.retry",
    "Settings": "wfcli.core.settings",
    "RollbackContext": "wfcli.engine.workflow",
    "StepConfig": "wfcli.engine.workflow",
    "StepContext": "wfcli.engine.workflow",
    "SystemClock": "wfcli.core.clock",
    "WorkflowBinding": "wfcli.client",
    "WorkflowClient": "wfcli.client",
    "WorkflowEntrypoint": "wfcli.engine.workflow",
    "WorkflowEvent": "wfcli.engine.workflow",
    "WorkflowStep": "wfcli.engine.step",
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
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
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
    "RollbackContext",
    "RollbackMissingError",
    "Settings",
    "StepConfig",
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
