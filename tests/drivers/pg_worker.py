"""A :class:`~wfcli.client.worker.Worker` on a PostgreSQL store, for the multi-machine
test, until SIGTERM.

    pg_worker.py URL EFFECTS LOG

Every run started, finished or failed is one JSON line in LOG (flushed at once, so a
SIGKILL loses nothing written before it): the test attributes repeated side effects
to this process's failed runs from it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import IO

from tests.pg_machines_workflows import WORKFLOWS
from wfcli import Settings, WorkflowClient
from wfcli.client.worker import NullWorkerEvents, Worker
from wfcli.store.postgres import PgStore

CONCURRENCY = 2
POLL = timedelta(seconds=0.2)


class LoggedEvents(NullWorkerEvents):
    def __init__(self, log: IO[str]) -> None:
        self.log = log

    def note(self, **fields: object) -> None:
        self.log.write(json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n")
        self.log.flush()

    def started(self, instance_id: str) -> None:
        self.note(event="started", instance=instance_id)

    def finished(self, status: object) -> None:
        self.note(event="finished", instance=getattr(status, "id", None))

    def failed(self, instance_id: str, error: BaseException) -> None:
        self.note(event="failed", instance=instance_id, error=f"{type(error).__name__}: {error}")


def main(url: str, effects: str, log_path: str) -> int:
    os.environ["WF_PG_EFFECTS"] = effects
    store = PgStore(url)
    client = WorkflowClient(store, WORKFLOWS, settings=Settings(max_inline_wait=timedelta(0)))
    with Path(log_path).open("a", encoding="utf-8") as log:
        events = LoggedEvents(log)
        worker = Worker(client, concurrency=CONCURRENCY, poll_interval=POLL, events=events)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        events.note(event="start")
        worker.run()
        events.note(event="stop")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
