"""Matching the steps a run asks for against an instance's recorded history (pure, no I/O).

:class:`HistoryMatcher` is fed the calls a run makes and says, step by step, whether
history has that step there, has ended, or departs from the code; it keeps a
:class:`Finding` for each departure. ``wf replay`` halts at the first divergence;
live execution runs the same check while the code is inside the recorded history, and
pauses the instance at a divergence before anything new runs. It also answers
``step.patched`` (:meth:`HistoryMatcher.patch`), and checks that the code honours the
patch decisions the history recorded.

Positions are 1-based places in the instance's step order, as ``wf status`` lists
steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from wfcli.core.codec import ErrorInfo, JsonValue, StepKind
from wfcli.core.state import InstanceState, StepState

__all__ = ["Finding", "FindingKind", "HistoryMatcher", "Verdict", "divergence_message"]

FindingKind = Literal[
    "new_step",
    "out_of_order",
    "changed_kind",
    "changed_event_type",
    "changed_timeout",
    "changed_patch",
    "changed_rollback",
    "duplicate_step",
    "unreached_step",
    "changed_outcome",
    "unknown_workflow",
]
Verdict = Literal["recorded", "end_of_history", "divergence"]

_TITLES: dict[str, str] = {
    "new_step": "step not in history",
    "out_of_order": "steps out of order",
    "changed_kind": "step kind changed",
    "changed_event_type": "event type changed",
    "changed_timeout": "event timeout changed",
    "changed_patch": "patch taken differently",
    "changed_rollback": "rollback removed",
    "duplicate_step": "duplicate step name",
    "unreached_step": "recorded step not reached",
    "changed_outcome": "different outcome",
    "unknown_workflow": "workflow not configured",
}
_SHOWN_JSON_CHARS = 80


def divergence_message(kind: str, position: int | None, expected: str, found: str) -> str:
    """What a finding (or a ``diverged`` record) says, for people."""
    where = "" if position is None else f" at position {position}"
    title = _TITLES.get(kind, kind)
    return f"{title}{where}: expected {expected}, found {found}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One place where the code departs from an instance's history.

    ``expected`` is what the history has there, ``found`` what the code does. A
    ``warning`` (a duplicate step name the history has too) does not make the
    instance divergent.
    """

    instance_id: str
    kind: FindingKind
    step: str | None
    position: int | None
    expected: str
    found: str
    warning: bool = False

    @property
    def message(self) -> str:
        """One line for people, naming the instance, the step and its position."""
        text = divergence_message(self.kind, self.position, self.expected, self.found)
        return f"instance {self.instance_id!r}: {text}"

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "instance": self.instance_id,
            "kind": self.kind,
            "severity": "warning" if self.warning else "divergence",
            "step": self.step,
            "position": self.position,
            "expected": self.expected,
            "found": self.found,
            "message": self.message,
        }


def _describe(step: StepState) -> str:
    return f"{step.name!r} ({step.kind})"


def _shown(value: JsonValue) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SHOWN_JSON_CHARS else text[: _SHOWN_JSON_CHARS - 3] + "..."


def _canonical(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True)


def _shown_error(error: ErrorInfo) -> str:
    return f"error {error.name}: {error.message}"


class HistoryMatcher:
    """Matches a run's step calls against one instance's recorded history.

    Calls are matched in groups: one per ``do``, ``sleep`` or ``wait_for_event``,
    and one per ``parallel`` call, whose branches the history may hold in any
    order. :meth:`called` collects a group's names; :meth:`match` matches the
    group when its first step is about to be served or run. ``matched`` counts
    the history steps the code asked for in order. After a ``"divergence"`` the
    matcher has nothing more to say. Not thread-safe: callers serialise.
    """

    def __init__(self, state: InstanceState) -> None:
        self.state = state
        self.history = state.ordered_steps()
        self.index_of = {step.name: index for index, step in enumerate(self.history)}
        # An instance that passed its deadline ended wherever it was: its code may go on.
        self.finished = state.status in ("complete", "errored") and not state.timed_out
        self.warned = {warning.step for warning in state.warnings}
        self.matched = 0
        self.findings: list[Finding] = []
        self._group: list[tuple[str, StepKind]] = []
        self._verdict: Verdict = "recorded"
        self._reported_duplicates: set[str] = set()
        self._asked: set[str] = set()
        self._answers: dict[str, bool] = {}
        # The old branches the history took, by the point they were taken at: the
        # code must ask about each before it goes past that point.
        self._old_branches = sorted(
            (decision.steps_before, name)
            for name, decision in state.patches.items()
            if not decision.applied
        )

    def _note(
        self,
        kind: FindingKind,
        step: str | None,
        position: int | None,
        expected: str,
        found: str,
        *,
        warning: bool = False,
    ) -> None:
        self.findings.append(
            Finding(self.state.instance_id, kind, step, position, expected, found, warning)
        )

    def _diverge(
        self, kind: FindingKind, step: str, position: int, expected: str, found: str
    ) -> Verdict:
        self._note(kind, step, position, expected, found)
        return "divergence"

    def _expected_next(self) -> str:
        if self.matched < len(self.history):
            return _describe(self.history[self.matched])
        if self.finished:
            return f"the end of the run (the instance is {self.state.status})"
        return "the end of the history"

    @property
    def inside(self) -> bool:
        """Whether the code is still inside the recorded history (it has steps left)."""
        return self._verdict == "recorded" and self.matched < len(self.history)

    @property
    def divergence(self) -> Finding | None:
        """The divergence found, if any (the matcher stops at the first)."""
        return next((finding for finding in self.findings if not finding.warning), None)

    # calls ------------------------------------------------------------------------------

    def called(self, name: str, kind: StepKind, count: int) -> bool:
        """Note the ``count``-th call of step ``name`` in this run; False if it diverges.

        A name called again (which returns its first call's result) is a warning
        when the history did the same, or past the end of an in-flight history;
        otherwise a divergence. The caller refuses a name reused for another kind
        of step before asking.
        """
        if count == 1:
            self._group.append((name, kind))
            return True
        if name in self._reported_duplicates:
            return True
        self._reported_duplicates.add(name)
        history_goes_on = self.matched < len(self.history) or self.finished
        position = self.matched + 1
        expected = self._expected_next()
        found = (
            f"{name!r} called again, returning the result of its first call "
            f"at position {self.index_of[name] + 1}"
        )
        if name in self.warned or not history_goes_on:
            self._note("duplicate_step", name, position, expected, found, warning=True)
            return True
        self._diverge("duplicate_step", name, position, expected, found)
        return False

    def takes(self, name: str, kind: StepKind) -> bool:
        """The common case at once: with no group pending, ``name`` is the next recorded
        step, of ``kind``; it is matched (True). Anything else is left to
        :meth:`called` and :meth:`match` (False, nothing noted)."""
        if self._group or self._old_branches or self.matched >= len(self.history):
            return False
        step = self.history[self.matched]
        if step.name != name or step.kind != kind:
            return False
        self.matched += 1
        self._verdict = "recorded"
        return True

    def match(self) -> Verdict:
        """Match the calls noted since the last match; the verdict on the current group.

        ``"recorded"``: history has the group's steps here (each may still be in
        flight); ``"end_of_history"``: an in-flight history ends inside the group;
        ``"divergence"``: the code departs from the history (a finding says where).
        """
        if self._group:
            group, self._group = self._group, []
            self._verdict = self._match_group(group)
        return self._verdict

    def _match_group(self, group: list[tuple[str, StepKind]]) -> Verdict:
        start = self.matched
        window = self.history[start : start + len(group)]
        available = {step.name: step for step in window}
        unmatched: list[tuple[str, StepKind]] = []
        for name, kind in group:
            step = available.pop(name, None)
            if step is None:
                unmatched.append((name, kind))
            elif step.kind != kind:
                return self._diverge(
                    "changed_kind",
                    name,
                    self.index_of[name] + 1,
                    f"{name!r} as a {step.kind} step",
                    f"{name!r} as a {kind} step",
                )
        if not unmatched:
            self.matched += len(group)
            return self._passed_old_branches(group[0][0]) if self._old_branches else "recorded"
        name, kind = unmatched[0]
        left = [step for step in window if step.name in available]
        if not left:  # the history ends inside this group
            if not self.finished:
                return "end_of_history"
            return self._diverge(
                "new_step", name, len(self.history) + 1, self._expected_next(), f"{name!r} ({kind})"
            )
        expected = left[0]
        position = self.index_of[expected.name] + 1
        recorded = self.index_of.get(name)
        if recorded is None:
            return self._diverge(
                "new_step", name, position, _describe(expected), f"{name!r} ({kind})"
            )
        return self._diverge(
            "out_of_order",
            name,
            position,
            _describe(expected),
            f"{name!r} ({kind}), recorded at position {recorded + 1}",
        )

    def _passed_old_branches(self, name: str) -> Verdict:
        """The code went on to step ``name``: it must have asked about every old branch
        the history took before that step."""
        while self._old_branches and self._old_branches[0][0] < self.matched:
            steps_before, patch = self._old_branches.pop(0)
            if patch not in self._asked:
                return self._diverge(
                    "changed_patch",
                    name,
                    steps_before + 1,
                    f"a call of patched({patch!r}), whose old branch this instance took",
                    f"{name!r} without asking about the patch",
                )
        return "recorded"

    def wait(self, name: str, event_type: str, timeout: timedelta) -> bool:
        """Check a recorded ``wait_for_event`` against the code's; False if it diverges.

        A wait still in flight that the code makes for another event type diverges
        (the instance would wait for something else than it recorded); a settled one
        only warns, as does another timeout (the recorded deadline stands).
        """
        step = self.state.steps[name]
        position = self.index_of[name] + 1
        settled = step.status in ("completed", "failed")
        if step.event_type is not None and step.event_type != event_type:
            expected = f"{name!r} waiting for {step.event_type!r}"
            found = f"{name!r} waiting for {event_type!r}"
            if not settled:
                self._verdict = self._diverge("changed_event_type", name, position, expected, found)
                return False
            self._note("changed_event_type", name, position, expected, found, warning=True)
        if not settled and step.until is not None and step.started is not None:
            recorded = step.until - step.started
            if recorded != timeout:
                self._note(
                    "changed_timeout",
                    name,
                    position,
                    f"a timeout of {recorded}",
                    f"a timeout of {timeout} (the recorded deadline stands)",
                    warning=True,
                )
        return True

    # patches ----------------------------------------------------------------------------

    def rollback(self, name: str, has_rollback: bool) -> bool:
        """The code calls recorded step ``name`` with a rollback or without; False
        (a divergence) if the history started it with one and the code has none now:
        a rollback of the instance would find nothing to run."""
        step = self.state.steps.get(name)
        if step is None or not step.has_rollback or has_rollback:
            return True
        self._note(
            "changed_rollback",
            name,
            self.index_of[name] + 1,
            f"step {name!r} with a rollback",
            "the step without one",
        )
        self._verdict = "divergence"
        return False

    def patch(self, name: str) -> bool:
        """``step.patched(name)``: the recorded answer, else True only where the code is
        past the recorded history doing new work (never for a finished run)."""
        self._asked.add(name)
        answer = self._answers.get(name)
        if answer is None:
            recorded = self.state.patches.get(name)
            answer = (
                recorded.applied if recorded is not None else not (self.inside or self.finished)
            )
            self._answers[name] = answer
        return answer

    @property
    def patches(self) -> dict[str, bool]:
        """The recorded patch decisions, with the answers given since (True: new branch)."""
        recorded = {name: patch.applied for name, patch in self.state.patches.items()}
        return {**recorded, **self._answers}

    def deprecated(self, name: str) -> bool:
        """``step.deprecate_patch(name)``; False (a divergence) if the instance took the
        patch's old branch, which the code no longer has."""
        self._asked.add(name)
        recorded = self.state.patches.get(name)
        if recorded is None or recorded.applied:
            return True
        self._note(
            "changed_patch",
            None,
            recorded.steps_before + 1,
            f"the old branch of patch {name!r}, which this instance took",
            f"deprecate_patch({name!r}): only the new branch",
        )
        self._verdict = "divergence"
        return False

    # the end of the run -------------------------------------------------------------------

    def finish(self, output: JsonValue, error: ErrorInfo | None) -> None:
        """The code returned ``output`` or raised ``error``: check what history has left."""
        found = (
            "the run returned" if error is None else f"the run raised {error.name}: {error.message}"
        )
        unreached = self.history[self.matched :]
        for index, step in enumerate(unreached, start=self.matched + 1):
            self._note("unreached_step", step.name, index, _describe(step), found)
        if unreached or not self.finished:
            return
        recorded_error = self.state.error
        if self.state.status == "complete":
            expected = f"output {_shown(self.state.output)}"
        else:
            assert recorded_error is not None
            expected = _shown_error(recorded_error)
        if error is not None:
            if error != recorded_error:
                self._note("changed_outcome", None, None, expected, _shown_error(error))
        elif recorded_error is not None or _canonical(output) != _canonical(self.state.output):
            self._note("changed_outcome", None, None, expected, f"output {_shown(output)}")
