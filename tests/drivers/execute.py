"""Execute one instance in this process; print its status as JSON.

    execute.py STORE ID [--max-inline-wait S] [--poll S] [--start-gate PATH]
                        [--hang-after-record STEP | --hang-mid-write STEP] [--marker PATH]

``--hang-after-record STEP`` hangs right after STEP's result is journaled;
``--hang-mid-write STEP`` writes half of STEP's result record and hangs. Either
touches ``--marker`` first, so the test knows when to send SIGKILL.
Exit status: 0 executed, 5 another process holds the instance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.workflows_for_tests import make_client, wait_for_file
from wfcli import InstanceBusyError, Settings
from wfcli.engine.step import NullObserver


def hang(marker: Path) -> None:
    marker.touch()
    while True:
        time.sleep(60)


class HangAfterRecord(NullObserver):
    """Hangs once the named step's result is in the journal."""

    def __init__(self, step: str, marker: Path) -> None:
        self.step = step
        self.marker = marker

    def step_finished(self, name: str, kind: Any, ok: bool, replayed: bool) -> None:
        if name == self.step and ok and not replayed:
            hang(self.marker)


def hang_mid_write(step: str, marker: Path) -> None:
    """Make the write of STEP's ``step_completed`` record stop halfway, as a crash would."""
    real_write = os.write
    wanted = (b'"type":"step_completed"', f'"step":{json.dumps(step)},'.encode())

    def torn_write(fd: int, data: Any) -> int:
        chunk = bytes(data)
        if all(part in chunk for part in wanted):
            real_write(fd, chunk[: len(chunk) // 2])
            hang(marker)
        return real_write(fd, data)

    os.write = torn_write


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("instance_id")
    parser.add_argument("--max-inline-wait", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.02)
    parser.add_argument("--start-gate", type=Path)
    parser.add_argument("--hang-after-record")
    parser.add_argument("--hang-mid-write")
    parser.add_argument("--marker", type=Path)
    options = parser.parse_args()
    settings = Settings(
        max_inline_wait=timedelta(seconds=options.max_inline_wait), poll_interval=options.poll
    )
    client = make_client(options.store, settings=settings)
    observer = None
    if options.hang_after_record:
        observer = HangAfterRecord(options.hang_after_record, options.marker)
    if options.hang_mid_write:
        hang_mid_write(options.hang_mid_write, options.marker)
    if options.start_gate:
        wait_for_file(options.start_gate)
    try:
        status = client.execute(options.instance_id, observer=observer)
    except InstanceBusyError as error:
        print(json.dumps({"busy": str(error), "pid": error.pid}))
        return 5
    print(json.dumps(status.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
