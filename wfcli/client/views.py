"""The view of one instance that ``wf status`` shows: :class:`InstanceStatus`, the
journal's state with what the lease and the inbox add."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wfcli.core.codec import (
    Diverged,
    ErrorInfo,
    JsonValue,
    format_optional_time,
    format_time,
)
from wfcli.core.owner import Owner
from wfcli.core.state import InstanceState, StepState, WaitInfo
from wfcli.core.summary import InstanceSummary, JournalSummary, shown_status

if TYPE_CHECKING:
    from wfcli.store.contract import JournalStore


__all__ = ["InstanceStatus", "snapshot"]


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
        "output": step.shown_output,
        "error": _error(step.error),
        "retry_at": format_optional_time(step.retry_at),
        "until": format_optional_time(step.until),
        "event_type": step.event_type,
        **({"instance_id": step.instance_id} if step.kind == "instance" else {}),
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
    holder: Owner | None
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
    def divergence(self) -> Diverged | None:
        """Why the instance is paused, when its code no longer fit its history."""
        return self.state.divergence

    @property
    def steps(self) -> list[StepState]:
        return self.state.ordered_steps()

    @property
    def finished(self) -> bool:
        return self.state.terminal

    @property
    def children(self) -> list[str]:
        """The instances its ``wait_for_instance`` steps wait or waited for."""
        return [
            step.instance_id
            for step in self.steps
            if step.kind == "instance" and step.instance_id is not None
        ]

    @classmethod
    def of(
        cls, state: InstanceState, holder: Owner | None, pending: tuple[str, ...]
    ) -> InstanceStatus:
        """The status of a journal's ``state`` whose lease ``holder`` and inbox
        (``pending``: its messages' actions) were looked up."""
        status = shown_status(state.status, holder, pending)
        return cls(state, status, state.status == "running" and holder is None, holder, pending)

    def summary(self) -> InstanceSummary:
        """The same snapshot without the steps."""
        return InstanceSummary.of(JournalSummary.of(self.state), self.holder, self.pending_messages)

    def to_json(self, *, steps: bool = True) -> dict[str, JsonValue]:
        """The document of ``wf status --json`` (schema in ``docs/cli-json.md``):
        :meth:`InstanceSummary.to_json`, where a fork came from, and the steps."""
        document = self.summary().to_json()
        state = self.state
        stopped = state.stopped
        if stopped is not None:
            document["stopped"] = {
                "at": format_time(stopped.at),
                "pid": stopped.pid,
                "host": stopped.host,
            }
        if state.deadline is not None:
            document["deadline"] = format_optional_time(state.deadline)
        if state.parent is not None:
            document["parent"] = state.parent
        if self.children:
            document["children"] = list(self.children)
        if state.rollback is not None:
            document["rollback"] = state.rollback.to_json()
        if state.forked_from is not None:
            source, step = state.forked_from
            document["forked_from"] = {"id": source, "step": step}
        if steps:
            document["steps"] = [_step_json(step) for step in self.steps]
        return document


def snapshot(store: JournalStore, state: InstanceState) -> InstanceStatus:
    """The status of the instance whose journal folds to ``state``, with its store's
    lease holder and pending inbox messages as they are now."""
    instance_id = state.instance_id
    pending = tuple(message.action for message in store.pending(instance_id))
    return InstanceStatus.of(state, store.holder(instance_id), pending)
