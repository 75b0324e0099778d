"""Injected storage faults: the file store's ``os`` seen through a proxy that fails on cue.

The file store reaches the disk only through its module's ``os``; :class:`FaultyOs`
stands in for it and makes the ``n``-th call of one operation (``write``,
``fdatasync``, ``fsync``, ``rename``, ...) fail with an errno, or write only part of
its data, as the kernel would. In-process and deterministic: a matrix of every
fault at every call runs in seconds.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from wfcli.store.files import store as file_store_module

FAULT_ERRNOS = (errno.EIO, errno.ENOSPC, errno.EROFS)
# What a write or a sync of a journal, an inbox message, a lock or the index goes through.
OPERATIONS = ("write", "fdatasync", "fsync", "pwrite", "rename", "replace", "link", "ftruncate")


@dataclass
class Fault:
    """Fail the ``at``-th call (1-based) of ``operation`` with ``code``; with ``short``,
    a ``write`` writes half its data first (a short write) and fails on the rest."""

    operation: str
    at: int
    code: int
    short: bool = False


@dataclass
class FaultyOs:
    """The ``os`` module, but for the faults it is armed with; it counts every call."""

    faults: list[Fault] = field(default_factory=list)
    real_syncs: bool = True
    """False: ``fsync``/``fdatasync`` are counted (and fail on cue) but not made, for
    tests that never look at what reached the platter (no machine crash)."""
    calls: Counter[str] = field(default_factory=Counter)
    fired: list[Fault] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in OPERATIONS and name not in ("listdir", "scandir"):
            return real
        return self._watched(name, real)

    def _watched(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            for fault in self.faults:
                if fault.operation == name and fault.at == self.calls[name]:
                    self.fired.append(fault)
                    if fault.short and name == "write" and len(args[1]) > 1:
                        written = real(args[0], args[1][: len(args[1]) // 2])
                        self.faults.remove(fault)
                        self.faults.append(Fault(name, self.calls[name] + 1, fault.code))
                        return written
                    raise OSError(fault.code, os.strerror(fault.code))
            if not self.real_syncs and name in ("fsync", "fdatasync"):
                return None
            return real(*args, **kwargs)

        return call


@contextmanager
def faulty_disk(monkeypatch: pytest.MonkeyPatch, *faults: Fault) -> Iterator[FaultyOs]:
    """The file store's disk, failing as ``faults`` say, while the block runs."""
    proxy = FaultyOs(list(faults))
    with monkeypatch.context() as patch:
        patch.setattr(file_store_module, "os", proxy)
        yield proxy
