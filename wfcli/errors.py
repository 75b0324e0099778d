"""One hierarchy for every error wfcli raises.

Every class stores its facts as attributes and builds its message from them, so
the CLI can print ``str(error)`` as one line and tests can assert on fields.
Errors a user causes with bad input also derive from :class:`ValueError`.
"""

from __future__ import annotations

__all__ = [
    "AttemptLostError",
    "ConfigError",
    "InstanceBusyError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidStateError",
    "JournalCorruptError",
    "LeaseLostError",
    "NonRetryableError",
    "RollbackMissingError",
    "StepFailedError",
    "StepTimeoutError",
    "StoreFaultError",
    "StoreLocationError",
    "UnknownWorkflowError",
    "ValueTooLargeError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowTimeoutError",
]


class WorkflowError(Exception):
    """Base class of every error wfcli raises."""


class WorkflowInputError(WorkflowError, ValueError):
    """Bad input: a duration, step name, instance ID, retry config or value.

    Raised before anything is journaled; ``what`` names the input, ``reason``
    says what is wrong with it.
    """

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class ValueTooLargeError(WorkflowInputError):
    """A JSON value (params, step result, payload, output) is over the size limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(what, f"{size} bytes as JSON, over the limit of {limit} bytes")


class NonRetryableError(WorkflowError):
    """Raise inside a step callback to fail the step at once, without retries."""

    def __init__(self, message: str = "", name: str | None = None) -> None:
        self.message = message
        self.name = name or type(self).__name__
        super().__init__(message)


class StepFailedError(WorkflowError):
    """A ``step.do`` failed for good; raised identically on the first run and on replay.

    ``error_name`` and ``error_message`` describe the original error raised by the
    callback on its last attempt.
    """

    def __init__(self, step: str, error_name: str, error_message: str, attempts: int) -> None:
        self.step = step
        self.error_name = error_name
        self.error_message = error_message
        self.attempts = attempts
        plural = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"step {step!r} failed after {attempts} {plural}: {error_name}: {error_message}"
        )


class WorkflowTimeoutError(WorkflowError):
    """A wait or the whole instance ran out of time.

    ``step.wait_for_event`` reached its timeout without a matching event
    (``event_type``), ``step.wait_for_instance`` without the other instance
    finishing (``instance_id``), or the instance passed its workflow ``deadline``
    (``timeout`` in workflows.toml, ``wf run --timeout``) at ``step``.
    """

    def __init__(
        self,
        step: str,
        event_type: str | None = None,
        *,
        instance_id: str | None = None,
        deadline: str | None = None,
    ) -> None:
        self.step = step
        self.event_type = event_type
        self.instance_id = instance_id
        self.deadline = deadline
        if deadline is not None:
            message = f"the instance passed its deadline {deadline} at step {step!r}"
        elif instance_id is not None:
            message = f"step {step!r} timed out waiting for instance {instance_id!r}"
        else:
            message = f"step {step!r} timed out waiting for an event of type {event_type!r}"
        super().__init__(message)


class RollbackMissingError(WorkflowError):
    """A rollback to run after a restart of the process has no callback: the code no
    longer passes ``rollback=`` to step ``step``, or no longer reaches it."""

    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(
            f"step {step!r} was journaled with a rollback, and the code no longer "
            "gives it one (rollback= of step.do) where it reaches the step"
        )


class InstanceNotFoundError(WorkflowError):
    """No instance with this ID exists in the store."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"no instance with ID {instance_id!r}")


class InstanceExistsError(WorkflowError):
    """An instance with this ID already exists; nothing was written."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"an instance with ID {instance_id!r} already exists")


class InstanceBusyError(WorkflowError):
    """Another process holds the instance's lock and is executing it."""

    def __init__(self, instance_id: str, pid: int | None, host: str | None) -> None:
        self.instance_id = instance_id
        self.pid = pid
        self.host = host
        holder = f"process {pid}" if pid is not None else "another process"
        if host:
            holder += f" on {host}"
        super().__init__(f"instance {instance_id!r} is being executed by {holder}")


class InvalidStateError(WorkflowError):
    """The operation does not apply to the instance in its current status."""

    def __init__(self, instance_id: str, status: str, operation: str) -> None:
        self.instance_id = instance_id
        self.status = status
        self.operation = operation
        super().__init__(f"cannot {operation} instance {instance_id!r}: it is {status}")


class JournalCorruptError(WorkflowError):
    """A journal is damaged somewhere other than a torn last line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: corrupt journal: {reason}")


class UnknownWorkflowError(WorkflowError, ValueError):
    """No workflow of this name is bound in the configuration."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(known) if known else "none are configured"
        super().__init__(f"unknown workflow {name!r} (known: {choices})")


class ConfigError(WorkflowError, ValueError):
    """``workflows.toml`` (or a module it names) is wrong."""

    def __init__(
        self, path: str, reason: str, *, key: str | None = None, line: int | None = None
    ) -> None:
        self.path = path
        self.reason = reason
        self.key = key
        self.line = line
        where = path if line is None else f"{path}:{line}"
        subject = f" {key}:" if key else ""
        super().__init__(f"{where}:{subject} {reason}")


class StepTimeoutError(WorkflowError):
    """An attempt of a step ran longer than its timeout (the attempt fails and is retried)."""

    def __init__(self, step: str, attempt: int, timeout_seconds: float) -> None:
        self.step = step
        self.attempt = attempt
        self.timeout_seconds = timeout_seconds
        unit = "second" if timeout_seconds == 1 else "seconds"  # as a timeout is written
        super().__init__(
            f"attempt {attempt} of step {step!r} timed out after {timeout_seconds:g} {unit}"
        )


class StoreLocationError(WorkflowError, ValueError):
    """A store location (``--store``, ``WF_STORE``, ``[store]``) that names no usable store."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"store {location}: {reason}")


class LeaseLostError(WorkflowError):
    """The lease on an instance was lost (it expired, another worker took it over):
    its former holder writes nothing more and stops."""

    def __init__(self, instance_id: str, reason: str) -> None:
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"lost the lease on instance {instance_id!r}: {reason}")


class StoreFaultError(WorkflowError):
    """The store failed: an I/O error, a full disk, a read-only file system, a database
    that cannot be reached. Nothing journaled is lost and the instance is resumable
    once the fault is cleared; it is never the workflow's error."""

    def __init__(self, operation: str, where: str, reason: str) -> None:
        self.operation = operation
        self.where = where
        self.reason = reason
        super().__init__(f"store failed: {operation} {where}: {reason}")

    @classmethod
    def of(cls, operation: str, where: str, error: OSError) -> StoreFaultError:
        """The fault an ``OSError`` of ``operation`` on ``where`` is: its message and errno."""
        import errno

        code = errno.errorcode.get(error.errno or 0, "")
        reason = error.strerror or str(error)
        return cls(operation, where, f"{reason} ({code})" if code else reason)


class AttemptLostError(WorkflowError):
    """An attempt of a step started and never finished: the process running it died,
    or lost its lease. It counts against the step's retry limit like any failure."""

    def __init__(self, step: str, attempt: int, lost: int) -> None:
        self.step = step
        self.attempt = attempt
        self.lost = lost
        if lost == attempt:
            what = "its only attempt" if attempt == 1 else f"each of its {attempt} attempts"
            detail = f"the process running step {step!r} died during {what}"
        else:
            detail = f"the process running attempt {attempt} of step {step!r} died"
        super().__init__(detail + " (a crash, a kill, or a lost lease)")
