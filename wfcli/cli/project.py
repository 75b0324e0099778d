"""The commands on the project's workflow code: replay (against journals) and workflows."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
from typing import Annotated

import typer

from wfcli.cli.framework import (
    EXIT_ERRORED,
    ConfigOption,
    JsonFlag,
    Screen,
    StatusFilter,
    StoreOption,
    WorkflowFilter,
    command,
    open_session,
)
from wfcli.errors import WorkflowInputError


@command()
def replay(
    *,
    instance_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID]...", show_default=False, help="Instances to replay."),
    ] = None,
    all_instances: Annotated[
        bool, typer.Option("--all", help="Every instance (narrow with --workflow/--status).")
    ] = False,
    workflow: WorkflowFilter = None,
    status_filter: StatusFilter = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Re-run current workflow code against journals, executing nothing; exit 1 on divergence.

    Every step is served from the record: no callback runs, nothing waits, nothing
    is written. Use it in CI before deploying a change to instances in flight.
    """
    from wfcli.client.replay import replay_many
    from wfcli.engine.replay import ReplaySummary

    ids = instance_ids or []
    statuses = status_filter or []
    if all_instances == bool(ids):
        raise WorkflowInputError("replay", "give instance IDs or --all, not both and not neither")
    if not all_instances and (workflow is not None or statuses):
        raise WorkflowInputError("replay", "--workflow and --status select instances for --all")
    screen = Screen()
    client = open_session(config, store, load=True).client
    reports = replay_many(
        client, None if all_instances else ids, workflow=workflow, statuses=statuses
    )
    summary = ReplaySummary.of(reports)
    if json_output:
        screen.json(
            {"instances": [report.to_json() for report in reports], "summary": summary.to_json()}
        )
    else:
        from wfcli.ui.render import replay_lines

        for line in replay_lines(reports, summary):
            screen.say(line)
    if summary.divergent:
        raise typer.Exit(EXIT_ERRORED)


@command()
def workflows(
    *, json_output: JsonFlag = False, config: ConfigOption = None, store: StoreOption = None
) -> None:
    """List the workflows bound in workflows.toml, and where the store is."""
    from wfcli.errors import ConfigError

    screen = Screen()
    session = open_session(config, store, load=True, creates=True)
    project = session.project
    if project is None:
        raise ConfigError("workflows.toml", "not found")
    bound = [(w.name, w.binding, w.class_name, w.main or project.main) for w in project.workflows]
    location = session.client.store.location()
    if json_output:
        keys = ("name", "binding", "class_name", "main")
        screen.json(
            {
                "config": str(project.path),
                "store": location,
                "workflows": [dict(zip(keys, entry, strict=True)) for entry in bound],
            }
        )
    else:
        from wfcli.ui.render import WorkflowRow, workflows_view

        rows = [WorkflowRow(*entry) for entry in bound]
        screen.show(workflows_view(rows, str(project.path), location, screen.plain))
