"""The Python client: create, run, inspect and control instances.

It mirrors Cloudflare's Workflow binding (``create``, ``get``, and on an
instance ``status``, ``pause``, ``resume``, ``terminate``, ``restart``,
``send_event``) and adds what a local runner needs: ``execute`` (run in the
foreground until the next suspension), ``list_instances``, ``history``, ``due`` and
``delete``. The CLI is a thin layer over this class.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from .clock import Clock, SystemClock
from .codec import (
    Created,
    ErrorInfo,
    InboxMessage,
    JsonValue,
    MessageAction,
    Record,
    check_json,
    format_optional_time,
    format_time,
    parse_time,
)
from .errors import (
    InstanceBusyError,
    InvalidStateError,
    JournalCorruptError,
    UnknownWorkflowError,
    WorkflowInputError,
)
from .ids import new_instance_id, validate_event_type, validate_instance_id, validate_step_name
from .journal import JournalStore, LockOwner
from .listing import InstanceIndex, JournalSummary
from .settings import Settings
from .state import STATUSES, TERMINAL_STATUSES, InstanceState, StepState, WaitInfo, fold

if TYPE_CHECKING:  # the executor and the step engine load when something executes
    from .executor import Executor
    from .step import RunObserver, StepInterceptor
    from .workflow import Env, WorkflowEntrypoint

__all__ = [
    "InstanceHandle",
    "InstanceStatus",
    "InstanceSummary",
    "WorkflowBinding",
    "WorkflowClient",
]


def _error(error: ErrorInfo | None) -> dict[str, JsonValue] | None:
    return None if error is None else error.to_json()


def _step_json(step: StepState) -> dict[str, JsonValue]:
    return {
        "name": step.name,
        "type": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "started": format_optional_time(step.started),
        "ended": format_optional_time(step.ended),
        "output": step.output,
        "error": _error(step.error),
        "retry_at": format_optional_time(step.retry_at),
        "until": format_optional_time(step.until),
        "event_type": step.event_type,
    }


@dataclass(frozen=True, slots=True)
class _Live:
    """What the lock and the inbox add to a journal's status."""

    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @classmethod
    def look(
        cls,
        store: JournalStore,
        instance_id: str,
        journal_status: str,
        inbox_ids: set[str] | None = None,
    ) -> _Live:
        """Ask the store; ``inbox_ids`` (:meth:`JournalStore.inbox_ids`) saves asking
        instances without an inbox for their messages."""
        holder = store.holder(instance_id)
        has_inbox = inbox_ids is None or instance_id in inbox_ids
        pending = store.pending(instance_id) if has_inbox else []
        status = journal_status
        if status == "running" and any(m.action == "pause" for m in pending):
            status = "waitingForPause"
        return cls(
            status=status,
            interrupted=journal_status == "running" and holder is None,
            holder=holder,
            pending_messages=tuple(m.action for m in pending),
        )


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """An instance as ``wf list`` shows it: its status without the steps.

    ``status`` is one of Cloudflare's statuses. ``interrupted`` is true when the
    journal says ``running`` but no process holds the instance (it crashed);
    ``wf resume`` recovers it. A pause requested while a step is in flight
    shows as ``waitingForPause``.
    """

    journal: JournalSummary
    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @classmethod
    def _of(cls, journal: JournalSummary, live: _Live) -> InstanceSummary:
        return cls(journal, live.status, live.interrupted, live.holder, live.pending_messages)

    @property
    def id(self) -> str:
        return self.journal.instance_id

    @property
    def workflow(self) -> str:
        return self.journal.workflow

    @property
    def created(self) -> datetime:
        return self.journal.created

    @property
    def started(self) -> datetime | None:
        return self._time_shown("started")

    @property
    def ended(self) -> datetime | None:
        return self._time_shown("ended")

    def _time_shown(self, key: str) -> datetime | None:
        text = self.journal.shown[key]
        return None if text is None else parse_time(cast(str, text))

    @property
    def output(self) -> JsonValue:
        return self.journal.shown["output"]

    @property
    def error(self) -> ErrorInfo | None:
        error = self.journal.shown["error"]
        return None if not isinstance(error, dict) else ErrorInfo(**cast(dict[str, str], error))

    @property
    def waiting(self) -> WaitInfo | None:
        return self.journal.waiting if self.status == "waiting" else None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, JsonValue]:
        """The document of ``wf list --json`` (schema in ``docs/cli-json.md``)."""
        shown = self.journal.shown
        wait = self.waiting
        return {
            "id": self.journal.instance_id,
            "workflow": self.journal.workflow,
            "status": self.status,
            "interrupted": self.interrupted,
            "params": shown["params"],
            "output": shown["output"],
            "error": shown["error"],
            "created": shown["created"],
            "started": shown["started"],
            "ended": shown["ended"],
            "waiting": None
            if wait is None
            else {
                "kind": wait.kind,
                "step": wait.step,
                "until": format_time(wait.until),
                "event_type": wait.event_type,
            },
            "holder": None
            if self.holder is None
            else {"pid": self.holder.pid, "host": self.holder.host},
            "pending": list(self.pending_messages),
            "warnings": list(cast(list[str], shown["warnings"])),
        }


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """A snapshot of an instance as ``wf status`` shows it: its summary and its steps.

    ``status``, ``interrupted``, ``holder`` and ``pending_messages`` mean what
    they mean in :class:`InstanceSummary`.
    """

    state: InstanceState
    status: str
    interrupted: bool
    holder: LockOwner | None
    pending_messages: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.state.instance_id

    @property
    def workflow(self) -> str:
        return self.state.workflow

    @property
    def output(self) -> JsonValue:
        return self.state.output

    @property
    def error(self) -> ErrorInfo | None:
        return self.state.error

    @property
    def waiting(self) -> WaitInfo | None:
        return self.state.waiting if self.status == "waiting" else None

    @property
    def steps(self) -> list[StepState]:
        return self.state.ordered_steps()

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def summary(self) -> InstanceSummary:
        """The same snapshot without the steps."""
        return InstanceSummary(
            JournalSummary.of(self.state),
            self.status,
            self.interrupted,
            self.holder,
            self.pending_messages,
        )

    def to_json(self, *, steps: bool = True) -> dict[str, JsonValue]:
        """The document of ``wf status --json`` (schema in ``docs/cli-json.md``):
        :meth:`InstanceSummary.to_json` plus the steps."""
        document = self.summary().to_json()
        if steps:
            document["steps"] = [_step_json(step) for step in self.steps]
        return document


class WorkflowClient:
    """Everything wfcli does to instances, from Python.

    ``workflows`` maps workflow names to classes; ``bindings`` maps binding
    names (``ORDER_FLOW``) to workflow names for ``self.env`` inside workflows;
    ``variables`` are the ``[vars]``.
    """

    def __init__(
        self,
        store: JournalStore,
        workflows: Mapping[str, type[WorkflowEntrypoint]],
        *,
        bindings: Mapping[str, str] | None = None,
        variables: Mapping[str, JsonValue] | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.workflows = dict(workflows)
        self.bindings = dict(bindings or {})
        self.variables = dict(variables or {})
        self.clock = clock or SystemClock()
        self.settings = settings or Settings()
        self._index = InstanceIndex(store)

    @cached_property
    def executor(self) -> Executor:
        """Runs this client's instances (made on first use: reading needs no executor)."""
        from .executor import Executor

        return Executor(self.store, self._resolve, self._env, self.clock, self.settings)

    def _resolve(self, workflow: str) -> type[WorkflowEntrypoint]:
        try:
            return self.workflows[workflow]
        except KeyError:
            raise UnknownWorkflowError(workflow, tuple(sorted(self.workflows))) from None

    def _env(self) -> Env:
        from .workflow import Env

        bindings = {name: WorkflowBinding(self, wf) for name, wf in self.bindings.items()}
        return Env(bindings, self.variables)

    # creating and running -----------------------------------------------------------

    def create(
        self, workflow: str, *, params: object = None, instance_id: str | None = None
    ) -> InstanceHandle:
        """Create a ``queued`` instance; nothing is written if any input is bad.

        Raises :class:`UnknownWorkflowError`, :class:`WorkflowInputError` (bad ID
        or params) or :class:`InstanceExistsError`.
        """
        self._resolve(workflow)
        chosen = new_instance_id() if instance_id is None else validate_instance_id(instance_id)
        encoded = check_json(params, "params", self.settings.max_value_bytes)
        record = Created(
            at=self.clock.now(), instance_id=chosen, workflow=workflow, params=json.loads(encoded)
        )
        self.store.create(record)
        return InstanceHandle(self, chosen)

    def execute(
        self,
        instance_id: str,
        *,
        observer: RunObserver | None = None,
        max_inline_wait: timedelta | None = None,
        cancel: Callable[[], bool] | None = None,
        interceptor: StepInterceptor | None = None,
    ) -> InstanceStatus:
        """Run the instance in this process until it completes, errors or suspends.

        Raises :class:`InstanceBusyError` if another process executes it.
        ``cancel`` is polled between steps (a worker's shutdown flag);
        ``interceptor`` is for :mod:`wfcli.testing`.
        """
        validate_instance_id(instance_id)
        state = self.executor.execute(
            instance_id,
            observer=observer,
            max_inline_wait=max_inline_wait,
            cancel=cancel,
            interceptor=interceptor,
        )
        # The executor's state is the journal as it left it: no second read and fold.
        return self._snapshot(state)

    def get(self, instance_id: str) -> InstanceHandle:
        """A handle to an existing instance."""
        self.status(instance_id)
        return InstanceHandle(self, instance_id)

    # reading ---------------------------------------------------------------------------

    def _state(self, instance_id: str) -> InstanceState:
        return fold(self.store.read(validate_instance_id(instance_id)))

    def _snapshot(self, state: InstanceState) -> InstanceStatus:
        live = _Live.look(self.store, state.instance_id, state.status)
        return InstanceStatus(
            state, live.status, live.interrupted, live.holder, live.pending_messages
        )

    def status(self, instance_id: str) -> InstanceStatus:
        """The instance's current status, from its journal, lock and inbox."""
        return self._snapshot(self._state(instance_id))

    def list_instances(
        self,
        *,
        workflow: str | None = None,
        statuses: Iterable[str] = (),
        limit: int | None = None,
        damaged: list[JournalCorruptError] | None = None,
    ) -> list[InstanceSummary]:
        """Instances, newest first, optionally filtered by workflow and status.

        Only journals changed since the last listing are read (see
        :mod:`wfcli.listing`). A damaged journal raises
        :class:`JournalCorruptError`, unless ``damaged`` is given: then it is
        skipped and its error appended there.
        """
        wanted = set(statuses)
        unknown = wanted - set(STATUSES)
        if unknown:
            raise WorkflowInputError(
                "status", f"{sorted(unknown)[0]!r} is not one of {', '.join(STATUSES)}"
            )
        if limit is not None and limit < 1:
            raise WorkflowInputError("limit", f"must be at least 1, got {limit}")
        found: list[InstanceSummary] = []
        inbox_ids = self.store.inbox_ids()
        summaries = self._index.summaries(damaged)
        self._index.save()
        for journal in summaries:
            if workflow is not None and journal.workflow != workflow:
                continue
            live = _Live.look(self.store, journal.instance_id, journal.status, inbox_ids)
            if wanted and live.status not in wanted:
                continue
            found.append(InstanceSummary._of(journal, live))
        found.sort(key=lambda s: (s.created, s.id), reverse=True)
        return found[:limit] if limit is not None else found

    def history(self, instance_id: str) -> list[Record]:
        """Every journaled record of the instance, oldest first."""
        return self.store.read(validate_instance_id(instance_id))

    def due(self, *, damaged: list[JournalCorruptError] | None = None) -> list[str]:
        """Instances a worker should execute now, oldest first.

        Queued ones, interrupted ones (journal says running, no process holds
        them), waiting ones whose time has come or whose event has arrived, and
        any with unapplied inbox messages. Damaged journals are handled as in
        :meth:`list_instances`. The index is kept in memory, not saved: a
        worker calls this every time it has a free slot.
        """
        now = self.clock.now()
        ready: list[tuple[datetime, str]] = []
        inbox_ids = self.store.inbox_ids()
        for journal in self._index.summaries(damaged):
            live = _Live.look(self.store, journal.instance_id, journal.status, inbox_ids)
            if self._is_due(journal, live, now):
                ready.append((journal.created, journal.instance_id))
        return [instance_id for _, instance_id in sorted(ready)]

    @staticmethod
    def _is_due(journal: JournalSummary, live: _Live, now: datetime) -> bool:
        if live.holder is not None:
            return False
        if live.pending_messages or journal.status == "queued" or live.interrupted:
            return True
        wait = journal.waiting
        if journal.status != "waiting" or wait is None:
            return False
        return wait.until <= now or journal.event_ready

    # controlling -------------------------------------------------------------------------

    def _post(self, instance_id: str, action: MessageAction, **fields: Any) -> InstanceStatus:
        message = InboxMessage(
            message_id=uuid.uuid4().hex, action=action, sent_at=self.clock.now(), **fields
        )
        self.store.post(instance_id, message)
        # If another process executes the instance, it applies the message itself.
        with contextlib.suppress(InstanceBusyError):
            self.executor.apply_inbox(instance_id)
        return self.status(instance_id)

    def _require_live(self, instance_id: str, operation: str) -> InstanceStatus:
        snapshot = self.status(instance_id)
        if snapshot.finished:
            raise InvalidStateError(instance_id, snapshot.status, operation)
        return snapshot

    def pause(self, instance_id: str) -> InstanceStatus:
        """Pause: at once if idle, else at the running step's end (``waitingForPause``)."""
        self._require_live(instance_id, "pause")
        return self._post(instance_id, "pause")

    def resume(self, instance_id: str) -> InstanceStatus:
        """Lift a pause (it does not execute; see :meth:`execute`)."""
        snapshot = self._require_live(instance_id, "resume")
        if snapshot.status not in ("paused", "waitingForPause"):
            return snapshot
        return self._post(instance_id, "resume")

    def terminate(self, instance_id: str) -> InstanceStatus:
        """Terminate: nothing more runs (a step in flight finishes first)."""
        self._require_live(instance_id, "terminate")
        return self._post(instance_id, "terminate")

    def restart(self, instance_id: str, *, from_step: str | None = None) -> InstanceStatus:
        """Start the instance over with the same ID and params; history is kept.

        With ``from_step``, steps journaled before that step keep their results.
        """
        snapshot = self.status(instance_id)
        if from_step is not None:
            validate_step_name(from_step)
            if from_step not in snapshot.state.steps:
                known = ", ".join(repr(s.name) for s in snapshot.steps) or "none"
                raise WorkflowInputError(
                    "from step",
                    f"instance {instance_id!r} has no step {from_step!r} (steps: {known})",
                )
        return self._post(instance_id, "restart", from_step=from_step)

    def send_event(
        self, instance_id: str, event_type: str, payload: object = None
    ) -> InstanceStatus:
        """Deliver an event; a waiting instance takes it, others buffer it by type."""
        validate_event_type(event_type)
        encoded = check_json(payload, "event payload", self.settings.max_value_bytes)
        self._require_live(instance_id, "send an event to")
        return self._post(instance_id, "event", event_type=event_type, payload=json.loads(encoded))

    def delete(self, instance_id: str) -> None:
        """Remove the instance and its journal. Raises :class:`InstanceBusyError` if it runs."""
        with self.store.acquire(validate_instance_id(instance_id), LockOwner.current()) as lease:
            lease.delete_instance()

    def binding(self, workflow: str) -> WorkflowBinding:
        """A Cloudflare-style binding for one workflow."""
        self._resolve(workflow)
        return WorkflowBinding(self, workflow)


class WorkflowBinding:
    """``env.ORDER_FLOW``: create instances of one workflow, or get them by ID."""

    def __init__(self, client: WorkflowClient, workflow: str) -> None:
        self.client = client
        self.workflow = workflow

    def create(self, *, params: object = None, id: str | None = None) -> InstanceHandle:
        """Create a queued instance (a worker or ``wf resume --due`` runs it)."""
        return self.client.create(self.workflow, params=params, instance_id=id)

    def create_batch(self, batch: Sequence[Mapping[str, Any]]) -> list[InstanceHandle]:
        """Create several instances; each item may have ``params`` and ``id``."""
        return [self.create(params=item.get("params"), id=item.get("id")) for item in batch]

    def get(self, id: str) -> InstanceHandle:
        return self.client.get(id)


class InstanceHandle:
    """One instance, by ID."""

    def __init__(self, client: WorkflowClient, instance_id: str) -> None:
        self.client = client
        self.id = instance_id

    def __repr__(self) -> str:
        return f"InstanceHandle({self.id!r})"

    def status(self) -> InstanceStatus:
        return self.client.status(self.id)

    def execute(self, **options: Any) -> InstanceStatus:
        return self.client.execute(self.id, **options)

    def pause(self) -> InstanceStatus:
        return self.client.pause(self.id)

    def resume(self) -> InstanceStatus:
        return self.client.resume(self.id)

    def terminate(self) -> InstanceStatus:
        return self.client.terminate(self.id)

    def restart(self, *, from_step: str | None = None) -> InstanceStatus:
        return self.client.restart(self.id, from_step=from_step)

    def send_event(self, type: str, payload: object = None) -> InstanceStatus:
        return self.client.send_event(self.id, type, payload)
