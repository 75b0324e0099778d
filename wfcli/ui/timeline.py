"""``wf timeline``: an instance's steps drawn on a time axis, and its SVG and HTML export.

:func:`timeline_view` takes a :class:`~wfcli.core.timeline.Timeline` and returns a rich
renderable: a header (instance, workflow, status, total time, the current wait), one
row per step (name, kind, attempts, bar, duration), a time axis and a legend. On the
``compact`` scale (the default) a stretch longer than a tenth of the whole in which no
attempt runs is drawn as a short break labelled with its length, so a four-minute
event wait leaves room for the two-second steps around it; ``linear`` is to scale.
Times are shown in UTC, said so, which also keeps exported pictures the same on every
machine.
"""

from __future__ import annotations

import io
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.text import Text

from wfcli.core.durations import format_duration
from wfcli.core.timeline import Span, StepRow, Timeline

__all__ = ["Scale", "export_timeline", "timeline_view"]

Scale = Literal["compact", "linear"]

_GAP_SHARE = 0.1  # a waiting stretch longer than this share of the whole is drawn compact
_GAP_CELLS = 5
_NAME_CELLS = 20
_DURATION_CELLS = 7
_MIN_BAR_CELLS = 10


@dataclass(frozen=True, slots=True)
class _Look:
    glyph: str
    style: str
    label: str


# In the order the legend lists them; a span's look is by kind, and for attempts by outcome.
_LOOKS = {
    "ok": _Look("█", "green", "attempt ok"),
    "failed": _Look("▓", "red", "attempt failed"),
    "open": _Look("▒", "yellow", "running"),
    "cancelled": _Look("▒", "grey50", "cut short"),
    "retry_delay": _Look("░", "grey62", "retry delay"),
    "sleep": _Look("▃", "blue", "sleep"),
    "event_wait": _Look("▅", "magenta", "event wait"),
    "child_wait": _Look("▄", "cyan", "child wait"),
    "rollback": _Look("▚", "dark_orange", "rollback"),
}
_KIND_LABELS = {"instance": "child", "rollback": "undo"}  # the kind column is 5 cells wide
_GAP = _Look("╌", "", "break (not to scale)")
_PAINT_ORDER = {
    "retry_delay": 0,
    "sleep": 0,
    "event_wait": 0,
    "child_wait": 0,
    "attempt": 1,
    "rollback": 2,
}
_STATUS_STYLES = {"complete": "green", "errored": "red", "terminated": "magenta"}


def _look(span: Span) -> _Look:
    if span.kind != "attempt":
        return _LOOKS[span.kind]
    return _LOOKS["failed" if span.outcome == "lost" else span.outcome]


def _utc(moment: datetime, with_date: bool = True) -> str:
    text = moment.astimezone(timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    )
    return f"{text} UTC" if with_date else text


def _short(delta: timedelta) -> str:
    return format_duration(delta).replace(" ", "")


@dataclass(frozen=True, slots=True)
class _Segment:
    start: datetime
    end: datetime
    x: float
    cells: float
    compact: bool


class _Axis:
    """Time to cells: piecewise linear, with the long waiting stretches drawn compact."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.segments: list[_Segment] = []
        self._cuts: list[datetime] = []

    @classmethod
    def of(
        cls, rows: Sequence[StepRow], start: datetime, end: datetime, cells: int, scale: Scale
    ) -> _Axis:
        axis = cls(start, end)
        bounds = {start, end}
        busy: list[tuple[datetime, datetime]] = []
        for row in rows:
            for span in row.spans:
                span_end = axis.clip(span.end or end)
                bounds.update((axis.clip(span.start), span_end))
                if span.kind == "attempt":
                    busy.append((span.start, span_end))
        edges = sorted(bounds)
        total = (end - start).total_seconds()
        pieces = list(pairwise(edges))
        compact = [
            scale == "compact"
            and (b - a).total_seconds() > _GAP_SHARE * total
            and not any(s < b and a < e for s, e in busy)
            for a, b in pieces
        ]
        gap_cells = [max(_GAP_CELLS, len(_short(b - a)) + 2) for a, b in pieces]
        fixed = sum(w for w, c in zip(gap_cells, compact, strict=True) if c)
        linear = sum(
            (b - a).total_seconds() for (a, b), c in zip(pieces, compact, strict=True) if not c
        )
        left = max(cells - fixed, 0)
        x = 0.0
        for (a, b), is_compact, gap in zip(pieces, compact, gap_cells, strict=True):
            if is_compact:
                width = float(gap) if linear > 0 else cells / max(sum(compact), 1)
            else:
                width = left * (b - a).total_seconds() / linear if linear > 0 else 0.0
            axis.segments.append(_Segment(a, b, x, width, is_compact))
            x += width
        axis._cuts = [segment.start for segment in axis.segments]
        return axis

    def clip(self, moment: datetime) -> datetime:
        return min(max(moment, self.start), self.end)

    def x(self, moment: datetime) -> float:
        """Where ``moment`` falls, in cells from the left."""
        if not self.segments:
            return 0.0
        moment = self.clip(moment)
        segment = self.segments[max(bisect_right(self._cuts, moment) - 1, 0)]
        length = (segment.end - segment.start).total_seconds()
        share = (moment - segment.start).total_seconds() / length if length > 0 else 0.0
        return segment.x + share * segment.cells


def _bar(row: StepRow, axis: _Axis, cells: int, plain: bool) -> Text:
    painted: list[_Look | None] = [None] * cells
    for span in sorted(row.spans, key=lambda s: _PAINT_ORDER[s.kind]):
        first = min(math.floor(axis.x(span.start)), cells - 1)
        last = max(first + 1, math.ceil(axis.x(span.end or axis.end)))
        for cell in range(first, min(last, cells)):
            painted[cell] = _look(span)
    bar = Text()
    for look in painted:
        if look is None:
            bar.append(" ")
        else:
            bar.append(look.glyph, style="" if plain else look.style)
    return bar


def _axis_line(axis: _Axis, cells: int) -> Text:
    line = [" "] * cells

    def place(text: str, at: int) -> None:
        at = max(0, min(at, cells - len(text)))
        if all(c == " " for c in line[at : at + len(text)]):
            line[at : at + len(text)] = text

    place(_utc(axis.start, with_date=False), 0)
    for segment in axis.segments:
        if segment.compact:
            label = _short(segment.end - segment.start)
            width = round(segment.cells)
            padded = label.center(width, _GAP.glyph) if width >= len(label) else label
            place(padded, round(segment.x))
    place(_utc(axis.end, with_date=False), cells - 8)
    return Text("".join(line).rstrip(), style="dim")


def _clip_name(name: str) -> str:
    return name if len(name) <= _NAME_CELLS else name[: _NAME_CELLS - 1] + "…"


def _row_duration(row: StepRow, end: datetime) -> str:
    if not row.spans:
        return "-"
    last = max((span.end or end) for span in row.spans)
    return format_duration(last - row.spans[0].start)


def _header(timeline: Timeline, now: datetime, end: datetime, plain: bool) -> list[Text]:
    state = timeline.state
    status = Text(state.status, style="" if plain else _STATUS_STYLES.get(state.status, "yellow"))
    first = Text.assemble(
        (state.instance_id, "" if plain else "bold"),
        f"  {state.workflow}  ",
        status,
        f"  {format_duration(end - timeline.start)} from {_utc(timeline.start)}",
    )
    lines = [first]
    wait = timeline.waiting
    if wait is not None:
        what = f"event {wait.event_type!r}" if wait.kind == "event" else wait.kind
        left = wait.until - now
        distance = f"in {format_duration(left)}" if left > timedelta(0) else "due now"
        lines.append(
            Text(f"waiting: {what} (step {wait.step!r}) until {_utc(wait.until)} ({distance})")
        )
    return lines


def _legend(rows: Sequence[StepRow], axis: _Axis, plain: bool) -> Text:
    shown = {_look(span) for row in rows for span in row.spans}
    looks = [look for look in _LOOKS.values() if look in shown]
    if any(segment.compact for segment in axis.segments):
        looks.append(_GAP)
    legend = Text()
    for look in looks:
        if legend:
            legend.append("  ")
        legend.append(look.glyph, style="" if plain else look.style)
        legend.append(f" {look.label}")
    return legend


def timeline_view(
    timeline: Timeline, now: datetime, width: int, plain: bool, scale: Scale = "compact"
) -> RenderableType:
    """The timeline of an instance as ``wf timeline`` prints it, ``width`` cells wide."""
    rows = list(timeline.rows.values())
    end = timeline.end(now)
    header = _header(timeline, now, end, plain)
    if not rows:
        return Group(*header, Text(""), Text("no steps yet"))
    name_cells = max(4, *(len(_clip_name(row.name)) for row in rows))
    kind_cells, attempt_cells = 5, 3
    fixed = name_cells + kind_cells + attempt_cells + _DURATION_CELLS + 4
    cells = max(width - fixed, _MIN_BAR_CELLS)
    axis = _Axis.of(rows, timeline.start, end, cells, scale)
    lines: list[RenderableType] = [*header, Text("")]
    heading = (
        f"{'step'.ljust(name_cells)} {'kind'.ljust(kind_cells)} {'#':>{attempt_cells}} "
        f"{' ' * cells} {'took':>{_DURATION_CELLS}}"
    )
    lines.append(Text(heading.rstrip(), style="" if plain else "bold"))
    for row in rows:
        attempts = str(row.attempts) if row.kind in ("do", "rollback") else "-"
        kind = _KIND_LABELS.get(row.kind, row.kind)
        line = Text(
            f"{_clip_name(row.name).ljust(name_cells)} {kind.ljust(kind_cells)} "
            f"{attempts:>{attempt_cells}} "
        )
        line.append_text(_bar(row, axis, cells, plain))
        line.append(f" {_row_duration(row, end):>{_DURATION_CELLS}}")
        lines.append(line)
    indent = " " * (name_cells + kind_cells + attempt_cells + 3)
    lines.append(Text(indent).append_text(_axis_line(axis, cells)))
    lines.append(Text(""))
    lines.append(_legend(rows, axis, plain))
    return Group(*lines)


def export_timeline(view: RenderableType, width: int, title: str) -> tuple[str, str]:
    """The view drawn ``width`` cells wide as an SVG document and an HTML page (rich's
    own export; the SVG's IDs come from its content, so the same view gives the same
    bytes)."""
    console = Console(
        record=True,
        width=width,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
        legacy_windows=False,
    )
    console.print(view)
    svg = console.export_svg(title=title, clear=False)
    html = console.export_html(inline_styles=True, clear=True)
    return svg, html
