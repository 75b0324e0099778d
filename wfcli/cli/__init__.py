"""The ``wf`` command line: parse, call the client, render.

:mod:`wfcli.cli.framework` has what every command shares (the app, the error-to-exit-code
mapping, the shared options, the session). The commands are grouped by what they act on:
:mod:`~wfcli.cli.commands` (instances), :mod:`~wfcli.cli.worker`,
:mod:`~wfcli.cli.project` (workflow code) and :mod:`~wfcli.cli.store` (the store as a
whole). Adding a command is a function decorated with :func:`~wfcli.cli.framework.command`
in one of them (or in a new module named in :data:`COMMAND_MODULES`) that opens a session
with :func:`~wfcli.cli.framework.open_session` and renders with :mod:`wfcli.ui.render`.
"""

import gc
import importlib
import sys
from typing import TYPE_CHECKING

from wfcli.cli import framework
from wfcli.cli.framework import exit_code_for_error, exit_code_for_status

if TYPE_CHECKING:
    from wfcli.cli.framework import app

__all__ = ["COMMAND_MODULES", "app", "exit_code_for_error", "exit_code_for_status", "main"]

# The modules that register commands; ``wf --help`` lists them in this order.
COMMAND_MODULES = ("commands", "timeline", "worker", "project", "store")


def _register_commands(asked: str | None = None) -> None:
    """Import the command modules in order, stopping at the one that registers ``asked``
    (all of them when it is None or no command's name)."""
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{module}")
        if asked is not None and framework.registered_command(asked) is not None:
            return


def main() -> None:
    """The ``wf`` console script (:func:`wfcli.cli.framework.main`), with only the
    command modules up to the one of the command asked for imported."""
    _register_commands(sys.argv[1] if len(sys.argv) > 1 else None)
    # What the imports made (modules, classes, functions) lives until the process ends:
    # the cycle collector need not walk it again in each full collection and at exit.
    gc.freeze()
    framework.main()


def __getattr__(name: str) -> object:
    if name == "app":  # the whole app, every command registered (tests, embedding)
        _register_commands()
        globals()[name] = framework.app
        return framework.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
