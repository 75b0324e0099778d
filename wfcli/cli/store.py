"""The commands that look after the store as a whole: delete, prune, doctor, and moving
instances between stores (export, import)."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wfcli.cli.framework import (
    EXIT_BUSY,
    EXIT_ERRORED,
    EXIT_OK,
    ConfigOption,
    JsonFlag,
    Screen,
    StoreOption,
    command,
    open_session,
    parse_duration_option,
)
from wfcli.errors import InstanceBusyError, WorkflowInputError

if TYPE_CHECKING:
    from wfcli.client.client import WorkflowClient
    from wfcli.store.contract import Damage


@command()
def delete(
    *,
    instance_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Instances to delete.")
    ],
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Delete instances and their journals."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    targets = list(dict.fromkeys(instance_ids))
    for instance_id in targets:  # every ID must exist before anything is deleted
        client.status(instance_id)
    deleted, busy = _delete_all(client, targets, screen, quiet=json_output)
    if json_output:
        screen.json({"deleted": deleted, "errors": busy})
    raise typer.Exit(EXIT_OK if len(deleted) == len(targets) else EXIT_BUSY)


def _delete_all(
    client: "WorkflowClient", instance_ids: Iterable[str], screen: Screen, *, quiet: bool
) -> tuple[list[str], list[dict[str, str]]]:
    """Delete each instance, skipping those another process executes: the IDs deleted
    and ``{"id", "message"}`` for each skipped one, each also said on the screen unless
    ``quiet`` (``--json``, where errors still go to stderr)."""
    deleted: list[str] = []
    busy: list[dict[str, str]] = []
    for instance_id in instance_ids:
        try:
            client.delete(instance_id)
        except InstanceBusyError as error:
            screen.error(str(error))
            busy.append({"id": instance_id, "message": str(error)})
        else:
            deleted.append(instance_id)
            if not quiet:
                screen.say(f"deleted {instance_id}")
    return deleted, busy


@command()
def prune(
    *,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="DUR", show_default=False, help="Age since the instance ended."
        ),
    ],
    status_filter: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            show_default=False,
            help="Only these finished statuses (repeatable; default: complete, errored, "
            "terminated).",
        ),
    ] = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Delete finished instances that ended longer ago than --older-than."""
    from wfcli.core.state import TERMINAL_STATUSES

    screen = Screen()
    age = parse_duration_option(older_than, "--older-than")
    wanted = status_filter or sorted(TERMINAL_STATUSES)
    for name in wanted:
        if name not in TERMINAL_STATUSES:
            raise WorkflowInputError(
                "--status",
                f"{name!r}: prune removes finished instances only "
                f"({', '.join(sorted(TERMINAL_STATUSES))})",
            )
    client = open_session(config, store, load=False).client
    cutoff = client.clock.now() - age
    damaged: list[Damage] = []
    old = [
        s.id
        for s in client.list_instances(statuses=wanted, damaged=damaged)
        if s.ended is not None and s.ended <= cutoff
    ]
    for error in damaged:
        screen.note(f"skipped: {error}")
    deleted, busy = _delete_all(client, reversed(old), screen, quiet=json_output)
    if json_output:
        screen.json(
            {"deleted": deleted, "errors": busy, "damaged": [str(error) for error in damaged]}
        )
    else:
        screen.say(f"pruned {len(deleted)} instance{'' if len(deleted) == 1 else 's'}")
    raise typer.Exit(EXIT_OK if len(deleted) == len(old) else EXIT_BUSY)


@command()
def doctor(
    *, json_output: JsonFlag = False, config: ConfigOption = None, store: StoreOption = None
) -> None:
    """Check the store, read-only: damaged journals and inbox files, crash leftovers.

    Exit 0 when healthy (notes only), 1 when problems are found.
    """
    screen = Screen()
    report = open_session(config, store, load=False).client.store.check()
    if json_output:
        screen.json(report.to_json())
    else:
        for finding in report.findings:
            screen.say(str(finding))
        screen.say(report.summary())
    raise typer.Exit(EXIT_OK if report.healthy else EXIT_ERRORED)


@command()
def export(
    *,
    instance_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Instances to export.")
    ],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Write instances (journal lines and unapplied messages) to stdout, for wf import."""
    from wfcli.store.exchange import encode_export

    client = open_session(config, store, load=False).client
    exported = [client.export_instance(i) for i in dict.fromkeys(instance_ids)]
    stdout = Screen().stdout
    stdout.write("".join(encode_export(instance) for instance in exported))
    stdout.flush()


@command("import")
def import_instances(
    *,
    source: Annotated[
        str, typer.Argument(metavar="FILE", help="A file written by wf export ('-': stdin).")
    ],
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create the instances of a wf export file in the store; an ID it has is refused."""
    from wfcli.store.exchange import decode_export

    screen = Screen()
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkflowInputError(source, "not UTF-8 text (not a wf export file)") from None
    except OSError as error:
        raise WorkflowInputError(source, f"cannot read it: {error.strerror}") from None
    instances = list(decode_export(text, "<stdin>" if source == "-" else source))
    client = open_session(config, store, load=False, creates=True).client
    client.import_instances(instances)
    if json_output:
        screen.json({"imported": [instance.instance_id for instance in instances]})
        return
    for instance in instances:
        screen.say(f"imported {instance.instance_id}")
