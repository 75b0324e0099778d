"""``wf worker``: a :class:`~wfcli.client.worker.Worker` stopped by SIGINT or SIGTERM, its
events printed as lines (or JSON lines)."""

# No ``from __future__ import annotations`` (see wfcli.cli.framework): typer reads these
# annotations at each start.
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from wfcli.cli.framework import (
    EXIT_INTERRUPTED,
    EXIT_STORE_FAILED,
    ConfigOption,
    JsonFlag,
    Screen,
    StoreOption,
    command,
    exit_code_for_error,
    open_session,
    parse_duration_option,
)
from wfcli.errors import WorkflowError

if TYPE_CHECKING:
    from wfcli.client.schedules import FireOutcome
    from wfcli.client.views import InstanceStatus
    from wfcli.engine.step import RunObserver
    from wfcli.store.contract import Damage
    from wfcli.ui.render import GatheredLines, LineRunLog


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
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line for each thing done.")
    ] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Execute due instances in a loop: queued, interrupted, and done waiting; start
    the instances of the project's schedules; respect its concurrency and rate limits.

    A wait longer than the poll interval suspends its instance and frees the slot.
    SIGINT or SIGTERM stops it cleanly: steps in flight finish, their instances are
    journaled as stopped (queued for the next worker), then it exits; a second
    signal exits at once (exit 130; the step in flight is run again by the next
    worker). With --once it exits 6 if the store failed under an instance.
    """
    import contextlib
    import os
    import signal
    import sys

    from wfcli.client.worker import Worker

    screen = Screen()
    interval = parse_duration_option(poll, "--poll")
    session = open_session(config, store, load=True, creates=True)
    client = session.client
    schedules = session.project.schedules() if session.project is not None else []
    events: WorkerLines = (
        WorkerJsonLines(screen, client.clock.now)
        if json_lines
        else WorkerLines(screen, client.clock.now)
    )
    runner = Worker(
        client,
        concurrency=concurrency,
        poll_interval=interval,
        once=once,
        events=events,
        schedules=schedules,
    )

    def request_stop(signum: int, frame: object) -> None:
        if runner.stopped:  # the second signal: at once, the steps in flight cut short
            with contextlib.suppress(Exception):  # a write this handler cut into
                sys.stdout.flush()
            os.write(2, b"worker: stopped at once (instances in flight resume later)\n")
            os._exit(EXIT_INTERRUPTED)
        runner.stop()

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    events.begin(client.store.location(), concurrency, len(schedules))
    try:
        runner.run()
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    events.end()
    if once and events.store_failed:
        raise typer.Exit(EXIT_STORE_FAILED)


class WorkerLines:
    """A worker's events as lines: each run's steps and outcome on stdout, prefixed with
    the instance ID; fires of schedules on stdout; failures and skipped journals as
    errors; the start, the stop and a summary of what it did as notes."""

    def __init__(self, screen: Screen, now: Callable[[], datetime]) -> None:
        self.screen = screen
        self.now = now
        self.store_failed = False
        """Whether the store failed under an instance (it is tried again later)."""
        self.outcomes: Counter[str] = Counter()
        self.fires: Counter[str] = Counter()
        self.failures = 0
        self._logs: dict[str, LineRunLog] = {}
        self._lines: GatheredLines | None = None  # every run's lines, gathered together

    def begin(self, location: str, concurrency: int, schedules: int) -> None:
        with_schedules = f", {schedules} schedule{'s' * (schedules != 1)}" if schedules else ""
        self.screen.note(f"worker: store {location}, up to {concurrency} at a time{with_schedules}")

    def end(self) -> None:
        done = [f"{count} {status}" for status, count in sorted(self.outcomes.items())]
        parts = []
        if done:
            runs = sum(self.outcomes.values())
            parts.append(f"{runs} run{'s' * (runs != 1)} ({', '.join(done)})")
        if self.failures:
            parts.append(f"{self.failures} failed")
        parts += [
            f"{count} fire{'s' * (count != 1)} {result}"
            for result, count in sorted(self.fires.items())
        ]
        self.screen.note("worker: stopped" + (f": {'; '.join(parts)}" if parts else ""))

    def started(self, instance_id: str) -> "RunObserver | None":
        from wfcli.ui.render import GatheredLines, LineRunLog

        if self._lines is None:
            self._lines = GatheredLines(self.screen.stdout)
        log = self._logs[instance_id] = LineRunLog(self._lines, self.now, prefix=f"{instance_id}: ")
        return log

    def _run_ended(self, instance_id: str) -> None:
        """The run's lines go out before what is said about its end."""
        log = self._logs.pop(instance_id, None)
        if log is not None:
            log.flush()

    def finished(self, status: "InstanceStatus") -> None:
        from wfcli.ui.render import status_line

        self._run_ended(status.id)
        self.outcomes[status.status] += 1
        self.screen.say(f"{status.id}: {status_line(status)}")

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        self._run_ended(instance_id)
        self.failures += 1
        if exit_code_for_error(error) == EXIT_STORE_FAILED:
            self.store_failed = True
        self.screen.error(f"{instance_id}: {error}")

    def skipped(self, error: "Damage") -> None:
        self.screen.error(f"skipped: {error}")

    def stopping(self, in_flight: Sequence[str]) -> None:
        self.screen.note(
            f"worker: stopping once the steps in flight end ({', '.join(in_flight)});"
            " a second Ctrl-C exits at once"
        )

    def fired(self, outcome: "FireOutcome") -> None:
        self.fires[outcome.result] += 1
        from wfcli.core.codec import format_time

        fire = outcome.fire
        when = format_time(fire.scheduled_time)
        if outcome.result == "skipped":
            self.screen.say(
                f"{fire.schedule.name}: fire {when} skipped ({outcome.previous} is not finished)"
            )
        elif outcome.result == "started":
            self.screen.say(f"{fire.instance_id}: started by {fire.schedule.name} for {when}")


class WorkerJsonLines(WorkerLines):
    """A worker's events as JSON lines on stdout (``wf worker --json``; the schema is in
    docs/cli-json.md); errors are lines too, nothing goes to stderr."""

    def line(self, event: str, **fields: object) -> None:
        import json

        from wfcli.core.codec import format_time

        document = {"event": event, "at": format_time(self.now()), **fields}
        self.screen.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
        self.screen.stdout.flush()

    def begin(self, location: str, concurrency: int, schedules: int) -> None:
        self.line("worker", store=location, concurrency=concurrency, schedules=schedules)

    def end(self) -> None:
        self.line(
            "stopped",
            runs=dict(sorted(self.outcomes.items())),
            failed=self.failures,
            fires=dict(sorted(self.fires.items())),
        )

    def started(self, instance_id: str) -> "RunObserver | None":
        self.line("started", id=instance_id)
        return None

    def finished(self, status: "InstanceStatus") -> None:
        self.outcomes[status.status] += 1
        self.line("finished", id=status.id, status=status.status)

    def failed(self, instance_id: str, error: WorkflowError | OSError) -> None:
        self.failures += 1
        if exit_code_for_error(error) == EXIT_STORE_FAILED:
            self.store_failed = True
        self.line("failed", id=instance_id, error=str(error))

    def skipped(self, error: "Damage") -> None:
        self.line("skipped", error=str(error))

    def stopping(self, in_flight: Sequence[str]) -> None:
        self.line("stopping", in_flight=list(in_flight))

    def fired(self, outcome: "FireOutcome") -> None:
        self.fires[outcome.result] += 1
        self.line("fire", **outcome.to_json())


@command()
def schedules(
    *,
    trigger: Annotated[
        str | None,
        typer.Option(
            metavar="SCHEDULE",
            show_default=False,
            help="Start a fire of SCHEDULE now (its name as listed), for a worker to run.",
        ),
    ] = None,
    json_output: JsonFlag = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List the project's schedules: next and last fires, and fires skipped."""
    from wfcli.client.schedules import Scheduler
    from wfcli.errors import ConfigError, WorkflowInputError

    screen = Screen()
    session = open_session(config, store, load=trigger is not None, creates=True)
    if session.project is None:
        raise ConfigError("workflows.toml", "not found: schedules are set there")
    scheduler = Scheduler(session.client, session.project.schedules())
    if trigger is not None:
        chosen = [s for s in scheduler.schedules if s.name == trigger]
        if not chosen:
            known = ", ".join(s.name for s in scheduler.schedules) or "none"
            raise WorkflowInputError("schedule", f"no schedule {trigger!r} (schedules: {known})")
        outcome = scheduler.trigger(chosen[0])
        if json_output:
            screen.json(outcome.to_json())
        else:
            screen.say(outcome.fire.instance_id)
            screen.note(f"queued: a running `wf worker` starts {outcome.fire.instance_id}")
        return
    reports = scheduler.report()
    if json_output:
        screen.json({"schedules": [report.to_json() for report in reports]})
        return
    from wfcli.ui.render import schedules_view

    screen.show(schedules_view(reports, screen.plain))
