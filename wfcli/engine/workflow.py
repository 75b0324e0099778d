"""The authoring API: what a workflow class subclasses and receives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from wfcli.core.codec import JsonValue
from wfcli.core.retry import RetryPolicy

if TYPE_CHECKING:
    from wfcli.engine.step import WorkflowStep
    from wfcli.errors import StepFailedError

__all__ = [
    "Env",
    "ReceivedEvent",
    "RollbackContext",
    "StepConfig",
    "StepContext",
    "WorkflowEntrypoint",
    "WorkflowEvent",
    "freeze",
]


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError("event.payload is read-only; copy it to change it")


class _FrozenDict(dict[str, Any]):
    """A dict that refuses changes (still a dict, so ``json.dumps`` takes it)."""

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse


class _FrozenList(list[Any]):
    """A list that refuses changes (still a list: ``isinstance``, ``==`` and
    ``json.dumps`` see one)."""

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = __iadd__ = __imul__ = _refuse


def freeze(value: JsonValue) -> Any:
    """A read-only deep copy of a JSON value: dicts and lists that refuse changes."""
    if isinstance(value, dict):
        return _FrozenDict((key, freeze(item)) for key, item in value.items())
    if isinstance(value, list):
        return _FrozenList(freeze(item) for item in value)
    return value


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """What ``run`` receives: the params and facts about the instance.

    ``schedule`` is set for an instance a schedule started: a read-only mapping with
    ``schedule`` (its name in ``wf schedules``), ``cron``, ``timezone`` and
    ``scheduled_time`` (the fire time, UTC, as text), and ``manual`` when it was
    triggered by hand (``wf schedules --trigger``).
    """

    payload: Any
    timestamp: datetime
    instance_id: str
    workflow_name: str
    schedule: Any = None


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event returned by ``step.wait_for_event``."""

    type: str
    payload: Any
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's resolved options: its retry policy and its per-attempt timeout."""

    retries: RetryPolicy
    timeout: timedelta


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step callback that takes one argument."""

    attempt: int
    name: str
    count: int
    config: StepConfig


@dataclass(frozen=True, slots=True)
class RollbackContext:
    """Handed to a rollback callback that takes one argument.

    ``output`` is the step's result (None if it failed or never finished),
    ``error`` its failure (None if it completed), ``name`` the step's name,
    ``attempt`` the rollback's attempt (1-based) and ``config`` the rollback's
    resolved retries and timeout.
    """

    output: Any
    error: StepFailedError | None
    name: str
    attempt: int
    config: StepConfig


class Env:
    """The project's bindings (``env.ORDER_FLOW``) and ``[vars]`` (``env.API_URL``)."""

    def __init__(self, bindings: Mapping[str, object], variables: Mapping[str, JsonValue]) -> None:
        self._values: dict[str, object] = {**dict(variables), **dict(bindings)}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            raise AttributeError(f"env has no binding or var {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._values


class WorkflowEntrypoint(ABC):
    """Subclass this and implement :meth:`run`; ``self.env`` holds bindings and vars."""

    def __init__(self, env: Env) -> None:
        self.env = env

    @abstractmethod
    def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        """The workflow. Its JSON return value is the instance's output."""
