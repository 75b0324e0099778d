"""``wf timeline``: an instance's steps on a time axis, live or saved as SVG and HTML."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wfcli.cli.framework import (
    ConfigOption,
    InstanceArgument,
    JsonFlag,
    Screen,
    StoreOption,
    command,
    open_session,
)
from wfcli.errors import WorkflowInputError

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import RenderableType

    from wfcli.client.client import WorkflowClient
    from wfcli.core.timeline import Timeline
    from wfcli.ui.timeline import Scale

_FOLLOW_INTERVAL = 0.5
_EXPORT_WIDTH = 100


@command()
def timeline(
    *,
    instance_id: InstanceArgument,
    svg: Annotated[
        Path | None,
        typer.Option("--svg", metavar="FILE", show_default=False, help="Save it as an SVG image."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", show_default=False, help="Save it as an HTML page."),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            min=40,
            metavar="N",
            show_default=False,
            help=f"Width in characters (default: the terminal's, {_EXPORT_WIDTH} for files).",
        ),
    ] = None,
    scale: Annotated[
        str,
        typer.Option(
            metavar="compact|linear",
            help="compact draws long waits as short breaks; linear is to scale.",
        ),
    ] = "compact",
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Redraw as the journal grows, until the instance ends."),
    ] = False,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Draw an instance's steps on a time axis: attempts, retry delays, sleeps, waits."""
    from wfcli.core.timeline import Timeline
    from wfcli.ui.timeline import Scale

    if scale not in ("compact", "linear"):
        raise WorkflowInputError("--scale", f"expected compact or linear, got {scale!r}")
    chosen: Scale = "compact" if scale == "compact" else "linear"
    screen = Screen()
    client = open_session(config, store, load=False).client
    current = Timeline.of(client.store.read_after(instance_id, 0))
    live = follow and not json_output and not screen.plain
    if follow:
        current = _follow(client, current, screen, chosen, width, live=live)
    now = client.clock.now()
    if svg is not None or html is not None:
        _export(
            current,
            now=now,
            width=width or _EXPORT_WIDTH,
            scale=chosen,
            svg=svg,
            html=html,
            screen=screen,
        )
    if json_output:
        screen.json(current.to_json(now))
    elif not live:
        from wfcli.ui.timeline import timeline_view

        shown = width or (_EXPORT_WIDTH if screen.plain else screen.out.width)
        screen.show(timeline_view(current, now, shown, screen.plain, chosen))


def _follow(
    client: "WorkflowClient",
    current: "Timeline",
    screen: Screen,
    scale: "Scale",
    width: int | None,
    *,
    live: bool,
) -> "Timeline":
    """Read the journal's new records until the instance ends; redrawn live on a terminal."""
    from wfcli.ui.timeline import timeline_view

    def view() -> "RenderableType":
        return timeline_view(current, client.clock.now(), width or screen.out.width, False, scale)

    def grow() -> None:
        state = current.state
        current.extend(client.store.read_after(state.instance_id, state.record_count))

    if not live:
        while not current.state.terminal:
            time.sleep(_FOLLOW_INTERVAL)
            grow()
        return current
    from rich.live import Live

    with Live(view(), console=screen.out, auto_refresh=False) as shown:
        while not current.state.terminal:
            time.sleep(_FOLLOW_INTERVAL)
            grow()
            shown.update(view(), refresh=True)
    return current


def _export(
    current: "Timeline",
    *,
    now: "datetime",
    width: int,
    scale: "Scale",
    svg: Path | None,
    html: Path | None,
    screen: Screen,
) -> None:
    from wfcli.ui.timeline import export_timeline, timeline_view

    view = timeline_view(current, now, width, False, scale)
    svg_text, html_text = export_timeline(view, width, f"wf timeline {current.state.instance_id}")
    for path, text, option in ((svg, svg_text, "--svg"), (html, html_text, "--html")):
        if path is None:
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            reason = f"cannot write it: {error.strerror}"
            raise WorkflowInputError(f"{option} {path}", reason) from None
        screen.note(f"wrote {path}")
