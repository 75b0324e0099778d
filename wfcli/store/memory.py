"""The memory store: everything in a dict, for tests and :mod:`wfcli.testing`."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wfcli.core.codec import (
    Created,
    InboxMessage,
    JsonValue,
    Record,
    decode_record,
    encode_record,
)
from wfcli.core.ids import validate_instance_id
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
)
from wfcli.store.contract import JournalStore, Lease, Owner
from wfcli.store.validation import JournalRules

__all__ = ["MemoryStore"]


@dataclass
class _MemoryInstance:
    records: list[Record]
    rules: JournalRules
    """The rules its records were checked with, from line 1 on (appends go on with them)."""
    inbox: list[InboxMessage] = field(default_factory=list)
    owner: Owner | None = None
    lease: int = 0
    """The number of the lease that holds it (0: none)."""


class _MemoryLease(Lease):
    def __init__(self, store: MemoryStore, instance_id: str, owner: Owner, number: int) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self._store = store
        self._number = number

    def _instance(self) -> _MemoryInstance:
        """The instance, while this lease holds it (call with the store's mutex held)."""
        instance = self._store._instances.get(self.instance_id)
        if instance is None or instance.lease != self._number:
            raise LeaseLostError(self.instance_id, "it was released or expired")
        return instance

    def read(self) -> list[Record]:
        with self._store._mutex:
            return list(self._instance().records)

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        for record in records:  # the same checks a round trip through a file gives
            decode_record(json.loads(encode_record(record)))
        with self._store._mutex:
            instance = self._instance()
            for line_no, record in enumerate(records, start=len(instance.records) + 1):
                instance.rules.check(record, line_no)
            instance.records.extend(records)

    def pending(self) -> list[InboxMessage]:
        return self._store.pending(self.instance_id)

    def discard(self, message_ids: Sequence[str]) -> None:
        with self._store._mutex:
            instance = self._instance()
            instance.inbox = [m for m in instance.inbox if m.message_id not in message_ids]

    def delete_instance(self) -> None:
        with self._store._mutex:
            self._instance()
            del self._store._instances[self.instance_id]

    def release(self) -> None:
        with self._store._mutex:
            instance = self._store._instances.get(self.instance_id)
            if instance is not None and instance.lease == self._number:
                instance.owner = None
                instance.lease = 0


class MemoryStore(JournalStore):
    """Everything in memory, for tests and :mod:`wfcli.testing`; works on any OS."""

    durable = False

    def __init__(self) -> None:
        self._instances: dict[str, _MemoryInstance] = {}
        self._lease_numbers = itertools.count(1)
        self._mutex = threading.Lock()
        self._schedule_states: dict[str, JsonValue] = {}
        self._schedule_mutex = threading.Lock()

    def location(self) -> str:
        return "(memory)"

    def schedule_states(self) -> dict[str, JsonValue]:
        with self._schedule_mutex:
            return dict(self._schedule_states)

    def update_schedule_state(
        self, key: str, change: Callable[[JsonValue], JsonValue]
    ) -> JsonValue:
        with self._schedule_mutex:
            self._schedule_states[key] = change(self._schedule_states.get(key))
            return self._schedule_states[key]

    def create(self, record: Created) -> None:
        validate_instance_id(record.instance_id)
        rules = JournalRules(record.instance_id, self.location())
        rules.check(record, 1)
        with self._mutex:
            if record.instance_id in self._instances:
                raise InstanceExistsError(record.instance_id)
            self._instances[record.instance_id] = _MemoryInstance(records=[record], rules=rules)

    def import_journal(self, records: Sequence[Record]) -> None:
        """The whole journal at once, checked as appends check it."""
        first = records[0] if records else None
        if not isinstance(first, Created):
            raise JournalCorruptError(self.location(), 1, "first record is not 'created'")
        validate_instance_id(first.instance_id)
        rules = JournalRules(first.instance_id, self.location())
        for line_no, record in enumerate(records, start=1):
            decode_record(json.loads(encode_record(record)))
            rules.check(record, line_no)
        with self._mutex:
            if first.instance_id in self._instances:
                raise InstanceExistsError(first.instance_id)
            self._instances[first.instance_id] = _MemoryInstance(records=list(records), rules=rules)

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

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        with self._mutex:
            instance = self._get(instance_id)
            if instance.owner is not None:
                raise InstanceBusyError(instance_id, instance.owner.pid, instance.owner.host)
            instance.owner = owner
            instance.lease = next(self._lease_numbers)
            return _MemoryLease(self, instance_id, owner, instance.lease)

    def expire_lease(self, instance_id: str) -> None:
        """End the lease on ``instance_id`` as if its holder had stopped renewing it
        (a database lease expiring): for tests of what a lost lease does."""
        with self._mutex:
            instance = self._get(instance_id)
            instance.owner = None
            instance.lease = 0

    def holder(self, instance_id: str) -> Owner | None:
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
