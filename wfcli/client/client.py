"""The Python client: create, run, inspect and control instances.

It mirrors Cloudflare's Workflow binding (``create``, ``get``, and on an
instance ``status``, ``pause``, ``resume``, ``terminate``, ``restart``,
``send_event``) and adds what a local runner needs: ``execute`` (run in the
foreground until the next suspension), ``list_instances``, ``history``, ``due``,
``claim_due``, ``deliver_event`` (an event's fate), ``plan_resume``, ``fork`` (a new
instance from another's steps) and ``delete``.
The CLI is a thin layer over this class.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from wfcli.core.clock import Clock, SystemClock
from wfcli.core.codec import (
    Created,
    InboxMessage,
    JsonValue,
    MessageAction,
    Record,
    check_json,
)
from wfcli.core.ids import (
    new_instance_id,
    validate_event_type,
    validate_instance_id,
    validate_step_name,
)
from wfcli.core.redaction import param_pointers
from wfcli.core.settings import Settings
from wfcli.core.state import InstanceState, fold, fork_journal
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    UnknownWorkflowError,
    WorkflowInputError,
)
from wfcli.store.contract import Claim, Damage, JournalStore, Lease, ListQuery, Owner

if TYPE_CHECKING:  # each loaded where it is used (the executor: when something executes)
    from wfcli.core.admission import ConcurrencyLimit
    from wfcli.engine.executor import Executor
    from wfcli.engine.step import RunObserver, StepInterceptor
    from wfcli.engine.workflow import Env, WorkflowEntrypoint
    from wfcli.store.exchange import ExportedInstance

__all__ = [
    "MAX_PRIORITY",
    "EventDelivery",
    "EventFate",
    "InstanceHandle",
    "WorkflowBinding",
    "WorkflowClient",
]

from wfcli.client.follow import JournalFollower
from wfcli.client.views import InstanceStatus, snapshot
from wfcli.core.summary import InstanceSummary

MAX_PRIORITY = 1000


class EventFate(Enum):
    """What became of an event :meth:`WorkflowClient.deliver_event` sent."""

    HOLDER_TAKES = "holder takes"
    """Another process executes the instance; it takes the event itself."""
    BUFFERED = "buffered"
    """The instance does not wait for that type now; a later wait for it takes the event."""
    TAKEN = "taken"
    """A process that held the instance took the event and let go of it meanwhile."""
    READY = "ready"
    """The instance waits for exactly this event and nobody executes it: execute it
    (:meth:`WorkflowClient.execute`) and it goes on."""


@dataclass(frozen=True, slots=True)
class EventDelivery:
    """The answer of :meth:`WorkflowClient.deliver_event`: the event's fate and the
    instance's status once it was sent."""

    fate: EventFate
    status: InstanceStatus


class WorkflowClient:
    """Everything wfcli does to instances, from Python.

    ``workflows`` maps workflow names to classes; ``bindings`` maps binding
    names (``ORDER_FLOW``) to workflow names for ``self.env`` inside workflows;
    ``variables`` are the ``[vars]``; ``versions`` maps workflow names to the
    ``version`` recorded on each new instance (display only, never a gate);
    ``limits`` are the workflows' concurrency and rate limits, which
    :meth:`claim_due` (a worker's) respects across every worker on the store;
    ``sensitive_params`` maps workflow names to the params keys views redact.
    ``timeouts`` to how long after creation each new instance's deadline is.
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
        versions: Mapping[str, str] | None = None,
        limits: Mapping[str, ConcurrencyLimit] | None = None,
        sensitive_params: Mapping[str, Sequence[str]] | None = None,
        timeouts: Mapping[str, timedelta] | None = None,
    ) -> None:
        self.store = store
        self.limits = dict(limits or {})
        self.timeouts = dict(timeouts or {})
        self.workflows = dict(workflows)
        self.versions = dict(versions or {})
        self.sensitive_params = {
            name: tuple(keys) for name, keys in (sensitive_params or {}).items()
        }
        self.bindings = dict(bindings or {})
        self.variables = dict(variables or {})
        self.clock = clock or SystemClock()
        self.settings = settings or Settings()

    @cached_property
    def executor(self) -> Executor:
        """Runs this client's instances (made on first use: reading needs no executor)."""
        from wfcli.engine.executor import Executor

        return Executor(self.store, self._resolve, self._env, self.clock, self.settings)

    def _resolve(self, workflow: str) -> type[WorkflowEntrypoint]:
        try:
            return self.workflows[workflow]
        except KeyError:
            raise UnknownWorkflowError(workflow, tuple(sorted(self.workflows))) from None

    def _env(self) -> Env:
        from wfcli.engine.workflow import Env

        bindings = {name: WorkflowBinding(self, wf) for name, wf in self.bindings.items()}
        return Env(bindings, self.variables)

    # creating and running -----------------------------------------------------------

    def create(
        self,
        workflow: str,
        *,
        params: object = None,
        instance_id: str | None = None,
        priority: int = 0,
        schedule: Mapping[str, JsonValue] | None = None,
        sensitive: bool = False,
        timeout: timedelta | None = None,
    ) -> InstanceHandle:
        """Create a ``queued`` instance; nothing is written if any input is bad. No
        ``params`` (None) means ``{}``.

        Views redact the params keys the workflow's ``sensitive_params`` name, or
        all of the params if ``sensitive``.

        ``priority``: workers admit higher numbers first (0 to 1000). ``schedule``
        is ``event.schedule`` for an instance a schedule starts. ``timeout`` (else
        the workflow's ``timeout``) sets its deadline, journaled with it. Created
        inside a step callback of another instance, that one is recorded as its
        parent; created by workflow code outside a step, it is refused (a resumed
        run would create it again).

        Raises :class:`UnknownWorkflowError`, :class:`WorkflowInputError` (bad ID,
        params, priority or timeout, or outside a step) or :class:`InstanceExistsError`.
        """
        from wfcli.engine.callbacks import running_workflow, step_instance

        parent = step_instance()
        if parent is None and running_workflow() is not None:
            raise WorkflowInputError(
                "create",
                "workflow code creates instances inside a step.do callback, so that a "
                "resumed run does not create them again",
            )
        self._resolve(workflow)
        if isinstance(priority, bool) or not 0 <= priority <= MAX_PRIORITY:
            raise WorkflowInputError(
                "priority", f"must be a whole number from 0 to {MAX_PRIORITY}, got {priority!r}"
            )
        keys = self.sensitive_params.get(workflow)
        chosen = new_instance_id() if instance_id is None else validate_instance_id(instance_id)
        given = {} if params is None else params
        encoded = check_json(given, "params", self.settings.max_value_bytes)
        limit = self.timeouts.get(workflow) if timeout is None else timeout
        if limit is not None and limit <= timedelta(0):
            raise WorkflowInputError("timeout", "must be longer than zero")
        now = self.clock.now()
        record = Created(
            at=now,
            instance_id=chosen,
            workflow=workflow,
            params=json.loads(encoded),
            version=self.versions.get(workflow),
            priority=priority or None,
            schedule=None if schedule is None else dict(schedule),
            sensitive_params=[""] if sensitive else param_pointers(keys) if keys else None,
            deadline=None if limit is None else now + limit,
            parent=parent,
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
        lease: Lease | None = None,
    ) -> InstanceStatus:
        """Run the instance in this process until it completes, errors or suspends.

        Raises :class:`InstanceBusyError` if another process executes it (a lease
        held for a moment, by a process applying the message it posted, is waited
        out). ``cancel`` is polled between steps (a worker's shutdown flag);
        ``interceptor`` is for :mod:`wfcli.testing`; ``lease`` is a lease already
        taken on the instance (:meth:`claim_due`).
        """
        validate_instance_id(instance_id)
        if lease is None:
            lease = self.store.acquire_patiently(instance_id, Owner.current())
        state = self.executor.execute(
            instance_id,
            observer=observer,
            max_inline_wait=max_inline_wait,
            cancel=cancel,
            interceptor=interceptor,
            lease=lease,
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
        return snapshot(self.store, state)

    def status(self, instance_id: str) -> InstanceStatus:
        """The instance's current status, from its journal, lock and inbox."""
        return self._snapshot(self._state(instance_id))

    def follow(self, instance_id: str) -> JournalFollower:
        """Follow the instance's journal as it grows (``wf status --watch``): each
        :meth:`JournalFollower.refresh` reads only the lines appended since the last."""
        return JournalFollower(self.store, validate_instance_id(instance_id))

    def list_instances(
        self,
        *,
        workflow: str | None = None,
        statuses: Iterable[str] = (),
        limit: int | None = None,
        version: str | None = None,
        old_branch: str | None = None,
        damaged: list[Damage] | None = None,
    ) -> list[InstanceSummary]:
        """Instances, newest first, optionally filtered by workflow, status, recorded
        ``version``, and ``old_branch``: the name of a patch whose old branch they took.

        A damaged journal raises :class:`JournalCorruptError`, unless ``damaged``
        is given: then it is skipped and its error appended there.
        """
        narrowed = version is not None or old_branch is not None
        query = ListQuery(
            workflow=workflow, statuses=frozenset(statuses), limit=None if narrowed else limit
        )
        found = self._listed(query, damaged)
        if not narrowed:
            return found
        found = [
            summary
            for summary in found
            if (version is None or summary.version == version)
            and (old_branch is None or summary.patches.get(old_branch) is False)
        ]
        return found[:limit] if limit is not None else found

    def history(self, instance_id: str) -> list[Record]:
        """Every journaled record of the instance, oldest first."""
        return self.store.read(validate_instance_id(instance_id))

    def due(self, *, damaged: list[Damage] | None = None) -> list[str]:
        """Instances a worker should execute now, oldest first.

        Queued ones, interrupted ones (journal says running, nobody holds them),
        waiting ones whose time has come or whose event has arrived, and any with
        unapplied inbox messages. Damaged journals are handled as in
        :meth:`list_instances`.
        """
        query = ListQuery(due_at=self.clock.now())
        return [summary.id for summary in self._listed(query, damaged)]

    def claim_due(self, limit: int, *, skip: Collection[str] = ()) -> Claim:
        """Leases on up to ``limit`` instances due now, for this process, within the
        client's :attr:`limits`, leaving out ``skip``: higher priority first, then
        oldest first; hand each lease to :meth:`execute`. Instances another process
        takes first are left out."""
        return self.store.claim_due(
            self.clock.now(), Owner.current(), limit, skip=skip, limits=self.limits
        )

    def queued_reason(self, status: InstanceStatus) -> str | None:
        """Why a worker does not start this queued instance now (a concurrency or rate
        limit), or None."""
        if status.status != "queued" or status.workflow not in self.limits:
            return None
        listing = self.store.list_instances(ListQuery(workflow=status.workflow))
        summary = next((s for s in listing.instances if s.id == status.id), None)
        if summary is None:
            return None
        from wfcli.core.admission import blocked_reason  # only a limited workflow's

        return blocked_reason(summary, self.limits, listing.instances, self.clock.now())

    def _listed(self, query: ListQuery, damaged: list[Damage] | None) -> list[InstanceSummary]:
        listing = self.store.list_instances(query)
        if damaged is None and listing.damaged:
            raise listing.damaged[0]
        if damaged is not None:
            damaged.extend(listing.damaged)
        return listing.instances

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

    def plan_resume(
        self,
        instance_ids: Iterable[str],
        *,
        due: bool = False,
        damaged: list[Damage] | None = None,
    ) -> list[str]:
        """The instances a resume of ``instance_ids`` goes through, each once: those, in
        order, then with ``due`` every due instance (:meth:`due`) not among them.

        Every named instance is checked first, so nothing is resumed if one cannot be:
        raises :class:`InstanceNotFoundError`, or :class:`InvalidStateError` for a
        finished one. Damaged journals met looking for due ones are as in :meth:`due`.
        """
        planned = list(dict.fromkeys(instance_ids))
        for instance_id in planned:
            self._require_live(instance_id, "resume")
        if due:
            named = set(planned)
            due_now = self.due(damaged=damaged)
            planned += [instance_id for instance_id in due_now if instance_id not in named]
        return planned

    def resume(self, instance_id: str) -> InstanceStatus:
        """Lift a pause (it does not execute; see :meth:`execute`)."""
        snapshot = self._require_live(instance_id, "resume")
        if snapshot.status not in ("paused", "waitingForPause"):
            return snapshot
        return self._post(instance_id, "resume")

    def terminate(self, instance_id: str, *, rollback: bool = False) -> InstanceStatus:
        """Terminate: nothing more runs (a step in flight finishes first).

        With ``rollback``, the rollbacks of its started steps run first (the
        instance is then due: :meth:`execute` runs them), and it ends ``terminated``.
        """
        self._require_live(instance_id, "terminate")
        return self._post(instance_id, "terminate", rollback=True if rollback else None)

    def restart(self, instance_id: str, *, from_step: str | None = None) -> InstanceStatus:
        """Start the instance over with the same ID and params; history is kept.

        With ``from_step``, steps journaled before that step keep their results.
        """
        state = self._state(instance_id)
        if from_step is not None:
            _check_step(state, from_step)
        return self._post(instance_id, "restart", from_step=from_step)

    def fork(self, instance_id: str, *, from_step: str, new_id: str) -> InstanceHandle:
        """Create ``new_id``, a queued copy of the instance that keeps the results of the
        steps before ``from_step`` and records where it came from; the original is not
        touched (it may even be running). Raises :class:`WorkflowInputError` for an
        unknown step or a bad ID, :class:`InstanceExistsError` if ``new_id`` is taken."""
        chosen = validate_instance_id(new_id)
        records = self.history(instance_id)
        _check_step(fold(records), from_step)
        self.store.import_journal(fork_journal(records, chosen, from_step, self.clock.now()))
        return InstanceHandle(self, chosen)

    def send_event(
        self, instance_id: str, event_type: str, payload: object = None, *, sensitive: bool = False
    ) -> InstanceStatus:
        """Deliver an event; a waiting instance takes it, others buffer it by type.

        With ``sensitive``, views show its payload as ``"[REDACTED]"``.
        """
        return self.deliver_event(instance_id, event_type, payload, sensitive=sensitive).status

    def deliver_event(
        self, instance_id: str, event_type: str, payload: object = None, *, sensitive: bool = False
    ) -> EventDelivery:
        """:meth:`send_event`, saying what became of the event (:class:`EventFate`)."""
        validate_event_type(event_type)
        encoded = check_json(payload, "event payload", self.settings.max_value_bytes)
        self._require_live(instance_id, "send an event to")
        current = self._post(
            instance_id,
            "event",
            event_type=event_type,
            payload=json.loads(encoded),
            sensitive=sensitive or None,
        )
        wait = current.waiting
        if current.holder is not None:
            fate = EventFate.HOLDER_TAKES
        elif wait is not None and wait.kind == "event" and wait.event_type == event_type:
            fate = EventFate.READY
        elif current.state.buffered_events(event_type) or "event" in current.pending_messages:
            fate = EventFate.BUFFERED
        else:
            fate = EventFate.TAKEN
        return EventDelivery(fate, current)

    def delete(self, instance_id: str) -> None:
        """Remove the instance and its journal. Raises :class:`InstanceBusyError` if it runs."""
        with self.store.acquire_patiently(
            validate_instance_id(instance_id), Owner.current()
        ) as lease:
            lease.delete_instance()

    # moving between stores -------------------------------------------------------------

    def export_instance(self, instance_id: str) -> ExportedInstance:
        """The instance's whole journal and unapplied messages (``wf export``), as they
        are now: a run in flight goes on after the snapshot."""
        validate_instance_id(instance_id)
        records = self.store.read(instance_id)
        from wfcli.store.exchange import ExportedInstance  # wf export only

        return ExportedInstance(instance_id, records, self.store.pending(instance_id))

    def import_instances(self, instances: Sequence[ExportedInstance]) -> None:
        """Create each instance with its journal and messages (``wf import``).

        Raises :class:`InstanceExistsError` before writing anything if an ID is taken.
        """
        for instance in instances:
            with contextlib.suppress(InstanceNotFoundError):
                self.store.read(validate_instance_id(instance.instance_id))
                raise InstanceExistsError(instance.instance_id)
        for instance in instances:
            self.store.import_journal(instance.records)
            for message in instance.messages:
                self.store.post(instance.instance_id, message)

    def binding(self, workflow: str) -> WorkflowBinding:
        """A Cloudflare-style binding for one workflow."""
        self._resolve(workflow)
        return WorkflowBinding(self, workflow)


def _check_step(state: InstanceState, step: str) -> None:
    """Raise :class:`WorkflowInputError` unless the instance has a step ``step``."""
    validate_step_name(step)
    if step not in state.steps:
        known = ", ".join(repr(s.name) for s in state.ordered_steps()) or "none"
        raise WorkflowInputError(
            "from step",
            f"instance {state.instance_id!r} has no step {step!r} (steps: {known})",
        )


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

    def terminate(self, *, rollback: bool = False) -> InstanceStatus:
        return self.client.terminate(self.id, rollback=rollback)

    def restart(self, *, from_step: str | None = None) -> InstanceStatus:
        return self.client.restart(self.id, from_step=from_step)

    def fork(self, *, from_step: str, new_id: str) -> InstanceHandle:
        return self.client.fork(self.id, from_step=from_step, new_id=new_id)

    def send_event(
        self, type: str, payload: object = None, *, sensitive: bool = False
    ) -> InstanceStatus:
        return self.client.send_event(self.id, type, payload, sensitive=sensitive)
