"""The memory store: everything in a dict, for tests and :mod:`wfcli.testing`."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from wfcli.core.codec import (
    Created,
    InboxMessage,
    Record,
    decode_record,
    encode_record,
)
from wfcli.core.ids import validate_instance_id
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
)
from wfcli.store.contract import JournalStore, Lease, LockOwner, _check_cache_name

__all__ = ["MemoryStore"]


@dataclass
class _MemoryInstance:
    records: list[Record]
    generation: int
    inbox: list[InboxMessage] = field(default_factory=list)
    owner: LockOwner | None = None


class _MemoryLease(Lease):
    def __init__(self, store: MemoryStore, instance_id: str, owner: LockOwner) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self._store = store
        self._held = True

    def _instance(self) -> _MemoryInstance:
        return self._store._instances[self.instance_id]

    def read(self) -> list[Record]:
        with self._store._mutex:
            return list(self._instance().records)

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        for record in records:  # the same validation a file round trip gives
            decode_record(json.loads(encode_record(record)))
        with self._store._mutex:
            self._instance().records.extend(records)

    def pending(self) -> list[InboxMessage]:
        return self._store.pending(self.instance_id)

    def discard(self, message_ids: Sequence[str]) -> None:
        with self._store._mutex:
            instance = self._instance()
            instance.inbox = [m for m in instance.inbox if m.message_id not in message_ids]

    def delete_instance(self) -> None:
        with self._store._mutex:
            del self._store._instances[self.instance_id]
            self._held = False

    def release(self) -> None:
        with self._store._mutex:
            if self._held:
                self._held = False
                self._instance().owner = None


class MemoryStore(JournalStore):
    """Everything in memory, for tests and :mod:`wfcli.testing`; works on any OS."""

    durable = False

    def __init__(self) -> None:
        self._instances: dict[str, _MemoryInstance] = {}
        self._caches: dict[str, bytes] = {}
        self._generations = itertools.count(1)  # tells a re-created ID from the old one
        self._mutex = threading.Lock()

    def location(self) -> str:
        return "(memory)"

    def create(self, record: Created) -> None:
        validate_instance_id(record.instance_id)
        with self._mutex:
            if record.instance_id in self._instances:
                raise InstanceExistsError(record.instance_id)
            self._instances[record.instance_id] = _MemoryInstance(
                records=[record], generation=next(self._generations)
            )

    def exists(self, instance_id: str) -> bool:
        return instance_id in self._instances

    def read(self, instance_id: str) -> list[Record]:
        with self._mutex:
            return list(self._get(instance_id).records)

    def _get(self, instance_id: str) -> _MemoryInstance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise InstanceNotFoundError(instance_id) from None

    def instance_ids(self) -> list[str]:
        with self._mutex:
            return sorted(self._instances)

    def acquire(self, instance_id: str, owner: LockOwner) -> Lease:
        with self._mutex:
            instance = self._get(instance_id)
            if instance.owner is not None:
                raise InstanceBusyError(instance_id, instance.owner.pid, instance.owner.host)
            instance.owner = owner
        return _MemoryLease(self, instance_id, owner)

    def holder(self, instance_id: str) -> LockOwner | None:
        with self._mutex:
            instance = self._instances.get(instance_id)
            return instance.owner if instance else None

    def post(self, instance_id: str, message: InboxMessage) -> None:
        with self._mutex:
            self._get(instance_id).inbox.append(message)

    def pending(self, instance_id: str) -> list[InboxMessage]:
        with self._mutex:
            instance = self._instances.get(instance_id)
            return list(instance.inbox) if instance else []

    def inbox_ids(self) -> set[str]:
        with self._mutex:
            return {instance_id for instance_id, i in self._instances.items() if i.inbox}

    def journal_versions(self) -> dict[str, str]:
        with self._mutex:
            return {
                instance_id: f"{instance.generation}:{len(instance.records)}"
                for instance_id, instance in self._instances.items()
            }

    def load_cache(self, name: str) -> bytes | None:
        with self._mutex:
            return self._caches.get(_check_cache_name(name))

    def save_cache(self, name: str, data: bytes) -> None:
        with self._mutex:
            self._caches[_check_cache_name(name)] = bytes(data)
