"""``wf replay`` over a store: the instances to replay, and bindings that refuse writes.

Each instance's journal is read and folded, then replayed by
:func:`~wfcli.engine.replay.replay_history` with the client's current workflow code;
the workflow's ``self.env`` bindings read through the client and refuse every write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from wfcli.core.codec import MessageAction, check_json
from wfcli.core.ids import new_instance_id, validate_instance_id
from wfcli.core.state import InstanceState, fold
from wfcli.engine.replay import ReplayReport, ReplayWriteError, replay_history
from wfcli.engine.workflow import Env
from wfcli.errors import InstanceNotFoundError
from wfcli.store.contract import ListQuery

if TYPE_CHECKING:
    from wfcli.client.client import WorkflowClient
    from wfcli.client.views import InstanceStatus

__all__ = ["replay_instance", "replay_many"]


# --- bindings that refuse writes -------------------------------------------------------


class _ReplayBinding:
    """``self.env.FLOW`` during a replay: reads go to the client, writes raise.

    It has only the binding's methods; anything that would create or signal an
    instance raises :class:`ReplayWriteError` after the checks the client makes
    first, so the workflow sees the error it would have seen had nothing been
    refused.
    """

    def __init__(self, client: WorkflowClient, workflow: str) -> None:
        self._client = client
        self._workflow = workflow

    def create(self, *, params: object = None, id: str | None = None) -> NoReturn:
        self._client.executor.resolve(self._workflow)
        chosen = new_instance_id() if id is None else validate_instance_id(id)
        check_json(params, "params", self._client.settings.max_value_bytes)
        raise ReplayWriteError("create", chosen)

    def create_batch(self, batch: Sequence[Mapping[str, Any]]) -> list[_ReplayHandle]:
        return [self.create(params=item.get("params"), id=item.get("id")) for item in batch]

    def get(self, id: str) -> _ReplayHandle:
        self._client.status(id)
        return _ReplayHandle(self._client, id)


class _ReplayHandle:
    """An instance handle during a replay: ``status()`` reads, everything else raises."""

    def __init__(self, client: WorkflowClient, instance_id: str) -> None:
        self._client = client
        self.id = instance_id

    def __repr__(self) -> str:
        return f"InstanceHandle({self.id!r})"

    def status(self) -> InstanceStatus:
        return self._client.status(self.id)

    def _post(self, action: MessageAction) -> NoReturn:
        raise ReplayWriteError(f"post a {action!r} message to", self.id)

    def execute(self, **options: Any) -> NoReturn:
        raise ReplayWriteError("append to the journal of", self.id)

    def pause(self) -> NoReturn:
        self._post("pause")

    def resume(self) -> NoReturn:
        self._post("resume")

    def terminate(self) -> NoReturn:
        self._post("terminate")

    def restart(self, *, from_step: str | None = None) -> NoReturn:
        self._post("restart")

    def send_event(self, type: str, payload: object = None) -> NoReturn:
        self._post("event")


def _replay_env(client: WorkflowClient) -> Env:
    bindings = {name: _ReplayBinding(client, wf) for name, wf in client.bindings.items()}
    return Env(bindings, client.variables)


def _replay(client: WorkflowClient, state: InstanceState) -> ReplayReport:
    return replay_history(state, client.executor.resolve, _replay_env(client), client.settings)


def replay_instance(client: WorkflowClient, instance_id: str) -> ReplayReport:
    """Replay one instance with the client's current workflow code.

    Raises :class:`~wfcli.errors.InstanceNotFoundError` or
    :class:`~wfcli.errors.JournalCorruptError`; a workflow that is no longer
    configured is reported as a divergence.
    """
    return _replay(client, fold(client.store.read(validate_instance_id(instance_id))))


def _selected(
    client: WorkflowClient, workflow: str | None, statuses: Iterable[str]
) -> list[InstanceState]:
    """Every instance of ``workflow`` in ``statuses`` (as ``wf list`` shows them), newest
    first; read journal by journal, since a store's listing may save an index."""
    query = ListQuery(workflow=workflow, statuses=frozenset(statuses))
    snapshots: dict[str, InstanceStatus] = {}
    for instance_id in client.store.instance_ids():
        try:
            snapshots[instance_id] = client.status(instance_id)
        except InstanceNotFoundError:
            continue  # deleted since the IDs were taken
    chosen = query.select(snapshot.summary() for snapshot in snapshots.values())
    return [snapshots[summary.id].state for summary in chosen]


def replay_many(
    client: WorkflowClient,
    instance_ids: Iterable[str] | None = None,
    *,
    workflow: str | None = None,
    statuses: Iterable[str] = (),
) -> list[ReplayReport]:
    """Replay the given instances, or with ``instance_ids=None`` every instance
    (newest first), optionally only those of ``workflow`` and in ``statuses``."""
    if instance_ids is None:
        return [_replay(client, state) for state in _selected(client, workflow, statuses)]
    return [replay_instance(client, instance_id) for instance_id in instance_ids]
