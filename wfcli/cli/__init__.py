"""The ``wf`` command line: parse, call the client, render.

:mod:`wfcli.cli.framework` has what every command shares (the app, the error-to-exit-code
mapping, the shared options, the session). The commands are grouped by what they act on:
:mod:`~wfcli.cli.commands` (instances), :mod:`~wfcli.cli.worker`,
:mod:`~wfcli.cli.project` (workflow code) and :mod:`~wfcli.cli.store` (the store as a
whole). Adding a command is a function decorated with :func:`~wfcli.cli.framework.command`
in one of them (or in a new module imported below) that opens a session with
:func:`~wfcli.cli.framework.open_session` and renders with :mod:`wfcli.ui.render`.
"""

from wfcli.cli.framework import app, exit_code_for_error, exit_code_for_status, main

# Registering the commands; ``wf --help`` lists them in this order.
from wfcli.cli import commands, timeline, worker, project, store  # noqa: F401  isort: skip

__all__ = ["app", "exit_code_for_error", "exit_code_for_status", "main"]
