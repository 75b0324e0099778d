"""The commands on instances: run, status, list, history, resume, pause, terminate,
restart, send-event."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
import time
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from wfcli.cli.framework import (
    EXIT_NOT_FINISHED,
    EXIT_OK,
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
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    WorkflowError,
    WorkflowInputError,
)

if TYPE_CHECKING:
    from datetime import timedelta

    from wfcli.client.client import WorkflowClient
    from wfcli.client.follow import JournalFollower
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
    priority: Annotated[
        int,
        typer.Option(
            min=0, max=1000, metavar="N", help="Workers start higher priorities first (0-1000)."
        ),
    ] = 0,
    sensitive: Annotated[
        bool,
        typer.Option("--sensitive", help='Every view shows the params as "[REDACTED]".'),
    ] = False,
    if_exists: Annotated[
        str,
        typer.Option(
            "--if-exists",
            metavar="fail|attach",
            help="When the --id instance exists: fail (exit 2), or attach to it: report it, "
            "follow it while another process runs it, run it here if nobody does and it is "
            "not finished; the exit code is its outcome's.",
        ),
    ] = "fail",
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
    if if_exists not in ("fail", "attach"):
        raise WorkflowInputError("--if-exists", f"{if_exists!r}: give fail or attach")
    if if_exists == "attach" and instance_id is None:
        raise WorkflowInputError("--if-exists attach", "give the instance's --id")
    session = open_session(config, store, load=True, creates=True)
    value = parse_json_input(params, "--params")
    wait = None if max_wait is None else parse_duration_option(max_wait, "--max-wait")
    limit = None if timeout is None else parse_duration_option(timeout, "--timeout")
    try:
        handle = session.client.create(
            workflow,
            params=value,
            instance_id=instance_id,
            priority=priority,
            sensitive=sensitive,
            timeout=limit,
        )
    except InstanceExistsError:
        if if_exists == "fail" or instance_id is None:
            raise
        existing = session.client.status(instance_id)
        _attach(
            session.client,
            existing,
            workflow,
            screen,
            detach=detach,
            max_wait=wait,
            json_output=json_output,
        )
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


def _attach(
    client: "WorkflowClient",
    existing: "InstanceStatus",
    workflow: str,
    screen: Screen,
    *,
    detach: bool,
    max_wait: "timedelta | None",
    json_output: bool,
) -> NoReturn:
    """``wf run --if-exists attach`` on an instance that exists: report it; follow it if
    another process runs it; run it here if nobody does and it is not finished (not
    with ``--detach``); exit with its outcome's code."""
    from wfcli.ui import render

    if existing.workflow != workflow:
        raise WorkflowInputError(
            "--id",
            f"instance {existing.id!r} exists as a {existing.workflow!r} instance, "
            f"not {workflow!r}",
        )
    if not json_output:
        screen.note(f"{existing.id}: exists ({render.status_line(existing)}); attaching")
    outcome = existing
    ran = False
    if not existing.finished and not detach:
        if existing.holder is None:
            try:
                outcome = execute_foreground(
                    client, existing.id, screen, max_wait=max_wait, quiet=json_output
                )
                ran = True
            except InstanceBusyError:  # another process took it meanwhile
                outcome = client.status(existing.id)
        if not ran and outcome.holder is not None:
            outcome = _follow(client, client.follow(outcome.id), outcome, screen, quiet=json_output)
    if json_output:
        screen.json(outcome.to_json())
    elif not ran:
        screen.show(render.status_view(outcome, client.clock.now(), screen.plain))
    raise typer.Exit(EXIT_OK if detach else exit_code_of(outcome))


@command()
def status(
    *,
    instance_id: InstanceArgument,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the instance finishes or suspends.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show where each error was raised (its traceback)."
        ),
    ] = False,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Show an instance: its status, what it waits for, and its steps."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    follower = client.follow(instance_id)  # --watch reads only the journal's new lines
    current = follower.status()
    if watch and not _settled(current):
        current = _follow(client, follower, current, screen, quiet=json_output)
        if not json_output and not screen.plain:
            return  # the live view's last picture stays on the screen
    reason = client.queued_reason(current)
    if json_output:
        document = current.to_json()
        if reason is not None:
            document["queued_reason"] = reason
        screen.json(document)
    else:
        from wfcli.ui.render import status_view, tracebacks_view

        screen.show(status_view(current, client.clock.now(), screen.plain))
        if reason is not None:
            screen.note(f"queued: {reason}; a worker starts it when there is room")
        if verbose:
            screen.show(tracebacks_view(current))


_WATCH_INTERVAL = 0.5


def _settled(current: "InstanceStatus") -> bool:
    """Whether ``--watch`` can stop: finished, suspended, or interrupted."""
    return current.finished or current.status in ("waiting", "paused") or current.interrupted


def _follow(
    client: "WorkflowClient",
    follower: "JournalFollower",
    current: "InstanceStatus",
    screen: Screen,
    *,
    quiet: bool,
) -> "InstanceStatus":
    """Read the instance again until it settles (:func:`_settled`) and return it: drawn
    live on a terminal (the last picture stays), a line per new status when plain,
    nothing when ``quiet``."""
    if quiet or screen.plain:
        return _watch_plain(follower, current, screen, announce=not quiet)
    from rich.live import Live

    from wfcli.ui import render

    now = client.clock.now
    with Live(render.status_view(current, now(), plain=False), console=screen.out) as live:
        while not _settled(current):
            time.sleep(_WATCH_INTERVAL)
            current = follower.status()
            live.update(render.status_view(current, now(), plain=False))
    return current


def _watch_plain(
    follower: "JournalFollower", current: "InstanceStatus", screen: Screen, *, announce: bool
) -> "InstanceStatus":
    from wfcli.ui.render import status_line

    shown = ""
    while not _settled(current):
        line = status_line(current)
        if announce and line != shown:
            screen.say(f"{current.id}: {line}")
            shown = line
        time.sleep(_WATCH_INTERVAL)
        current = follower.status()
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
    from wfcli.core.redaction import shown_record

    screen = Screen()
    client = open_session(config, store, load=False).client
    records = client.history(instance_id)
    if json_output:
        shown = [record_to_json(shown_record(r)) for r in records]
        screen.json({"id": instance_id, "records": shown})
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
    *,
    instance_id: InstanceArgument,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Pause an instance (a step in flight finishes first)."""
    screen = Screen()
    current = open_session(config, store, load=False).client.pause(instance_id)
    if json_output:
        screen.json(current.to_json())
    else:
        from wfcli.ui.render import status_line

        screen.say(f"{instance_id}: {status_line(current)}")


@command()
def terminate(
    *,
    instance_id: InstanceArgument,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="Run the rollbacks of its started steps first."),
    ] = False,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Terminate an instance: nothing more runs (a step in flight finishes first)."""
    from wfcli.ui.render import termination_line

    screen = Screen()
    client = open_session(config, store, load=rollback).client
    current = client.terminate(instance_id, rollback=rollback)
    if rollback and current.state.rolling_back and current.holder is None:
        current = execute_foreground(client, instance_id, screen, max_wait=None, quiet=json_output)
    if json_output:
        screen.json(current.to_json())
    else:
        screen.say(termination_line(current))


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
    fork_id: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="NEW_ID",
            show_default=False,
            help="Fork: run a new instance NEW_ID that keeps the steps before --from-step; "
            "the original is left as it is.",
        ),
    ] = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Run an instance again with the same params, in the foreground: the same instance
    from the start (or --from-step), or a fork of it (--as)."""
    screen = Screen()
    client = open_session(config, store, load=True).client
    if fork_id is not None:
        if from_step is None:
            raise WorkflowInputError("--as", "a fork needs --from-step NAME")
        target = client.fork(instance_id, from_step=from_step, new_id=fork_id).id
    else:
        current = client.restart(instance_id, from_step=from_step)
        target = instance_id
        if current.holder is not None:
            if json_output:
                screen.json(current.to_json())
            else:
                screen.say(
                    f"{instance_id}: restart requested; process {current.holder.pid}, "
                    "which executes it, will restart it"
                )
            return
    outcome = execute_foreground(client, target, screen, max_wait=None, quiet=json_output)
    if json_output:
        screen.json(outcome.to_json())
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
    sensitive: Annotated[
        bool,
        typer.Option("--sensitive", help='Every view shows the payload as "[REDACTED]".'),
    ] = False,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Send an event; an instance waiting for it goes on in the foreground."""
    from wfcli.client.client import EventFate
    from wfcli.ui.render import status_line

    screen = Screen()
    value = parse_json_input(payload, "--payload")
    session = open_session(config, store, load=False)
    delivery = session.client.deliver_event(instance_id, event_type, value, sensitive=sensitive)
    current = delivery.status

    def report(fate: str, line: str | None, code: int = EXIT_OK) -> NoReturn:
        """The answer (``line`` for people, None after a run's summary) and the exit."""
        if json_output:
            screen.json({"event_type": event_type, "fate": fate, "instance": current.to_json()})
        elif line is not None:
            screen.say(f"{instance_id}: {line}")
        raise typer.Exit(code)

    if delivery.fate is EventFate.HOLDER_TAKES:
        assert current.holder is not None
        report(
            "holder_takes",
            f"event {event_type!r} sent; process {current.holder.pid}, "
            "which executes the instance, will take it",
        )
    if delivery.fate is EventFate.BUFFERED:
        report(
            "buffered",
            f"event {event_type!r} buffered ({current.status}); "
            "a later wait for that type takes it",
        )
    if delivery.fate is EventFate.TAKEN:
        report("taken", f"event {event_type!r} taken; the instance is {status_line(current)}")
    if session.project is None:
        if not json_output:
            screen.note(f"continue with `wf resume {instance_id}` where its workflows.toml is")
        report("sent", f"event {event_type!r} sent", EXIT_NOT_FINISHED)
    session.load_workflows()
    try:
        current = execute_foreground(
            session.client, instance_id, screen, max_wait=None, quiet=json_output
        )
    except InstanceBusyError as error:
        current = session.client.status(instance_id)
        report("holder_takes", f"event sent; {error}, which will take it")
    report("ran", None, exit_code_of(current))
