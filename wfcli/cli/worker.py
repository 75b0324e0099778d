"""``wf worker``: a :class:`~wfcli.client.worker.Worker` stopped by SIGINT or SIGTERM, its
events printed as lines."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from wfcli.cli.framework import (
    EXIT_STORE_FAILED,
    ConfigOption,
    Screen,
    StoreOption,
    command,
    exit_code_for_error,
    open_session,
    parse_duration_option,
)
from wfcli.errors import WorkflowError

if TYPE_CHECKING:
    from wfcli.client.views import InstanceStatus
    from wfcli.engine.step import RunObserver
    from wfcli.store.contract import Damage
    from wfcli.ui.render import LineRunLog


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

    SIGINT or SIGTERM stops it cleanly: steps in flight finish, then it exits. With
    --once it exits 6 if the store failed under an instance (left for the next run).
    """
    import signal

    from wfcli.client.worker import Worker

    screen = Screen()
    interval = parse_duration_option(poll, "--poll")
    client = open_session(config, store, load=True, creates=True).client
    events = WorkerLines(screen, client.clock.now)
    runner = Worker(
        client, concurrency=concurrency, poll_interval=interval, once=once, events=events
    )

    def request_stop(signum: int, frame: object) -> None:
        runner.stop()

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    screen.note(f"worker: store {client.store.location()}, up to {concurrency} at a time")
    try:
        runner.run()
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    screen.note("worker: stopped")
    if once and events.store_failed:
        raise typer.Exit(EXIT_STORE_FAILED)


class WorkerLines:
    """A worker's events as lines: each run's steps and outcome on stdout, prefixed with
    the instance ID; failures and skipped journals as errors, stopping as a note."""

    def __init__(self, screen: Screen, now: Callable[[], datetime]) -> None:
        self.screen = screen
        self.now = now
        self.store_failed = False
        """Whether the store failed under an instance (it is tried again later)."""
        self._logs: dict[str, LineRunLog] = {}

    def started(self, instance_id: str) -> "RunObserver":
        from wfcli.ui.render import LineRunLog

        log = self._logs[instance_id] = LineRunLog(
            self.screen.stdout, self.now, prefix=f"{instance_id}: "
        )
        return log

    def _run_ended(self, instance_id: str) -> None:
        """The run's lines go out before what is said about its end."""
        log = self._logs.pop(instance_id, None)
        if log is not None:
            log.flush()

    def finished(self, status: "InstanceStatus") -> None:
        from wfcli.ui.render import status_line

        self._run_ended(status.id)
        self.screen.say(f"{status.id}: {status_line(status)}")

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        self._run_ended(instance_id)
        if exit_code_for_error(error) == EXIT_STORE_FAILED:
            self.store_failed = True
        self.screen.error(f"{instance_id}: {error}")

    def skipped(self, error: "Damage") -> None:
        self.screen.error(f"skipped: {error}")

    def stopping(self, in_flight: Sequence[str]) -> None:
        self.screen.note(f"worker: stopping once the steps in flight end ({', '.join(in_flight)})")
