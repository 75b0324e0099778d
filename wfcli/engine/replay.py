"""``wf replay``: does the current workflow code still fit the recorded histories?

Replay runs a workflow's ``run`` against an instance's journal with the real
:class:`~wfcli.engine.step.WorkflowStep` over a step source that holds only the
folded history: every step is served from the record, no callback runs, no wait
waits, and nothing can be written to any journal, lock or inbox (the workflow's
``self.env`` bindings refuse writes too). Where the code departs from the history,
the :class:`~wfcli.engine.history.HistoryMatcher` says exactly where: a step
history does not have while history goes on, steps out of order, a step whose kind
changed, a duplicate step name, recorded steps the code no longer reaches, or a
different outcome of a finished run. Reaching the end of the history of an
instance still in flight is not a divergence: replay stops there and the instance
is compatible.

Positions are 1-based places in the instance's step order, as ``wf status`` lists
steps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from wfcli.core.codec import ErrorInfo, JsonValue, StepKind, check_json
from wfcli.core.retry import RetryPolicy
from wfcli.core.settings import Settings
from wfcli.core.state import TERMINAL_STATUSES, InstanceState, StepState
from wfcli.engine.callbacks import Callback, CallbackRunner
from wfcli.engine.history import Finding, FindingKind, HistoryMatcher
from wfcli.engine.rollback import Rollback
from wfcli.engine.signals import RunSignal
from wfcli.engine.step import SETTLED, WorkflowStep, check_step_kind, served
from wfcli.engine.workflow import Env, ReceivedEvent, WorkflowEvent, freeze
from wfcli.errors import (
    StepFailedError,
    UnknownWorkflowError,
    WorkflowError,
)

if TYPE_CHECKING:
    from wfcli.engine.executor import WorkflowResolver

__all__ = [
    "Finding",
    "FindingKind",
    "ReplayOutcome",
    "ReplayReport",
    "ReplaySummary",
    "ReplayWriteError",
    "replay_history",
]

ReplayOutcome = Literal["returned", "raised", "end_of_history", "divergence"]


class ReplayWriteError(WorkflowError):
    """Something tried to write during a replay (a workflow using ``self.env`` outside a step)."""

    def __init__(self, operation: str, instance_id: str) -> None:
        self.operation = operation
        self.instance_id = instance_id
        super().__init__(f"replay writes nothing: refused to {operation} instance {instance_id!r}")


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What replaying one instance found.

    ``outcome`` says how the replay ended: the code returned or raised, it reached
    the end of an in-flight history, or it diverged. ``steps_replayed`` counts the
    history steps the code asked for in order, out of ``history_steps``. ``patches``
    are the patch decisions the journal recorded and those the code met on the way
    (True: the new branch), which an instance in flight will keep when it resumes.
    """

    instance_id: str
    workflow: str
    status: str
    outcome: ReplayOutcome
    steps_replayed: int
    history_steps: int
    findings: tuple[Finding, ...]
    patches: tuple[tuple[str, bool], ...] = ()

    @property
    def compatible(self) -> bool:
        return not self.divergences

    @property
    def divergences(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.warning]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.warning]

    def to_json(self) -> dict[str, JsonValue]:
        """One instance's entry in ``wf replay --json``; ``patches`` only when it has any."""
        document: dict[str, JsonValue] = {
            "id": self.instance_id,
            "workflow": self.workflow,
            "status": self.status,
            "compatible": self.compatible,
            "outcome": self.outcome,
            "steps_replayed": self.steps_replayed,
            "history_steps": self.history_steps,
            "findings": [finding.to_json() for finding in self.findings],
        }
        if self.patches:
            document["patches"] = dict(self.patches)
        return document


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """Counts over many reports; ``warnings`` counts warning findings; ``old_branches``
    names, per patch, the unfinished instances on its old branch."""

    instances: int
    compatible: int
    divergent: int
    warnings: int
    old_branches: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, reports: Sequence[ReplayReport]) -> ReplaySummary:
        compatible = sum(report.compatible for report in reports)
        old: dict[str, list[str]] = {}
        for report in reports:
            if report.status in TERMINAL_STATUSES:
                continue
            for patch, applied in report.patches:
                if not applied:
                    old.setdefault(patch, []).append(report.instance_id)
        return cls(
            instances=len(reports),
            compatible=compatible,
            divergent=len(reports) - compatible,
            warnings=sum(len(report.warnings) for report in reports),
            old_branches=tuple((patch, tuple(ids)) for patch, ids in sorted(old.items())),
        )

    def to_json(self) -> dict[str, JsonValue]:
        """``wf replay --json``'s summary; ``old_branches`` only when a patch has any."""
        document: dict[str, JsonValue] = {
            "instances": self.instances,
            "compatible": self.compatible,
            "divergent": self.divergent,
            "warnings": self.warnings,
        }
        if self.old_branches:
            document["old_branches"] = {patch: list(ids) for patch, ids in self.old_branches}
        return document


# --- the replay step source --------------------------------------------------------------


class _Halt(RunSignal):
    """Stops a replay: at a divergence, or at the end of an in-flight history."""


class _ReplaySource:
    """A :class:`~wfcli.engine.step.StepSource` that serves every step from a history.

    It holds the folded history and a :class:`HistoryMatcher`, nothing that
    reaches a store: no step it serves can write, run a callback or wait. Where
    the matcher finds a divergence, or the history ends, it halts the run.
    """

    def __init__(self, state: InstanceState, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self.matcher = HistoryMatcher(state)
        self.halted: Literal["divergence", "end_of_history"] | None = None
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()  # parallel branches ask from their own threads

    def _halt(self, why: Literal["divergence", "end_of_history"]) -> _Halt:
        self.halted = why
        return _Halt()

    def _note(self, name: str, kind: StepKind) -> int:
        if self.halted is not None:
            raise _Halt
        count = self._calls.get(name, 0) + 1
        self._calls[name] = count
        if count > 1:
            # Live execution refuses a name reused for another kind of step before it
            # writes anything; the workflow gets that error here as it would there.
            check_step_kind(self.state, name, kind)
        if not self.matcher.called(name, kind, count):
            raise self._halt("divergence")
        return count

    def enter(self, name: str, kind: StepKind) -> int:
        with self._lock:
            return self._note(name, kind)

    def enter_parallel(self, names: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._note(name, "do") for name in names]

    def _recorded(self, name: str, *, settled: bool = True) -> StepState:
        """The step to serve (``settled``: only a settled one), or halt."""
        with self._lock:
            if self.halted is not None:
                raise _Halt
            verdict = self.matcher.match()
            if verdict != "recorded":
                raise self._halt(verdict)
            step = self.state.steps[name]
            if settled and step.status not in SETTLED:
                raise self._halt("end_of_history")  # a step in flight: history ends here
            return step

    def do(
        self,
        name: str,
        callback: Callback,
        *,
        policy: RetryPolicy,
        timeout: timedelta,
        count: int,
        runner: CallbackRunner | None = None,
        sensitive: bool = False,
        rollback: Rollback | None = None,
    ) -> Any:
        step = self._recorded(name, settled=False)
        with self._lock:
            if count == 1 and not self.matcher.rollback(name, rollback is not None):
                raise self._halt("divergence")
        if step.status not in SETTLED:
            raise self._halt("end_of_history")  # a step in flight: history ends here
        return served(step)

    def sleep(self, name: str, until: Callable[[datetime], datetime]) -> None:
        served(self._recorded(name))

    def wait_for_event(self, name: str, event_type: str, timeout: timedelta) -> ReceivedEvent:
        step = self._recorded(name, settled=False)
        with self._lock:
            if self._calls[name] == 1 and not self.matcher.wait(name, event_type, timeout):
                raise self._halt("divergence")
        if step.status not in SETTLED:
            raise self._halt("end_of_history")  # a wait in flight: history ends here
        event: ReceivedEvent = served(step, event_type)
        return event

    def wait_for_instance(self, name: str, instance_id: str, timeout: timedelta) -> Any:
        return served(self._recorded(name))

    @property
    def instance_id(self) -> str:
        return self.state.instance_id

    def patched(self, name: str) -> bool:
        with self._lock:
            if self.halted is not None:
                raise _Halt
            return self.matcher.patch(name)

    def deprecate_patch(self, name: str) -> None:
        with self._lock:
            if self.halted is not None:
                raise _Halt
            if not self.matcher.deprecated(name):
                raise self._halt("divergence")


# --- replaying one history ---------------------------------------------------------------


def replay_history(
    state: InstanceState, resolve: WorkflowResolver, env: Env, settings: Settings
) -> ReplayReport:
    """Replay one instance's folded history (``state``) with the code ``resolve`` finds
    for its workflow, ``env`` as its bindings and vars; nothing can be written.

    A workflow that ``resolve`` no longer knows is reported as a divergence.
    """
    history_steps = len(state.steps)
    try:
        workflow = resolve(state.workflow)
    except UnknownWorkflowError as error:
        finding = Finding(
            state.instance_id,
            "unknown_workflow",
            None,
            None,
            f"workflow {state.workflow!r}",
            f"no such workflow (known: {', '.join(error.known) or 'none'})",
        )
        return ReplayReport(
            state.instance_id,
            state.workflow,
            state.status,
            "divergence",
            0,
            history_steps,
            (finding,),
        )
    source = _ReplaySource(state, settings)
    event = WorkflowEvent(
        payload=freeze(state.params),
        timestamp=state.created,
        instance_id=state.instance_id,
        workflow_name=state.workflow,
        schedule=freeze(state.schedule),
    )
    output: JsonValue = None
    raised: ErrorInfo | None = None
    try:
        returned = workflow(env).run(event, WorkflowStep(source))
        output = json.loads(check_json(returned, "workflow output", settings.max_value_bytes))
    except _Halt:
        pass  # source.halted says why
    except StepFailedError as error:  # the instance's error, as the executor records it
        raised = ErrorInfo(error.error_name, error.error_message)
    except Exception as error:
        raised = ErrorInfo.of(error)
    outcome: ReplayOutcome
    if source.halted is not None:  # also when the code caught the signal itself
        outcome = source.halted
    else:
        source.matcher.finish(output, raised)
        outcome = "returned" if raised is None else "raised"
    return ReplayReport(
        instance_id=state.instance_id,
        workflow=state.workflow,
        status=state.status,
        outcome=outcome,
        steps_replayed=source.matcher.matched,
        history_steps=history_steps,
        findings=tuple(source.matcher.findings),
        patches=tuple(source.matcher.patches.items()),
    )
