"""The ``wf`` command line: parse, call the client, render.

Every command is registered with :func:`command`, which turns wfcli's errors
into one red ``error: ...`` line and an exit code (SPEC §5), in one place:
0 done, 1 errored, 2 bad usage/config/input, 3 not finished, 4 terminated,
5 busy. Adding a command is a decorated function that opens a session with
:func:`open_session` and renders with :mod:`wfcli.ui.render`.
"""

# No ``from __future__ import annotations``: typer reads every command's annotations at
# each start, and string annotations cost an ``eval`` per parameter (~10 ms in all). Names
# imported only for type checking are quoted instead.
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from wfcli.errors import InstanceBusyError, JournalCorruptError, WorkflowError, WorkflowInputError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from wfcli.client.client import WorkflowClient
    from wfcli.client.views import InstanceStatus
    from wfcli.project.schema import Project

__all__ = ["app", "command", "exit_code_for_error", "exit_code_for_status", "main"]

app = typer.Typer(
    name="wf",
    help="Durable workflows for Python: run, inspect and control instances.\n\n"
    "The store is the folder given by --store, else $WF_STORE, else [store] dir in "
    "workflows.toml, else a per-project folder in the user data directory. "
    "workflows.toml is --config, else $WF_CONFIG, else the nearest one from the "
    "current folder up.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# --- exit codes -------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERRORED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 3
EXIT_TERMINATED = 4
EXIT_BUSY = 5
EXIT_INTERRUPTED = 130
_STATUS_EXIT_CODES = {"complete": EXIT_OK, "errored": EXIT_ERRORED, "terminated": EXIT_TERMINATED}
# For commands over several instances the worst outcome wins, in this order. Bad
# input is found before anything runs, so it outranks everything else.
_SEVERITY = (EXIT_USAGE, EXIT_BUSY, EXIT_ERRORED, EXIT_TERMINATED, EXIT_NOT_FINISHED, EXIT_OK)


def exit_code_for_status(status: str) -> int:
    """0 complete, 1 errored, 4 terminated, 3 anything not finished."""
    return _STATUS_EXIT_CODES.get(status, EXIT_NOT_FINISHED)


def exit_code_for_error(error: BaseException) -> int:
    """5 when another process holds the instance; 2 for every other error a user causes."""
    return EXIT_BUSY if isinstance(error, InstanceBusyError) else EXIT_USAGE


def _worst(codes: Iterable[int]) -> int:
    return min(codes, key=_SEVERITY.index, default=EXIT_OK)


# --- output -------------------------------------------------------------------------


class Screen:
    """stdout and stderr for one command: rich on a terminal, plain text otherwise."""

    # The consoles (and rich) are made on first use: JSON output needs neither.
    @functools.cached_property
    def out(self) -> "Console":
        from rich.console import Console

        console = Console(highlight=False)
        console.soft_wrap = not console.is_terminal
        return console

    @functools.cached_property
    def err(self) -> "Console":
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def plain(self) -> bool:
        return not self.out.is_terminal

    def show(self, renderable: "RenderableType") -> None:
        self.out.print(renderable)

    def say(self, text: str) -> None:
        """One line of text on stdout, printed as is (no markup)."""
        self.out.print(text, markup=False)

    def note(self, text: str) -> None:
        """One line for people on stderr (stdout stays parseable)."""
        self.err.print(text, markup=False, style="yellow")

    def error(self, message: str) -> None:
        self.err.print(f"error: {message}", markup=False, style="red")

    @staticmethod
    def json(document: object) -> None:
        """One JSON document: indented on a terminal, else on one line for programs.

        Indenting forces ``json``'s pure-Python encoder, ~4x slower on a long ``wf list``.
        """
        import json

        if sys.stdout.isatty():
            text = json.dumps(document, indent=2, ensure_ascii=False)
        else:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _fail(error: BaseException, code: int) -> NoReturn:
    Screen().error(" ".join(str(error).splitlines()))
    raise typer.Exit(code) from None


# --- command registration and error handling -------------------------------------------

_Command = TypeVar("_Command", bound=Callable[..., Any])


def command(name: str | None = None) -> Callable[[_Command], _Command]:
    """Register a ``wf`` command whose wfcli errors become one line and an exit code."""

    def register(function: _Command) -> _Command:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except WorkflowError as error:
                _fail(error, exit_code_for_error(error))
            except OSError as error:
                _fail(error, EXIT_USAGE)
            except KeyboardInterrupt:
                Screen().note("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None

        app.command(name)(guarded)
        return function

    return register


# --- shared options -------------------------------------------------------------------------

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        show_default=False,
        help="workflows.toml to use (default: $WF_CONFIG, else the nearest workflows.toml "
        "from the current folder up).",
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="LOCATION",
        show_default=False,
        help="Store: a folder, a file:// URL or a postgresql:// URL (default: $WF_STORE, "
        "else [store] in workflows.toml, else a per-project folder in the user data "
        "directory).",
    ),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (schema: docs/cli-json.md).")
]
MaxWaitOption = Annotated[
    str | None,
    typer.Option(
        "--max-wait",
        metavar="DUR",
        show_default=False,
        help="Sleep through waits up to this long in the foreground (e.g. '30 seconds'); "
        "longer ones suspend the instance. Default: [defaults] in workflows.toml.",
    ),
]
InstanceArgument = Annotated[str, typer.Argument(metavar="ID", help="Instance ID.")]
WorkflowFilter = Annotated[
    str | None,
    typer.Option(metavar="NAME", show_default=False, help="Only this workflow's instances."),
]
StatusFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--status", metavar="STATUS", show_default=False, help="Only these statuses (repeatable)."
    ),
]


@dataclass(frozen=True, slots=True)
class Session:
    """What a command works with: the project (None with ``--store`` alone), where the
    store is, and a client on it."""

    project: "Project | None"
    store_location: str
    client: "WorkflowClient"


def open_session(
    config: Path | None, store: str | None, *, load: bool, creates: bool = False
) -> Session:
    """Resolve the project, the store and a client, for every command.

    Commands that execute instances pass ``load=True`` (the project's workflow
    code is imported). The others pass ``load=False``: they need no workflow
    code and, given ``--store`` or ``$WF_STORE``, no workflows.toml at all.
    Commands that may make the store pass ``creates=True``; for the others a store
    folder given by ``--store`` or ``$WF_STORE`` must exist (the project's own store
    may not yet: its first run makes it).
    """
    from wfcli import project as project_config

    environ = os.environ
    cwd = Path.cwd()
    explicit_config = None if config is None else str(config)
    project = None
    store_given = store is not None or bool(environ.get("WF_STORE"))
    config_given = explicit_config is not None or bool(environ.get("WF_CONFIG"))
    if load or config_given or not store_given or project_config.find_config(cwd) is not None:
        path = project_config.resolve_config_path(explicit_config, environ, cwd)
        project = project_config.load_project(path)
    choice = project_config.resolve_store(store, environ, project)
    client = project_config.open_client(
        project, choice.location, load=load, must_exist=choice.given and not creates
    )
    return Session(project, choice.location, client)


# --- input parsing --------------------------------------------------------------------------


def parse_json_input(text: str | None, option: str) -> object:
    """The value of ``--params``/``--payload``: JSON text, ``@path`` or ``-`` (stdin)."""
    import json

    if text is None:
        return None
    source = option
    try:
        if text == "-":
            source = f"{option} from stdin"
            raw = sys.stdin.read()
        elif text.startswith("@"):
            source = f"{option} from {text[1:]}"
            raw = Path(text[1:]).read_text(encoding="utf-8")
        else:
            raw = text
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise WorkflowInputError(source, f"cannot read it: {reason}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise WorkflowInputError(
            source, f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise WorkflowInputError(source, "not valid JSON: nested too deeply") from None
    except ValueError:  # the one other failure of json.loads: an int over Python's digit limit
        raise WorkflowInputError(source, "not valid JSON: an integer has too many digits") from None


def parse_duration_option(text: str, option: str) -> timedelta:
    """A duration option: seconds (``0.5``) or text (``'30 seconds'``)."""
    from wfcli.core.durations import parse_duration

    value: object
    try:
        value = float(text)
    except ValueError:
        value = text
    return parse_duration(value, option)


# --- running in the foreground ----------------------------------------------------------


def execute_foreground(
    client: "WorkflowClient",
    instance_id: str,
    screen: Screen,
    *,
    max_wait: timedelta | None,
    quiet: bool,
) -> "InstanceStatus":
    """Execute until the instance completes, errors or suspends, showing it live.

    On a terminal a rich live view; otherwise one line per event; ``quiet``
    (``--json``) shows nothing. Then a summary, unless quiet. Ctrl-C says how
    to resume and exits 130.
    """
    started = time.monotonic()
    try:
        if quiet:
            return client.execute(instance_id, max_inline_wait=max_wait)
        from wfcli.ui import render

        if screen.plain:
            log = render.LineRunLog(screen.out, client.clock.now)
            status = client.execute(instance_id, observer=log, max_inline_wait=max_wait)
        else:
            from rich.live import Live

            view = render.LiveRunView(client.clock.now)
            with Live(view, console=screen.out, refresh_per_second=8):
                try:
                    status = client.execute(instance_id, observer=view, max_inline_wait=max_wait)
                finally:
                    view.settle()
    except KeyboardInterrupt:
        screen.note(f"interrupted: continue with `wf resume {instance_id}`")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    elapsed = timedelta(seconds=time.monotonic() - started)
    screen.show(render.run_summary(status, elapsed, screen.plain))
    return status


# --- commands ---------------------------------------------------------------------------------


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
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create an instance of WORKFLOW and run it in the foreground."""
    screen = Screen()
    session = open_session(config, store, load=True, creates=True)
    value = parse_json_input(params, "--params")
    wait = None if max_wait is None else parse_duration_option(max_wait, "--max-wait")
    handle = session.client.create(workflow, params=value, instance_id=instance_id)
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
    raise typer.Exit(exit_code_for_status(status.status))


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
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List instances, newest first."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    damaged: list[JournalCorruptError] = []
    found = client.list_instances(
        workflow=workflow, statuses=status_filter or (), limit=limit, damaged=damaged
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
    from wfcli.errors import InvalidStateError

    screen = Screen()
    if not instance_ids and not due:
        raise WorkflowInputError("wf resume", "give instance IDs, or --due")
    wait = None if max_wait is None else parse_duration_option(max_wait, "--max-wait")
    client = open_session(config, store, load=True).client
    targets = list(dict.fromkeys(instance_ids or ()))
    for instance_id in targets:  # check everything before running anything
        current = client.status(instance_id)
        if current.finished:
            raise InvalidStateError(instance_id, current.status, "resume")
    if due:
        targets += [i for i in client.due() if i not in targets]
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
            codes.append(exit_code_for_status(outcome.status))
        except WorkflowError as error:
            screen.error(str(error))
            codes.append(exit_code_for_error(error))
            outcome = client.status(instance_id)
        documents.append(outcome.to_json())
    if json_output:
        screen.json({"instances": documents})
    raise typer.Exit(_worst(codes))


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
    *, instance_id: InstanceArgument, config: ConfigOption = None, store: StoreOption = None
) -> None:
    """Terminate an instance: nothing more runs (a step in flight finishes first)."""
    from wfcli.ui.render import status_line

    current = open_session(config, store, load=False).client.terminate(instance_id)
    Screen().say(f"{instance_id}: {status_line(current)}")


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
    raise typer.Exit(exit_code_for_status(outcome.status))


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
    from wfcli.ui.render import status_line

    screen = Screen()
    value = parse_json_input(payload, "--payload")
    session = open_session(config, store, load=False)
    current = session.client.send_event(instance_id, event_type, value)
    wait = current.waiting
    if current.holder is not None:
        screen.say(
            f"{instance_id}: event {event_type!r} sent; process {current.holder.pid}, "
            "which executes the instance, will take it"
        )
        return
    if wait is None or wait.kind != "event" or wait.event_type != event_type:
        if current.state.buffered_events(event_type) or "event" in current.pending_messages:
            fate = f"buffered ({current.status}); a later wait for that type takes it"
        else:  # a process that held the instance took it and let go meanwhile
            fate = f"taken; the instance is {status_line(current)}"
        screen.say(f"{instance_id}: event {event_type!r} {fate}")
        return
    if session.project is None:
        screen.say(f"{instance_id}: event {event_type!r} sent")
        screen.note(f"continue with `wf resume {instance_id}` where its workflows.toml is")
        raise typer.Exit(EXIT_NOT_FINISHED)
    from wfcli.project import open_client

    client = open_client(session.project, session.store_location, load=True)
    try:
        outcome = execute_foreground(client, instance_id, screen, max_wait=None, quiet=False)
    except InstanceBusyError as error:
        screen.say(f"{instance_id}: event sent; {error}, which will take it")
        return
    raise typer.Exit(exit_code_for_status(outcome.status))


@command()
def worker(
    *,
    concurrency: Annotated[
        int, typer.Option(min=1, metavar="N", help="Instances executed at once (threads).")
    ] = 1,
    once: Annotated[
        bool, typer.Option("--once", help="Run what is due until nothing is, then exit.")
    ] = False,
    poll: Annotated[
        str, typer.Option(metavar="DUR", help="Pause between scans of the store.")
    ] = "1 second",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Execute due instances in a loop: queued, interrupted, and done waiting.

    SIGINT or SIGTERM stops it cleanly: steps in flight finish, then it exits.
    """
    import signal

    from wfcli.ui.render import LineRunLog, status_line

    screen = Screen()
    interval = parse_duration_option(poll, "--poll").total_seconds()
    client = open_session(config, store, load=True, creates=True).client
    stop = threading.Event()
    failed: set[str] = set()  # errors that would recur on every scan; not retried

    def execute(instance_id: str) -> None:
        log = LineRunLog(screen.out, client.clock.now, prefix=f"{instance_id}: ")
        try:
            outcome = client.execute(instance_id, observer=log, cancel=stop.is_set)
        except InstanceBusyError:
            return  # another worker took it
        except (WorkflowError, OSError) as error:
            failed.add(instance_id)
            screen.error(f"{instance_id}: {error}")
            return
        screen.say(f"{instance_id}: {status_line(outcome)}")

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    screen.note(f"worker: store {client.store.location()}, up to {concurrency} at a time")
    try:
        _work_loop(
            client,
            screen,
            execute=execute,
            stop=stop,
            skip=failed,
            concurrency=concurrency,
            interval=interval,
            once=once,
        )
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    screen.note("worker: stopped")


def _work_loop(
    client: "WorkflowClient",
    screen: Screen,
    *,
    execute: Callable[[str], None],
    stop: threading.Event,
    skip: set[str],
    concurrency: int,
    interval: float,
    once: bool,
) -> None:
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    running: dict[Future[None], str] = {}
    reported: set[str] = set()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="wf-worker") as pool:
        while not stop.is_set():
            free = concurrency - len(running)
            if free:
                taken = set(running.values()) | skip
                damaged: list[JournalCorruptError] = []
                due = client.due(damaged=damaged)
                for problem in map(str, damaged):
                    if problem not in reported:
                        reported.add(problem)
                        screen.error(f"skipped: {problem}")
                for instance_id in [i for i in due if i not in taken][:free]:
                    running[pool.submit(execute, instance_id)] = instance_id
            if once and not running:
                return
            if running:
                done, _ = wait(running, timeout=interval, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    future.result()
            else:
                stop.wait(interval)
        if running:
            in_flight = ", ".join(sorted(running.values()))
            screen.note(f"worker: stopping once the steps in flight end ({in_flight})")


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
    from wfcli.engine.replay import ReplaySummary, replay_many

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


@command()
def delete(
    *,
    instance_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Instances to delete.")
    ],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Delete instances and their journals."""
    screen = Screen()
    client = open_session(config, store, load=False).client
    targets = list(dict.fromkeys(instance_ids))
    for instance_id in targets:  # every ID must exist before anything is deleted
        client.status(instance_id)
    deleted = _delete_all(client, targets, screen)
    raise typer.Exit(EXIT_OK if len(deleted) == len(targets) else EXIT_BUSY)


def _delete_all(client: "WorkflowClient", instance_ids: Iterable[str], screen: Screen) -> list[str]:
    """Delete each instance, skipping (and reporting) those another process executes."""
    deleted = []
    for instance_id in instance_ids:
        try:
            client.delete(instance_id)
        except InstanceBusyError as error:
            screen.error(str(error))
        else:
            deleted.append(instance_id)
            screen.say(f"deleted {instance_id}")
    return deleted


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
    old = [
        s.id
        for s in client.list_instances(statuses=wanted)
        if s.ended is not None and s.ended <= cutoff
    ]
    deleted = _delete_all(client, reversed(old), screen)
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
    sys.stdout.write("".join(encode_export(instance) for instance in exported))
    sys.stdout.flush()


@command("import")
def import_instances(
    *,
    source: Annotated[
        str, typer.Argument(metavar="FILE", help="A file written by wf export ('-': stdin).")
    ],
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
    instances = list(decode_export(text, "<stdin>" if source == "-" else source))
    client = open_session(config, store, load=False, creates=True).client
    client.import_instances(instances)
    for instance in instances:
        screen.say(f"imported {instance.instance_id}")


# click's error classes, reached through what typer re-exports in every supported
# version (typer >= 0.28 vendors click): BadParameter < UsageError < ClickException.
_ClickException = cast("type[Exception]", typer.BadParameter.__mro__[2])


def main() -> None:
    """The ``wf`` console script: a bad command line is one ``error:`` line, exit 2."""
    try:
        code = app(prog_name="wf", standalone_mode=False)
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # `wf` alone: the help, as click shows it
            error.show()  # type: ignore[attr-defined]
        else:
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            print(f"error: {error.format_message()}{hint}", file=sys.stderr)  # type: ignore[attr-defined]
        code = error.exit_code  # type: ignore[attr-defined]
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        code = 1
    sys.exit(code if isinstance(code, int) else EXIT_OK)
