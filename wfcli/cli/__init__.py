"""The ``wf`` command line: parse, call the client, render."""

from wfcli.cli.commands import app, exit_code_for_error, exit_code_for_status, main

__all__ = ["app", "exit_code_for_error", "exit_code_for_status", "main"]
