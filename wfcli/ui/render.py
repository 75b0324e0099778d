"""What ``wf`` shows people: tables, status pages and live views of a run.

Functions here take data and return something to print: a rich renderable for
a terminal, or plain aligned text (no box drawing, no colour) when ``plain`` is
true, for pipes and logs. Nothing here reads journals or decides exit codes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from rich import box
from rich.console import Group, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from wfcli.core.codec import Diverged, ErrorInfo, Record, StepKind, record_to_json
from wfcli.core.durations import format_duration
from wfcli.core.redaction import shown_record
from wfcli.engine.history import divergence_message

if TYPE_CHECKING:
    from wfcli.client.schedules import ScheduleReport
    from wfcli.client.views import InstanceStatus
    from wfcli.core.state import PatchDecision, StepState
    from wfcli.core.summary import InstanceSummary
    from wfcli.engine.replay import ReplayReport, ReplaySummary

__all__ = [
    "GatheredLines",
    "LineRunLog",
    "LineSink",
    "LiveRunView",
    "WorkflowRow",
    "continuation_hint",
    "history_table",
    "instances_table",
    "run_summary",
    "status_line",
    "status_view",
    "termination_line",
    "tracebacks_view",
    "workflows_view",
]

Now = Callable[[], datetime]
Cell = str | Text

_STATUS_STYLES = {
    "complete": "green",
    "errored": "red",
    "terminated": "magenta",
    "waiting": "yellow",
    "paused": "yellow",
    "waitingForPause": "yellow",
    "queued": "cyan",
    "running": "cyan",
}
_DETAIL_WIDTH = 60
_NONE = "-"


# --- small formatters --------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    """A time for people: local time to the second, with its zone (``UTC`` where the
    machine keeps UTC)."""
    if moment is None:
        return _NONE
    local = moment.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _zone(now: datetime) -> str:
    """The local zone's name, for a column of times: ``'time (UTC)'``."""
    return now.astimezone().tzname() or "local"


def _cell_time(moment: datetime | None, now: datetime, plain: bool) -> str:
    """A time in a table cell, local (its header names the zone): in full when plain,
    else as short as ``ls -l`` has it."""
    if moment is None:
        return _NONE
    local, today = moment.astimezone(), now.astimezone()
    if plain:
        return local.strftime("%Y-%m-%d %H:%M:%S")
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    if local.year == today.year:
        return local.strftime("%b %d %H:%M")
    return local.strftime("%Y-%m-%d")


def _clock_time(moment: datetime) -> str:
    local = moment.astimezone()
    return f"{local:%H:%M:%S} {local.tzname()}"


def _until(moment: datetime, now: datetime) -> str:
    """``'12:00:05 (in 4.0s)'``: a wake time and how far off it is."""
    left = moment - now
    distance = f"in {format_duration(left)}" if left > timedelta(0) else "due now"
    return f"{_when(moment)} ({distance})"


def _shorten(text: str, width: int = _DETAIL_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return _NONE
    return f"{error.name}: {error.message}" if error.message else error.name


def _status_cell(status: str, plain: bool, text: str | None = None) -> Cell:
    """``text`` (default: the status itself) coloured by ``status`` on a terminal."""
    shown = status if text is None else text
    return shown if plain else Text(shown, style=_STATUS_STYLES.get(status, ""))


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], plain: bool, *, cut_last: bool = False
) -> RenderableType:
    """A table: rich with a box on a terminal, aligned columns of plain text otherwise.

    On a terminal the last column takes the width left and wraps, or with ``cut_last``
    ends in an ellipsis at the terminal's edge (one line per row); plain text is
    never cut.
    """
    if not plain:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        for index, header in enumerate(headers):
            free_text = index == len(headers) - 1  # only the last column wraps (or is cut)
            table.add_column(header, no_wrap=not free_text, overflow="fold")
        for *fixed, last in rows:
            # A cut column still gives way first, but each of its cells stays one line.
            cell = Text(str(last), no_wrap=True, overflow="ellipsis") if cut_last else last
            table.add_row(*fixed, cell)
        return table
    lines = [[h.upper() for h in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    text = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
    return Text(text)


def _fields(pairs: Sequence[tuple[str, Cell]], plain: bool) -> RenderableType:
    """``key  value`` lines, keys aligned."""
    if plain:
        width = max(len(key) for key, _ in pairs)
        return Text("\n".join(f"{key.ljust(width)}  {value}" for key, value in pairs))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(key, value)
    return grid


# --- one instance -------------------------------------------------------------------


def divergence_text(divergence: Diverged) -> str:
    """Why an instance is paused as diverged, in a line."""
    step = "" if divergence.step is None else f"step {divergence.step!r}: "
    return step + divergence_message(
        divergence.kind, divergence.position, divergence.expected, divergence.found
    )


def status_line(status: InstanceStatus) -> str:
    """The status word with what qualifies it: diverged, interrupted, held by a process."""
    text = status.status
    if status.divergence is not None:
        text += f" (diverged: {divergence_text(status.divergence)})"
    elif status.interrupted:
        text += " (interrupted: no process holds it)"
    elif status.holder is not None and not status.finished:
        text += f" (process {status.holder.pid} on {status.holder.host})"
    elif status.status == "queued" and status.state.stopped is not None:
        stopped = status.state.stopped
        text += f" (its worker, process {stopped.pid} on {stopped.host}, was stopped)"
    return text


def termination_line(status: InstanceStatus) -> str:
    """What ``wf terminate`` answers: ``terminated``, or, when a process executing the
    instance applies the request itself, that the termination was requested."""
    if "terminate" in status.pending_messages and status.holder is not None:
        return (
            f"{status.id}: termination requested; process {status.holder.pid}, "
            "which executes it, terminates it when the step in flight ends"
        )
    return f"{status.id}: {status_line(status)}"


def _waiting_text(status: InstanceStatus, now: datetime) -> str | None:
    wait = status.waiting
    if wait is None:
        return None
    if wait.kind == "event":
        return f"event {wait.event_type!r} (step {wait.step!r}) until {_until(wait.until, now)}"
    step = status.state.steps.get(wait.step)
    if wait.kind == "instance" and step is not None:
        again = _until(wait.until, now)
        return f"instance {step.instance_id!r} (step {wait.step!r}), looks again {again}"
    return f"{wait.kind} (step {wait.step!r}) until {_until(wait.until, now)}"


def _step_detail(step: StepState, now: datetime) -> str:
    if step.status == "completed":
        return _shorten(_json_text(step.shown_output))
    if step.status == "failed":
        return _shorten(_error_text(step.error))
    if step.retry_at is not None:
        return _shorten(f"retry at {_until(step.retry_at, now)} after {_error_text(step.error)}")
    if step.until is not None:
        what = f"event {step.event_type!r} " if step.kind == "event" else ""
        if step.kind == "instance":
            what = f"instance {step.instance_id!r} "
        return f"{what}until {_until(step.until, now)}"
    return ""


def _step_duration(step: StepState) -> str:
    if step.started is None or step.ended is None:
        return _NONE
    return format_duration(step.ended - step.started)


def status_view(status: InstanceStatus, now: datetime, plain: bool) -> RenderableType:
    """``wf status``: the instance's facts, then one row per step."""
    pairs: list[tuple[str, Cell]] = [
        ("id", status.id),
        ("workflow", status.workflow),
        ("status", _status_cell(status.status, plain, status_line(status))),
    ]
    if status.state.version is not None:
        pairs.append(("version", status.state.version))
    if status.state.forked_from is not None:
        source, step = status.state.forked_from
        pairs.append(("forked from", f"{source} (kept the steps before {step!r})"))
    pairs += [
        ("created", _when(status.state.created)),
        ("started", _when(status.state.started)),
        ("ended", _when(status.state.ended)),
    ]
    if status.status == "complete":
        pairs.append(("output", _shorten(_json_text(status.output), 200)))
    if status.error is not None:
        pairs.append(("error", _error_text(status.error)))
    waiting = _waiting_text(status, now)
    if waiting is not None:
        pairs.append(("waiting", waiting))
    if status.pending_messages:
        pairs.append(("pending", ", ".join(status.pending_messages)))
    if status.state.patches:
        pairs.append(("patches", _patches_text(status.state.patches)))
    state = status.state
    if state.deadline is not None:
        pairs.append(("deadline", _when(state.deadline)))
    if state.parent is not None:
        pairs.append(("parent", state.parent))
    if status.children:
        pairs.append(("children", ", ".join(status.children)))
    if state.rollback is not None:
        rollback = state.rollback
        failed = rollback.failed_step
        text = f"{rollback.status}: {rollback.completed} of {len(rollback.steps)} rolled back"
        if failed is not None:
            text += f"; {failed.step!r} failed: {_error_text(failed.error)}"
        pairs.append(("rollback", text))
    pairs.extend(("warning", warning.message) for warning in status.state.warnings)
    rows = [
        [
            step.name,
            step.kind,
            _status_cell(step.status, plain),
            str(step.attempts) if step.kind == "do" else _NONE,
            _cell_time(step.started, now, plain),
            _step_duration(step),
            _step_detail(step, now),
        ]
        for step in status.steps
    ]
    if state.rollback is not None:
        rows += [
            [
                f"rollback {entry.step}",
                "rollback",
                _status_cell(entry.status, plain),
                str(entry.attempts),
                _cell_time(entry.started, now, plain),
                _NONE
                if entry.started is None or entry.ended is None
                else format_duration(entry.ended - entry.started),
                _shorten(_error_text(entry.error)) if entry.error is not None else "",
            ]
            for entry in state.rollback.steps.values()
        ]
    header = _fields(pairs, plain)
    if not rows:
        return Group(header, Text(""), Text("no steps yet"))
    steps = _table(
        [
            "step",
            "type",
            "status",
            "attempts",
            f"started ({_zone(now)})",
            "duration",
            "output / error",
        ],
        rows,
        plain,
    )
    return Group(header, Text(""), steps)


def _patches_text(patches: Mapping[str, PatchDecision]) -> str:
    return ", ".join(
        f"{name}: {'new' if patch.applied else 'old'} branch" for name, patch in patches.items()
    )


def tracebacks_view(status: InstanceStatus) -> RenderableType:
    """``wf status --verbose``, after the status: where each recorded error (the
    instance's, each step's last) was raised in the user's code."""
    traced = [("the instance", status.error)] + [
        (f"step {step.name!r}", step.error) for step in status.steps
    ]
    shown: list[RenderableType] = []
    for what, error in traced:
        if error is not None and error.traceback is not None:
            shown += [
                Text(""),
                Text(f"{_error_text(error)} ({what}), raised at:"),
                Text(error.traceback),
            ]
    return Group(*shown)


def continuation_hint(status: InstanceStatus) -> str | None:
    """How an unfinished instance goes on, in a sentence; None when finished."""
    instance = status.id
    wait = status.waiting
    if wait is not None and wait.kind == "event":
        return (
            f"waiting for event {wait.event_type!r} until {_when(wait.until)}: "
            f"send it with `wf send-event {instance} --type {wait.event_type}`"
        )
    step = None if wait is None else status.state.steps.get(wait.step)
    if wait is not None and wait.kind == "instance" and step is not None:
        return (
            f"waiting for instance {step.instance_id!r}: a `wf worker` runs both, or "
            f"`wf resume --due` runs what is due (the child, then {instance} once it ends)"
        )
    if wait is not None:
        return (
            f"waiting ({wait.kind} {wait.step!r}) until {_when(wait.until)}: "
            f"continue with `wf resume {instance}` after that, or keep a `wf worker` running"
        )
    if status.divergence is not None:
        return (
            f"diverged: make the code fit its history (`wf replay {instance}` checks it), "
            f"then `wf resume {instance}`"
        )
    if status.status in ("paused", "waitingForPause"):
        return f"paused: continue with `wf resume {instance}`"
    if status.status == "queued":
        return f"queued: run it with `wf resume {instance}` or a running `wf worker`"
    if status.status == "running" and status.interrupted:
        return f"interrupted: continue with `wf resume {instance}`"
    return None


def run_summary(status: InstanceStatus, elapsed: timedelta, plain: bool) -> RenderableType:
    """The last lines of ``wf run``/``wf resume``: outcome, output or error, what next."""
    headline = Text(f"{status.id}: ")
    headline.append(status.status, style="" if plain else _STATUS_STYLES.get(status.status, ""))
    headline.append(f" after {format_duration(elapsed)}")
    lines: list[RenderableType] = [headline]
    if status.status == "complete":
        lines.append(Text(f"output: {_json_text(status.output)}"))
    elif status.error is not None:
        lines.append(Text(f"error: {_error_text(status.error)}"))
    if status.divergence is not None:
        lines.append(Text(f"diverged: {divergence_text(status.divergence)}"))
    hint = continuation_hint(status)
    if hint is not None:
        lines.append(Text(hint))
    return Group(*lines)


# --- many instances -----------------------------------------------------------------


def instances_table(
    statuses: Sequence[InstanceSummary], now: datetime, plain: bool
) -> RenderableType:
    """``wf list``: one row per instance (newest first, as given)."""
    if not statuses:
        return Text("no instances")
    versions = any(s.version is not None for s in statuses)
    rows = [
        [
            s.id,
            s.workflow,
            *([s.version or _NONE] if versions else []),
            _status_cell(s.status, plain, s.status + _list_qualifier(s)),
            _cell_time(s.created, now, plain),
            _cell_time(s.ended, now, plain),
        ]
        for s in statuses
    ]
    zone = _zone(now)
    columns = [
        "id",
        "workflow",
        *(["version"] if versions else []),
        "status",
        f"created ({zone})",
        f"ended ({zone})",
    ]
    return _table(columns, rows, plain)


def _list_qualifier(summary: InstanceSummary) -> str:
    if summary.divergence is not None:
        return " (diverged)"
    return " (interrupted)" if summary.interrupted else ""


# Fields shown first in a history row, as times for people: when the record's wait ends.
_HISTORY_TIMES = ("retry_at", "until")


def _history_detail(record: Record, fields: dict[str, object]) -> str:
    """A record's other fields as ``key=value``: its wake or retry time first (local,
    with the zone), an error as ``Name: message`` last, the rest as JSON between."""
    parts = []
    for key in _HISTORY_TIMES:
        if fields.pop(key, None) is not None:
            parts.append(f"{key}={_when(getattr(record, key))}")
    fields.pop("error", None)
    parts += [f"{key}={_json_text(value)}" for key, value in fields.items()]
    error = getattr(record, "error", None)
    if isinstance(error, ErrorInfo):
        parts.append(f"error={_error_text(error)}")
    return " ".join(parts)


def history_table(records: Sequence[Record], now: datetime, plain: bool) -> RenderableType:
    """``wf history``: every journal record with its fields in a detail column, cut at
    the terminal's width (never when plain)."""
    rows: list[list[Cell]] = []
    for record in records:
        fields = record_to_json(shown_record(record))
        fields.pop("type")
        fields.pop("at")
        step = fields.pop("step", None)
        attempt = fields.pop("attempt", fields.pop("attempts", None))
        rows.append(
            [
                _cell_time(record.at, now, plain),
                record.TYPE,
                _NONE if step is None else str(step),
                _NONE if attempt is None else str(attempt),
                _history_detail(record, fields),
            ]
        )
    headers = [f"time ({_zone(now)})", "type", "step", "attempt", "detail"]
    return _table(headers, rows, plain, cut_last=True)


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """One configured workflow, as ``wf workflows`` lists it."""

    name: str
    binding: str
    class_name: str
    main: str | None


def workflows_view(
    workflows: Sequence[WorkflowRow], config_path: str, store: str, plain: bool
) -> RenderableType:
    """``wf workflows``: the bound workflows, the config file and the store."""
    rows = [[w.name, w.binding, w.class_name, w.main or _NONE] for w in workflows]
    table = (
        _table(["name", "binding", "class", "module"], rows, plain)
        if rows
        else Text("no workflows configured")
    )
    return Group(_fields([("config", config_path), ("store", store)], plain), Text(""), table)


def schedules_view(reports: Sequence[ScheduleReport], plain: bool) -> RenderableType:
    """``wf schedules``: each schedule with its next and last fires and its skips."""
    if not reports:
        return Text("no schedules: add schedules = [...] to a [[workflows]] entry")
    rows = [
        [
            report.schedule.name,
            report.schedule.cron
            + ("" if report.schedule.timezone == "UTC" else f" ({report.schedule.timezone})"),
            _when(report.next_fire),
            _NONE
            if report.last_fire is None
            else f"{_when(report.last_fire)} {report.last_id} ({report.last_status})",
            str(report.skipped)
            + ("" if report.last_skip is None else f" (last {_when(report.last_skip)})"),
        ]
        for report in reports
    ]
    return _table(["schedule", "cron", "next fire", "last fire", "skipped"], rows, plain)


# --- live views of a run --------------------------------------------------------------


class LineSink(Protocol):
    """Where :class:`LineRunLog` writes: a text stream's ``write`` and ``flush``."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


# Progress lines reach the reader at most this late (sooner when the run waits or ends).
_FLUSH_SECONDS = 0.1


class GatheredLines:
    """A :class:`LineSink` that gathers lines and writes them to ``out`` together.

    Lines go out at :meth:`flush`, and a tenth of a second after the first line
    gathered since the last timed write at the latest: a timer thread, armed once
    per tenth of a second at most, writes them while a long step runs. A flush
    leaves the timer armed, so that a worker's runs, which share one of these and
    each end with a flush, do not start a thread each.
    """

    def __init__(self, out: LineSink) -> None:
        self.out = out
        self._pending: list[str] = []
        self._timer: threading.Timer | None = None  # armed while a timed write is due
        self._mutex = threading.Lock()  # runs and parallel steps write from their threads

    def write(self, text: str, /) -> int:
        with self._mutex:
            self._pending.append(text)
            if self._timer is None:
                self._timer = threading.Timer(_FLUSH_SECONDS, self._timed_write)
                self._timer.daemon = True
                self._timer.start()
        return len(text)

    def flush(self) -> None:
        """Write the lines gathered so far, in one ``write``, and flush ``out``."""
        with self._mutex:  # held while writing, so that lines keep their order
            self._write_pending()

    def _timed_write(self) -> None:
        with self._mutex:
            self._timer = None
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            self.out.write("".join(self._pending))
            self._pending.clear()
            self.out.flush()


class LineRunLog:
    """A run observer that prints one plain line per event (pipes, logs, workers).

    Lines are plain text gathered (:class:`GatheredLines`) and written to ``out``
    together, not a rich ``print`` each, which cost more than the durable step it
    reports (``docs/performance.md``); they are written before every wait and at
    :meth:`flush` (the end of a run). Runs that share an ``out`` pass one
    :class:`GatheredLines` to all their logs.
    """

    def __init__(self, out: LineSink, now: Now, prefix: str = "") -> None:
        self.out = out if isinstance(out, GatheredLines) else GatheredLines(out)
        self.now = now
        self.prefix = prefix

    def _say(self, text: str) -> None:
        self.out.write(f"{self.prefix}{text}\n")

    def flush(self) -> None:
        """Write the lines said so far (and any other gathered with them)."""
        self.out.flush()

    def step_started(self, name: str, kind: StepKind, attempt: int) -> None:
        if kind == "do":
            self._say(f"{name!r}: started (attempt {attempt})")

    def step_finished(self, name: str, kind: StepKind, ok: bool, replayed: bool) -> None:
        outcome = "replayed from the journal" if replayed else "done" if ok else "failed"
        self._say(f"{name!r}: {outcome}")

    def attempt_failed(
        self,
        name: str,
        attempt: int,
        error: ErrorInfo,
        retry_at: datetime | None,
        *,
        retryable: bool,
    ) -> None:
        if retry_at is not None:
            then = f"retry at {_clock_time(retry_at)}"
        else:
            then = "no retries left" if retryable else "not retryable"
        self._say(f"{name!r}: attempt {attempt} failed: {_error_text(error)}; {then}")
        self.flush()

    def waiting(self, name: str, kind: str, until: datetime) -> None:
        what = {
            "sleep": "sleeping",
            "retry": "waiting to retry",
            "event": "waiting for an event",
            "instance": "waiting for an instance",
        }
        left = format_duration(max(until - self.now(), timedelta(0)))
        self._say(f"{name!r}: {what.get(kind, kind)} until {_clock_time(until)} ({left})")
        self.flush()


_LIVE_STYLES = {
    "done": "green",
    "replayed": "dim",
    "failed": "red",
    "retrying": "yellow",
    "waiting": "yellow",
    "suspended": "yellow",
    "running": "cyan",
}
_LIVE_MARKERS = {"done": "✓", "replayed": "↺", "failed": "✗"}


@dataclass
class _LiveStep:
    name: str
    kind: StepKind
    state: str  # running, waiting, done, replayed, failed, retrying, suspended
    attempt: int = 0
    until: datetime | None = None
    note: str = ""
    spinner: Spinner | None = None


class LiveRunView:
    """A run observer drawn by ``rich.live.Live``: a spinner on the running step,
    attempt numbers, and countdowns to retries and wake times.

    Pass it as the renderable of a ``Live``; it redraws from its rows on every
    refresh, so countdowns tick without events. Observer calls may come from
    several threads (parallel steps).
    """

    def __init__(self, now: Now) -> None:
        self.now = now
        self._steps: dict[str, _LiveStep] = {}
        self._mutex = threading.Lock()

    def _row(self, name: str, kind: StepKind) -> _LiveStep:
        row = self._steps.get(name)
        if row is None:
            row = self._steps[name] = _LiveStep(name, kind, "running")
        return row

    def step_started(self, name: str, kind: StepKind, attempt: int) -> None:
        with self._mutex:
            row = self._row(name, kind)
            row.state, row.attempt, row.until, row.note = "running", attempt, None, ""
            row.spinner = Spinner("dots")

    def step_finished(self, name: str, kind: StepKind, ok: bool, replayed: bool) -> None:
        with self._mutex:
            row = self._row(name, kind)
            row.state = "replayed" if replayed else "done" if ok else "failed"
            row.until = None
            row.spinner = None

    def attempt_failed(
        self,
        name: str,
        attempt: int,
        error: ErrorInfo,
        retry_at: datetime | None,
        *,
        retryable: bool,
    ) -> None:
        with self._mutex:
            row = self._row(name, "do")
            row.attempt = attempt
            row.note = _shorten(_error_text(error), 50)
            if retry_at is not None:
                row.state, row.until = "retrying", retry_at

    def waiting(self, name: str, kind: str, until: datetime) -> None:
        with self._mutex:
            shown: StepKind = (
                "event"
                if kind == "event"
                else "instance"
                if kind == "instance"
                else "do"
                if kind == "retry"
                else "sleep"
            )
            row = self._row(name, shown)
            row.until = until
            if kind != "retry":
                row.state = "waiting"

    def settle(self) -> None:
        """The run is over: rows still in flight stop spinning (they were suspended)."""
        with self._mutex:
            for row in self._steps.values():
                if row.state in ("running", "waiting", "retrying"):
                    row.state, row.spinner, row.until = "suspended", None, None

    def __rich__(self) -> RenderableType:
        now = self.now()
        table = Table(box=None, show_header=False, padding=(0, 1))
        for _ in range(5):
            table.add_column()
        with self._mutex:
            rows = list(self._steps.values())
        for row in rows:
            marker: RenderableType = row.spinner or Text(
                _LIVE_MARKERS.get(row.state, "•"), style=_LIVE_STYLES.get(row.state, "")
            )
            countdown = ""
            if row.until is not None:
                left = format_duration(max(row.until - now, timedelta(0)))
                countdown = f"retry in {left}" if row.state == "retrying" else f"{left} left"
            attempt = f"attempt {row.attempt}" if row.kind == "do" and row.attempt else ""
            table.add_row(
                marker,
                Text(row.name, style="bold" if row.spinner else ""),
                Text(row.state, style=_LIVE_STYLES.get(row.state, "")),
                attempt,
                Text(" ".join(filter(None, [countdown, row.note])), style="dim"),
            )
        return table


def replay_lines(reports: Sequence[ReplayReport], summary: ReplaySummary) -> Iterator[str]:
    """Plain text for people: one line per instance, then its findings, then the counts."""
    for report in reports:
        verdict = "compatible" if report.compatible else "DIVERGENT"
        detail = {
            "returned": "code ran to its end",
            "raised": "code raised",
            "end_of_history": "stopped at the end of its history",
            "divergence": "stopped at the first divergence",
        }[report.outcome]
        yield (
            f"{verdict:<10}  {report.instance_id}  {report.workflow}  {report.status}  "
            f"{report.steps_replayed}/{report.history_steps} steps, {detail}"
        )
        for finding in report.findings:
            label = "warning" if finding.warning else "diverged"
            yield f"  {label}: {finding.message}"
    if not reports:
        yield "no instances to replay"
        return
    plural = "instance" if summary.instances == 1 else "instances"
    yield (
        f"replayed {summary.instances} {plural}: {summary.compatible} compatible, "
        f"{summary.divergent} divergent, {summary.warnings} warnings"
    )
    for patch, instances in summary.old_branches:
        plural = "instance" if len(instances) == 1 else "instances"
        yield (
            f"patch {patch!r}: {len(instances)} {plural} on the old branch: {', '.join(instances)}"
        )
