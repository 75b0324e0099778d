"""The commands on instances: run, status, list, history, resume, pause, terminate,
restart, send-event."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
import time
from typing import TYPE_CHECKING, Annotated

import typer

from wfcli.cli.framework import (
    EXIT_NOT_FINISHED,
    ConfigOption,
    InstanceArgument,
    JsonFlag,
    MaxWaitOption,
    Screen,
    StatusFilter,
    StoreOption,
    WorkflowFilter,
    command,
    execute_foreground,
    exit_code_for_error,
    exit_code_of,
    open_session,
    parse_duration_option,
    parse_json_input,
    worst_exit_code,
)
from wfcli.errors import InstanceBusyError, WorkflowError, WorkflowInputError

if TYPE_CHECKING:
    from wfcli.client.client import WorkflowClient
    from wfcli.client.views import InstanceStatus
    from wfcli.store.contract import Damage


@command()
def run(
    *,
    workflow: Annotated[str, typer.Argument(metavar="WORKFLOW", help="Workflow name.")],
    params: Annotated[
        str | None,
        typer.Option(
            metavar="JSON|@FILE|-",
            show_default=False,
            help="Params as JSON text, @FILE to read a file, or - to read stdin.",
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--id", metavar="ID", show_default=False, help="Instance ID (random if not given)."
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only create the instance (queued) and print its ID.")
    ] = False,
    max_wait: MaxWaitOption = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DUR",
            show_default=False,
            help="Deadline of the instance, from now (else the workflow's timeout).",
        ),
    ] = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create an instance of WORKFLOW and run it in the foreground."""
    screen = Screen()
    session = open_session(config, store, load=True, creates=True)
    value = parse_json_input(params, "--params")
    wait = None if max_wait is None else parse_duration_option(max_wait, "--max-wait")
    limit = None if timeout is None else parse_duration_option(timeout, "--timeout")
    handle = session.client.create(workflow, params=value, instance_id=instance_id, timeout=limit)
    if detach:
        if json_output:
            screen.json(handle.status().to_json())
        else:
            screen.say(handle.id)
            screen.note(f"queued: run it with `wf resume {handle.id}` or a running `wf worker`")
        return
    status = execute_foreground(session.client, handle.id, screen, max_wait=wait, quiet=json_output)
    if json_output:
        screen.json(status.to_json())
    raise typer.Exit(exit_code_of(status))


@command()
def status(
    *,
    instance_id: InstanceArgument,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the instance finishes or suspends.")
    ] = False,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Show an instance: its status, what it waits for, and its steps."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    current = client.status(instance_id)
    if watch and not _settled(current):
        if json_output or screen.plain:
            current = _watch_plain(client, current, screen, announce=not json_output)
        else:
            from rich.live import Live

            from wfcli.ui import render

            now = client.clock.now
            with Live(render.status_view(current, now(), plain=False), console=screen.out) as live:
                while not _settled(current):
                    time.sleep(_WATCH_INTERVAL)
                    current = client.status(instance_id)
                    live.update(render.status_view(current, now(), plain=False))
            return
    if json_output:
        screen.json(current.to_json())
    else:
        from wfcli.ui.render import status_view

        screen.show(status_view(current, client.clock.now(), screen.plain))


_WATCH_INTERVAL = 0.5


def _settled(current: "InstanceStatus") -> bool:
    """Whether ``--watch`` can stop: finished, suspended, or interrupted."""
    return current.finished or current.status in ("waiting", "paused") or current.interrupted


def _watch_plain(
    client: "WorkflowClient", current: "InstanceStatus", screen: Screen, *, announce: bool
) -> "InstanceStatus":
    from wfcli.ui.render import status_line

    shown = ""
    while not _settled(current):
        line = status_line(current)
        if announce and line != shown:
            screen.say(f"{current.id}: {line}")
            shown = line
        time.sleep(_WATCH_INTERVAL)
        current = client.status(current.id)
    return current


@command("list")
def list_instances(
    *,
    workflow: WorkflowFilter = None,
    status_filter: StatusFilter = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", show_default=False, help="At most N instances."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION", show_default=False, help="Only instances created at this version."
        ),
    ] = None,
    old_branch: Annotated[
        str | None,
        typer.Option(
            metavar="PATCH",
            show_default=False,
            help="Only instances that took the old branch of this patch.",
        ),
    ] = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List instances, newest first."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    damaged: list[Damage] = []
    found = client.list_instances(
        workflow=workflow,
        statuses=status_filter or (),
        limit=limit,
        version=version,
        old_branch=old_branch,
        damaged=damaged,
    )
    if json_output:
        screen.json(
            {
                "instances": [s.to_json() for s in found],
                "damaged": [str(error) for error in damaged],
            }
        )
    else:
        from wfcli.ui.render import instances_table

        screen.show(instances_table(found, client.clock.now(), screen.plain))
    for error in damaged:
        screen.note(f"skipped: {error}")


@command()
def history(
    *,
    instance_id: InstanceArgument,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Show every journal record of an instance, oldest first."""
    from wfcli.core.codec import record_to_json

    screen = Screen()
    client = open_session(config, store, load=False).client
    records = client.history(instance_id)
    if json_output:
        screen.json({"id": instance_id, "records": [record_to_json(r) for r in records]})
    else:
        from wfcli.ui.render import history_table

        screen.show(history_table(records, client.clock.now(), screen.plain))


@command()
def resume(
    *,
    instance_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID]...", show_default=False, help="Instances to resume."),
    ] = None,
    due: Annotated[
        bool,
        typer.Option(
            "--due", help="Also every instance that is queued, interrupted, or done waiting."
        ),
    ] = False,
    max_wait: MaxWaitOption = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Lift a pause and run instances in the foreground until they finish or suspend."""
    screen = Screen()
    if not instance_ids and not due:
        raise WorkflowInputError("wf resume", "give instance IDs, or --due")
    wait = None if max_wait is None else parse_duration_option(max_wait, "--max-wait")
    client = open_session(config, store, load=True).client
    damaged: list[Damage] = []
    targets = client.plan_resume(instance_ids or (), due=due, damaged=damaged)
    for error in damaged:
        screen.note(f"skipped: {error}")
    if not targets and not json_output:
        screen.say("nothing is due")
    codes: list[int] = []
    documents: list[object] = []
    for instance_id in targets:
        if len(targets) > 1 and not json_output:
            screen.say(f"resuming {instance_id}")
        try:
            client.resume(instance_id)
            outcome = execute_foreground(
                client, instance_id, screen, max_wait=wait, quiet=json_output
            )
            codes.append(exit_code_of(outcome))
        except WorkflowError as error:
            screen.error(str(error))
            codes.append(exit_code_for_error(error))
            outcome = client.status(instance_id)
        documents.append(outcome.to_json())
    if json_output:
        screen.json({"instances": documents})
    raise typer.Exit(worst_exit_code(codes))


@command()
def pause(
    *, instance_id: InstanceArgument, config: ConfigOption = None, store: StoreOption = None
) -> None:
    """Pause an instance (a step in flight finishes first)."""
    from wfcli.ui.render import status_line

    current = open_session(config, store, load=False).client.pause(instance_id)
    Screen().say(f"{instance_id}: {status_line(current)}")


@command()
def terminate(
    *,
    instance_id: InstanceArgument,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="Run the rollbacks of its started steps first."),
    ] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Terminate an instance: nothing more runs (a step in flight finishes first)."""
    from wfcli.ui.render import status_line

    screen = Screen()
    client = open_session(config, store, load=rollback).client
    current = client.terminate(instance_id, rollback=rollback)
    if rollback and current.state.rolling_back and current.holder is None:
        current = execute_foreground(client, instance_id, screen, max_wait=None, quiet=False)
    screen.say(f"{instance_id}: {status_line(current)}")


@command()
def restart(
    *,
    instance_id: InstanceArgument,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from-step",
            metavar="NAME",
            show_default=False,
            help="Keep the recorded results of the steps before this one.",
        ),
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Run an instance again with the same ID and params, in the foreground."""
    screen = Screen()
    client = open_session(config, store, load=True).client
    current = client.restart(instance_id, from_step=from_step)
    if current.holder is not None:
        screen.say(f"{instance_id}: process {current.holder.pid} executes it and will restart it")
        return
    outcome = execute_foreground(client, instance_id, screen, max_wait=None, quiet=False)
    raise typer.Exit(exit_code_of(outcome))


@command()
def send_event(
    *,
    instance_id: InstanceArgument,
    event_type: Annotated[
        str, typer.Option("--type", metavar="TYPE", show_default=False, help="Event type.")
    ],
    payload: Annotated[
        str | None,
        typer.Option(
            metavar="JSON|@FILE|-",
            show_default=False,
            help="Payload as JSON text, @FILE to read a file, or - to read stdin.",
        ),
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Send an event; an instance waiting for it goes on in the foreground."""
    from wfcli.client.client import EventFate
    from wfcli.ui.render import status_line

    screen = Screen()
    value = parse_json_input(payload, "--payload")
    session = open_session(config, store, load=False)
    delivery = session.client.deliver_event(instance_id, event_type, value)
    current = delivery.status
    if delivery.fate is EventFate.HOLDER_TAKES:
        assert current.holder is not None
        screen.say(
            f"{instance_id}: event {event_type!r} sent; process {current.holder.pid}, "
            "which executes the instance, will take it"
        )
        return
    if delivery.fate is EventFate.BUFFERED:
        screen.say(
            f"{instance_id}: event {event_type!r} buffered ({current.status}); "
            "a later wait for that type takes it"
        )
        return
    if delivery.fate is EventFate.TAKEN:
        screen.say(
            f"{instance_id}: event {event_type!r} taken; the instance is {status_line(current)}"
        )
        return
    if session.project is None:
        screen.say(f"{instance_id}: event {event_type!r} sent")
        screen.note(f"continue with `wf resume {instance_id}` where its workflows.toml is")
        raise typer.Exit(EXIT_NOT_FINISHED)
    session.load_workflows()
    try:
        outcome = execute_foreground(
            session.client, instance_id, screen, max_wait=None, quiet=False
        )
    except InstanceBusyError as error:
        screen.say(f"{instance_id}: event sent; {error}, which will take it")
        return
    raise typer.Exit(exit_code_of(outcome))
