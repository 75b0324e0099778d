"""``wf`` with a storage fault armed: the file store's ``os`` is the fault seam's.

    WFTEST_FAULTS=OPERATION:CALL:ERRNO[,...] python tests/drivers/faulty_wf.py ARGS...

e.g. ``write:3:EIO`` fails the third ``os.write`` of the file store with EIO.
"""

from __future__ import annotations

import errno
import os

from tests.reliability.faults import Fault, FaultyOs
from wfcli.cli import main
from wfcli.store.files import store as file_store_module


def armed() -> FaultyOs:
    faults = []
    for item in filter(None, os.environ.get("WFTEST_FAULTS", "").split(",")):
        operation, at, code = item.split(":")
        faults.append(Fault(operation, int(at), getattr(errno, code)))
    return FaultyOs(faults)


if __name__ == "__main__":
    file_store_module.os = armed()  # type: ignore[assignment]
    main()
