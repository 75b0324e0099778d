"""What every ``wf`` command shares: the typer :data:`app` and :func:`main`, the exit
codes, the :class:`Screen`, the shared options, the :class:`Session`, input parsing and
running an instance in the foreground.

Every command is registered with :func:`command`, which turns wfcli's errors
into one red ``error: ...`` line and an exit code (SPEC §5), in one place:
0 done, 1 errored, 2 bad usage/config/input, 3 not finished, 4 terminated,
5 busy. The commands are in the modules beside this one (see :mod:`wfcli.cli`).
"""

# No ``from __future__ import annotations``: typer reads every command's annotations at
# each start, and string annotations cost an ``eval`` per parameter (~10 ms in all). Names
# imported only for type checking are quoted instead.
import contextlib
import functools
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar, cast

import typer

from wfcli.errors import (
    InstanceBusyError,
    LeaseLostError,
    StoreFaultError,
    WorkflowError,
    WorkflowInputError,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from typer.models import CommandInfo

    from wfcli.client.client import WorkflowClient
    from wfcli.client.views import InstanceStatus
    from wfcli.project.schema import Project
    from wfcli.store.contract import JournalStore

__all__ = [
    "EXIT_BUSY",
    "EXIT_ERRORED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FINISHED",
    "EXIT_OK",
    "EXIT_STORE_FAILED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "ConfigOption",
    "InstanceArgument",
    "JsonFlag",
    "MaxWaitOption",
    "Screen",
    "Session",
    "StatusFilter",
    "StoreOption",
    "WorkflowFilter",
    "app",
    "command",
    "execute_foreground",
    "exit_code_for_error",
    "exit_code_for_status",
    "exit_code_of",
    "main",
    "open_session",
    "parse_duration_option",
    "parse_json_input",
    "registered_command",
    "worst_exit_code",
]

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


def _show_version(asked: bool) -> None:
    if asked:
        # `wf` is a console script, so wfcli is installed: its metadata has the version
        # (what ``wfcli.__version__`` reads, a layer above this one).
        from importlib.metadata import version

        print(f"wf (wfcli) {version('wfcli')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version of wfcli and exit.",
        ),
    ] = False,
) -> None:
    """The options of ``wf`` itself, before the command."""


# --- exit codes -------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERRORED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 3
EXIT_TERMINATED = 4
EXIT_BUSY = 5
EXIT_STORE_FAILED = 6
EXIT_INTERRUPTED = 130
_STATUS_EXIT_CODES = {"complete": EXIT_OK, "errored": EXIT_ERRORED, "terminated": EXIT_TERMINATED}
# For commands over several instances the worst outcome wins, in this order. Bad
# input is found before anything runs, so it outranks everything else.
_SEVERITY = (
    EXIT_USAGE,
    EXIT_STORE_FAILED,
    EXIT_BUSY,
    EXIT_ERRORED,
    EXIT_TERMINATED,
    EXIT_NOT_FINISHED,
    EXIT_OK,
)


def exit_code_for_status(status: str) -> int:
    """0 complete, 1 errored, 4 terminated, 3 anything not finished."""
    return _STATUS_EXIT_CODES.get(status, EXIT_NOT_FINISHED)


def exit_code_of(status: "InstanceStatus") -> int:
    """:func:`exit_code_for_status`, and 1 for an instance paused because it diverged."""
    return EXIT_ERRORED if status.divergence is not None else exit_code_for_status(status.status)


def exit_code_for_error(error: BaseException) -> int:
    """6 when the store failed; 5 when another process holds the instance (or took it
    over); 2 for every other error a user causes."""
    if isinstance(error, (StoreFaultError, OSError)):
        return EXIT_STORE_FAILED
    if isinstance(error, (InstanceBusyError, LeaseLostError)):
        return EXIT_BUSY
    return EXIT_USAGE


def worst_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a command over several instances: the worst outcome's."""
    return min(codes, key=_SEVERITY.index, default=EXIT_OK)


# --- output -------------------------------------------------------------------------


class Screen:
    """stdout and stderr for one command: rich on a terminal, plain text otherwise."""

    # The consoles (and rich) are made on first use: JSON output needs neither.
    @functools.cached_property
    def out(self) -> "Console":
        from rich.console import Console

        console = Console(file=cast("TextIO", self.stdout), highlight=False)
        console.soft_wrap = not console.is_terminal
        return console

    @functools.cached_property
    def stdout(self) -> "ClosableStdout":
        return ClosableStdout(sys.stdout)

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

    def json(self, document: object) -> None:
        """One JSON document: indented on a terminal, else on one line for programs.

        Indenting forces ``json``'s pure-Python encoder, ~4x slower on a long ``wf list``.
        """
        import json

        if sys.stdout.isatty():
            text = json.dumps(document, indent=2, ensure_ascii=False)
        else:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        self.stdout.write(text + "\n")
        self.stdout.flush()


class ClosableStdout(io.TextIOBase):
    """stdout that drops what is written once its reader has gone (``wf run | head -1``).

    A closed pipe never stops a command: its output is dropped, the run goes on, and
    the exit code is the instance's. The descriptor is pointed at the null device, so
    the interpreter's last flush at exit has nowhere to fail either.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._closed_pipe = False
        # A worker's threads write lines here at once (a text stream is not thread-safe).
        self._mutex = threading.Lock()

    def write(self, text: str) -> int:
        with self._mutex:
            if not self._closed_pipe:
                try:
                    self._stream.write(text)
                except BrokenPipeError:
                    self._drop()
        return len(text)

    def flush(self) -> None:
        with self._mutex:
            if not self._closed_pipe:
                try:
                    self._stream.flush()
                except BrokenPipeError:
                    self._drop()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    def fileno(self) -> int:
        return self._stream.fileno()

    def _drop(self) -> None:
        self._closed_pipe = True
        try:
            descriptor = self._stream.fileno()
        except (OSError, ValueError):  # not a real file (a test's capture)
            return
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)


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
            except (WorkflowError, OSError) as error:
                _fail(error, exit_code_for_error(error))
            except KeyboardInterrupt:
                Screen().note("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            finally:
                _close_sessions()

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
    """What a command works with: the project (None with ``--store`` alone) and a client
    on the store."""

    project: "Project | None"
    client: "WorkflowClient"

    def load_workflows(self) -> None:
        """Import the project's workflow code into the client: for a command that opened
        the session with ``load=False`` and turns out to execute."""
        if self.project is not None:
            self.client.workflows.update(self.project.load_workflows())


_OPEN_STORES: list["JournalStore"] = []
"""The stores the running command opened, closed when it returns (a command run
in-process, as by a test's runner, leaves no database connection behind)."""


def _close_sessions() -> None:
    while _OPEN_STORES:
        _OPEN_STORES.pop().close()


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
    _OPEN_STORES.append(client.store)
    return Session(project, client)


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
        with _terminate_as_interrupt():
            status = _execute_shown(client, instance_id, screen, max_wait=max_wait, quiet=quiet)
    except KeyboardInterrupt:
        screen.note(f"interrupted: continue with `wf resume {instance_id}`")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        from wfcli.ui import render

        elapsed = timedelta(seconds=time.monotonic() - started)
        screen.show(render.run_summary(status, elapsed, screen.plain))
    return status


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a foreground run as Ctrl-C does: between steps, resumable."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _execute_shown(
    client: "WorkflowClient",
    instance_id: str,
    screen: Screen,
    *,
    max_wait: timedelta | None,
    quiet: bool,
) -> "InstanceStatus":
    """Execute, drawn live on a terminal, one line per event otherwise, or quietly."""
    if quiet:
        return client.execute(instance_id, max_inline_wait=max_wait)
    from wfcli.ui import render

    if screen.plain:
        log = render.LineRunLog(screen.stdout, client.clock.now)
        try:
            return client.execute(instance_id, observer=log, max_inline_wait=max_wait)
        finally:
            log.flush()
    from rich.live import Live

    view = render.LiveRunView(client.clock.now)
    with Live(view, console=screen.out, refresh_per_second=8):
        try:
            return client.execute(instance_id, observer=view, max_inline_wait=max_wait)
        finally:
            view.settle()


# click's error classes, reached through what typer re-exports in every supported
# version (typer >= 0.28 vendors click): BadParameter < UsageError < ClickException.
_ClickException = cast("type[Exception]", typer.BadParameter.__mro__[2])


def registered_command(name: str) -> "CommandInfo | None":
    """The registered command called ``name`` on the command line, or None."""
    for info in app.registered_commands:
        if name == (info.name or getattr(info.callback, "__name__", "").replace("_", "-")):
            return info
    return None


def _only_the_command_asked_for(arguments: list[str]) -> None:
    """Leave only the command ``arguments`` start with registered, if they name one:
    typer builds every registered command's parameters at each start (~10 ms for all),
    and a process runs one. ``wf --help`` and a mistyped name still see them all."""
    asked = registered_command(arguments[0]) if arguments else None
    if asked is not None:
        app.registered_commands[:] = [asked]


def main() -> None:
    """Run ``wf`` on ``sys.argv`` with the commands registered so far (the console
    script, :func:`wfcli.cli.main`, registers them): a bad command line is one
    ``error:`` line, exit 2."""
    _only_the_command_asked_for(sys.argv[1:2])
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
