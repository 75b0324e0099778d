"""Send COUNT events of TYPE to an instance, one after another; payloads name the sender.

send_events.py STORE ID TYPE SENDER COUNT [--start-gate PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.workflows_for_tests import make_client, wait_for_file


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("instance_id")
    parser.add_argument("event_type")
    parser.add_argument("sender")
    parser.add_argument("count", type=int)
    parser.add_argument("--start-gate", type=Path)
    options = parser.parse_args()
    client = make_client(options.store)
    if options.start_gate:
        wait_for_file(options.start_gate)
    for sequence in range(options.count):
        client.send_event(
            options.instance_id,
            options.event_type,
            {"sender": options.sender, "sequence": sequence},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
