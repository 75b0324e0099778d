"""Who executes an instance: the identity a lease holder records."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

__all__ = ["Owner"]


@dataclass(frozen=True, slots=True)
class Owner:
    """One executing process: a ``worker_id`` unique to it, its pid and its host.

    pid and host are for people (``wf status`` names them); ``worker_id`` tells two
    processes apart where pid and host do not (containers that all run as pid 1 on
    hosts of one name, a pid reused after a crash).
    """

    worker_id: str
    pid: int
    host: str

    @classmethod
    def current(cls) -> Owner:
        """This process's identity: made once per process (again in a forked child)."""
        pid = os.getpid()
        owner = _current.get(pid)
        if owner is None:
            # os.uname: gethostname without importing socket at start-up.
            owner = _current[pid] = cls(uuid.uuid4().hex, pid, os.uname().nodename)
        return owner


_current: dict[int, Owner] = {}
