"""wfcli: durable workflows for Python, run from the command line.

Write a workflow as a :class:`WorkflowEntrypoint` whose ``run(event, step)``
calls ``step.do``, ``step.sleep``, ``step.sleep_until`` and
``step.wait_for_event``; every completed step is journaled, so a crashed,
sleeping or waiting instance resumes from its last completed step.
"""

from importlib.metadata import PackageNotFoundError, version

from .client import InstanceHandle, InstanceStatus, WorkflowBinding, WorkflowClient
from .clock import Clock, FakeClock, SystemClock
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
from .journal import FileStore, JournalStore, MemoryStore
from .retry import RetryPolicy
from .settings import Settings
from .step import WorkflowStep
from .workflow import Env, ReceivedEvent, StepContext, WorkflowEntrypoint, WorkflowEvent

try:
    __version__ = version("wfcli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

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
