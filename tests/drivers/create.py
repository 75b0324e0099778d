"""Try to create an instance; print ``created`` or ``exists``.

create.py STORE WORKFLOW ID PARAMS_JSON [--start-gate PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.workflows_for_tests import make_client, wait_for_file
from wfcli import InstanceExistsError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("workflow")
    parser.add_argument("instance_id")
    parser.add_argument("params", type=json.loads)
    parser.add_argument("--start-gate", type=Path)
    options = parser.parse_args()
    client = make_client(options.store)
    if options.start_gate:
        wait_for_file(options.start_gate)
    try:
        client.create(options.workflow, params=options.params, instance_id=options.instance_id)
    except InstanceExistsError:
        print(json.dumps("exists"))
    else:
        print(json.dumps("created"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
