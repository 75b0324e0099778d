"""The store contract as tests: subclass :class:`StoreContract` for every store.

Each store's tests subclass it with a ``Test`` name and implement
:meth:`StoreContract.make_store`; pytest then runs every test below against that
store. A store that can lose a lease (a database lease expires) also implements
:meth:`StoreContract.lose_lease`; the tests of lease loss are skipped for the others.
What the tests check is what the docstrings of :mod:`wfcli.store.contract` promise::

    class TestMyStore(StoreContract):
        def make_store(self, tmp_path: Path) -> JournalStore:
            return MyStore(tmp_path)

Needs pytest (``pip install 'wfcli[dev]'``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wfcli.core.admission import ConcurrencyLimit, Rate
from wfcli.core.codec import (
    AttemptStarted,
    Created,
    Errored,
    ErrorInfo,
    Finished,
    InboxMessage,
    JsonValue,
    Paused,
    Record,
    RollbackAttemptStarted,
    RollbackCompleted,
    RollbackFailed,
    RollbackFinished,
    RollbackStarted,
    RunStarted,
    StepCompleted,
    StepFailed,
    Suspended,
)
from wfcli.core.state import fold, fork_journal
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
    WorkflowInputError,
)
from wfcli.store.contract import JournalStore, Lease, ListQuery, Owner

__all__ = ["OTHER", "OWNER", "START", "StoreContract", "created", "message", "step_records"]

_T = TypeVar("_T")
START = datetime(2030, 1, 1, tzinfo=timezone.utc)
OWNER = Owner(worker_id="worker-one", pid=4242, host="worker-1")
OTHER = Owner(worker_id="worker-two", pid=5151, host="worker-2")


def created(instance_id: str, params: JsonValue = None, *, at: datetime = START) -> Created:
    """A ``created`` record of workflow ``wf``."""
    return Created(at=at, instance_id=instance_id, workflow="wf", params=params)


def step_records(count: int, prefix: str = "s") -> list[Record]:
    """``count`` distinct records, as a run appends them."""
    return [
        StepCompleted(
            at=START + timedelta(seconds=n), step=f"{prefix}{n}", kind="do", attempt=1, output=n
        )
        for n in range(count)
    ]


def message(number: int, action: Any = "event") -> InboxMessage:
    """An inbox message whose ID and payload are ``number``."""
    return InboxMessage(
        message_id=f"m{number:04d}",
        action=action,
        sent_at=START,
        event_type="t" if action == "event" else None,
        payload=number,
    )


def all_at_once(count: int, task: Callable[[int], _T]) -> list[_T | BaseException]:
    """Run ``task(0..count-1)`` on threads released together; results or raised errors."""
    gate = threading.Barrier(count)
    outcomes: list[_T | BaseException] = [RuntimeError("never ran")] * count

    def run(index: int) -> None:
        gate.wait()
        try:
            outcomes[index] = task(index)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class StoreContract:
    """Every promise of :class:`~wfcli.store.contract.JournalStore`, as tests."""

    def make_store(self, tmp_path: Path) -> JournalStore:
        """A new, empty store (``tmp_path`` is the test's own folder)."""
        raise NotImplementedError

    def lose_lease(self, store: JournalStore, lease: Lease) -> bool:
        """Make ``lease`` lost as its store loses leases (expiry); False if it cannot."""
        return False

    def close_store(self, store: JournalStore) -> None:
        """Let go of what :meth:`make_store` opened (connections); nothing by default."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[JournalStore]:
        made = self.make_store(tmp_path)
        yield made
        self.close_store(made)

    # creating and reading ---------------------------------------------------------------

    def test_create_makes_a_journal_whose_first_record_is_the_created_one(
        self, store: JournalStore
    ) -> None:
        record = created("order-1", {"sku": "A"})
        assert store.instance_ids() == []
        store.create(record)
        assert store.read("order-1") == [record]
        assert store.instance_ids() == ["order-1"]

    def test_create_of_a_taken_id_raises_and_writes_nothing(self, store: JournalStore) -> None:
        store.create(created("order-1", "first"))
        with pytest.raises(InstanceExistsError):
            store.create(created("order-1", "second"))
        assert store.read("order-1") == [created("order-1", "first")]

    def test_of_many_concurrent_creators_of_one_id_exactly_one_succeeds(
        self, store: JournalStore
    ) -> None:
        outcomes = all_at_once(8, lambda n: store.create(created("contested", n)))
        winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
        assert len(winners) == 1
        assert all(isinstance(o, InstanceExistsError) for o in outcomes if o is not None)
        assert store.read("contested") == [created("contested", winners[0])]

    def test_unknown_instances_are_not_found(self, store: JournalStore) -> None:
        with pytest.raises(InstanceNotFoundError, match="'ghost'"):
            store.read("ghost")
        with pytest.raises(InstanceNotFoundError):
            store.acquire("ghost", OWNER)
        with pytest.raises(InstanceNotFoundError):
            store.post("ghost", message(1))
        assert store.holder("ghost") is None
        assert store.pending("ghost") == []

    def test_instance_ids_are_sorted(self, store: JournalStore) -> None:
        for instance_id in ("b-2", "a-1", "C-3", "_0"):
            store.create(created(instance_id))
        assert store.instance_ids() == ["C-3", "_0", "a-1", "b-2"]

    def test_location_is_text_for_people(self, store: JournalStore) -> None:
        assert isinstance(store.location(), str)
        assert store.location()

    # leases and appends ------------------------------------------------------------------

    def test_a_lease_appends_records_in_order_and_reads_them_back(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        first, second, third = step_records(3)
        with store.acquire("order-1", OWNER) as lease:
            lease.append([first])
            lease.append([second, third], sync=False)
            from_lease = lease.read()
        expected = [created("order-1"), first, second, third]
        assert from_lease == store.read("order-1") == expected

    def test_read_after_gives_only_the_records_after_those_known(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        first, second, third = step_records(3)
        assert store.read_after("order-1", 0) == [created("order-1")]
        assert store.read_after("order-1", 1) == []
        with store.acquire("order-1", OWNER) as lease:
            lease.append([first])
            assert store.read_after("order-1", 1) == [first]
            lease.append([second, third], sync=False)
            lease.read()  # others see an unsynced append once it settled (PostgreSQL pipelines it)
            assert store.read_after("order-1", 2) == [second, third]
            assert store.read_after("order-1", 4) == []
            assert store.read_after("order-1", 1) == [first, second, third]  # any count
        assert store.read_after("order-1", 0) == store.read("order-1")
        with pytest.raises(InstanceNotFoundError):
            store.read_after("nobody", 0)
        with pytest.raises(InstanceNotFoundError):
            store.read_after("nobody", 3)

    def test_appends_from_many_threads_keep_each_call_whole(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        with store.acquire("order-1", OWNER) as lease:
            all_at_once(6, lambda n: lease.append(step_records(3, prefix=f"t{n}-")))
        appended = store.read("order-1")[1:]
        assert len(appended) == 18
        for start in range(0, 18, 3):  # each call's three records stand together, in order
            names = [getattr(record, "step", "") for record in appended[start : start + 3]]
            prefix = names[0][: -len("0")]
            assert names == [f"{prefix}0", f"{prefix}1", f"{prefix}2"]

    def test_a_record_out_of_place_is_refused_and_nothing_is_written(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        with store.acquire("order-1", OWNER) as lease:
            with pytest.raises(JournalCorruptError, match="a second 'created' record"):
                lease.append([*step_records(1), created("order-1")])
            with pytest.raises(JournalCorruptError, match="an event step's result"):
                lease.append([StepCompleted(at=START, step="e", kind="event", attempt=1, output=1)])
        assert store.read("order-1") == [created("order-1")]

    def test_a_rollback_with_a_deadline_and_a_parent_reads_back_across_leases(
        self, store: JournalStore
    ) -> None:
        error = ErrorInfo("NonRetryableError", "no truck")
        first = Created(
            at=START,
            instance_id="saga",
            workflow="wf",
            params=None,
            deadline=START + timedelta(hours=1),
            parent="mom",
        )
        store.create(first)
        forward: list[Record] = [
            RunStarted(at=START, pid=1, host="h"),
            AttemptStarted(at=START, step="a", attempt=1, rollback=True),
            StepCompleted(at=START, step="a", kind="do", attempt=1, output="A"),
            AttemptStarted(at=START, step="b", attempt=1, rollback=True),
            StepFailed(at=START, step="b", kind="do", attempts=1, error=error),
            RollbackStarted(
                at=START, reason="errored", plan=["b", "a"], error=error, message_id=None
            ),
        ]
        backward: list[Record] = [
            RollbackAttemptStarted(at=START, step="b", attempt=1),
            RollbackCompleted(at=START, step="b", attempt=1),
            RollbackAttemptStarted(at=START, step="a", attempt=1),
            RollbackFailed(at=START, step="a", attempts=1, error=error),
            RollbackFinished(at=START, status="failed", completed=1, total=2),
            Errored(at=START, error=error),
        ]
        with store.acquire("saga", OWNER) as lease:
            lease.append(forward)
        with store.acquire("saga", OWNER) as lease:  # a later lease goes on with the rollback
            lease.append(backward[:1])
            lease.append(backward[1:])
        assert store.read("saga") == [first, *forward, *backward]

    def test_a_rollback_record_out_of_place_is_refused_and_nothing_is_written(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        started = RollbackStarted(
            at=START, reason="terminated", plan=["a"], error=None, message_id="m"
        )
        with store.acquire("order-1", OWNER) as lease:
            with pytest.raises(JournalCorruptError, match="before 'rollback_started'"):
                lease.append([RollbackCompleted(at=START, step="a", attempt=1)])
            lease.append([started])
        with store.acquire("order-1", OWNER) as lease:
            with pytest.raises(JournalCorruptError, match="not in the plan"):
                lease.append([RollbackAttemptStarted(at=START, step="b", attempt=1)])
            with pytest.raises(JournalCorruptError, match="a second 'rollback_started'"):
                lease.append([started])
        assert store.read("order-1") == [created("order-1"), started]

    def test_a_wake_message_makes_a_waiting_instance_due_at_once(self, store: JournalStore) -> None:
        store.create(created("mom"))
        with store.acquire("mom", OWNER) as lease:
            lease.append(
                [
                    RunStarted(at=START, pid=1, host="h"),
                    Suspended(
                        at=START,
                        wait="instance",
                        step="join",
                        until=START + timedelta(minutes=1),
                        event_type=None,
                    ),
                ]
            )

        def due() -> list[str]:
            return [s.id for s in store.list_instances(ListQuery(due_at=START)).instances]

        assert due() == []
        store.post("mom", InboxMessage(message_id="w1", action="wake", sent_at=START))
        assert due() == ["mom"]
        claim = store.claim_due(START, OWNER, limit=5)
        assert [lease.instance_id for lease in claim.leases] == ["mom"]
        for lease in claim.leases:
            lease.release()

    def test_the_holder_is_the_lease_owner_until_release(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        assert store.holder("order-1") is None
        lease = store.acquire("order-1", OWNER)
        assert (lease.instance_id, lease.owner) == ("order-1", OWNER)
        assert store.holder("order-1") == OWNER
        lease.release()
        assert store.holder("order-1") is None

    def test_a_second_acquire_is_busy_naming_the_holder_until_release(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)
        with pytest.raises(InstanceBusyError, match="process 4242 on worker-1") as busy:
            store.acquire("order-1", OTHER)
        assert (busy.value.instance_id, busy.value.pid, busy.value.host) == (
            "order-1",
            4242,
            "worker-1",
        )
        lease.release()
        with store.acquire("order-1", OTHER) as second:
            assert store.holder("order-1") == OTHER
            second.append(step_records(1))
        assert store.read("order-1")[1:] == step_records(1)

    def test_a_patient_acquire_waits_out_a_brief_lease_but_not_a_long_one(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        brief = store.acquire("order-1", OWNER)
        timer = threading.Timer(0.1, brief.release)
        timer.start()
        try:
            with store.acquire_patiently("order-1", OTHER) as patient:
                assert store.holder("order-1") == OTHER
                assert patient.owner == OTHER
        finally:
            timer.join()
        with store.acquire("order-1", OWNER):
            started = time.monotonic()
            with pytest.raises(InstanceBusyError, match="process 4242 on worker-1"):
                store.acquire_patiently("order-1", OTHER)
            assert time.monotonic() - started >= 0.4
        assert store.holder("order-1") is None

    def test_owners_are_told_apart_by_worker_id_alone(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        twin = Owner(worker_id="worker-twin", pid=OWNER.pid, host=OWNER.host)
        with store.acquire("order-1", OWNER):
            with pytest.raises(InstanceBusyError):
                store.acquire("order-1", twin)
            assert store.holder("order-1") == OWNER
        with store.acquire("order-1", twin):
            assert store.holder("order-1") == twin

    def test_release_is_idempotent_and_leaving_the_context_releases(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)
        lease.release()
        lease.release()
        with store.acquire("order-1", OWNER):
            pass
        assert store.holder("order-1") is None

    def test_a_released_lease_writes_nothing(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        store.post("order-1", message(1))
        lease = store.acquire("order-1", OWNER)
        lease.release()
        with pytest.raises(LeaseLostError, match="'order-1'"):
            lease.append(step_records(1))
        with pytest.raises(LeaseLostError):
            lease.discard([message(1).message_id])
        assert store.read("order-1") == [created("order-1")]
        assert store.pending("order-1") == [message(1)]

    def test_leases_of_different_instances_are_independent(self, store: JournalStore) -> None:
        store.create(created("one"))
        store.create(created("two"))
        with store.acquire("one", OWNER), store.acquire("two", OTHER):
            assert (store.holder("one"), store.holder("two")) == (OWNER, OTHER)

    def test_of_many_concurrent_acquirers_exactly_one_gets_the_lease(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        contenders = 6
        refusals = threading.Semaphore(0)

        def contend(n: int) -> int:
            try:
                lease = store.acquire("order-1", Owner(worker_id=f"w-{n}", pid=n, host="h"))
            except InstanceBusyError:
                refusals.release()
                raise
            with lease:  # held until every other contender has been refused
                for _ in range(contenders - 1):
                    assert refusals.acquire(timeout=10)
            return n

        outcomes = all_at_once(contenders, contend)
        winners = [o for o in outcomes if isinstance(o, int)]
        assert len(winners) == 1
        losers = [o for o in outcomes if isinstance(o, InstanceBusyError)]
        assert len(losers) == contenders - 1
        assert {o.pid for o in losers} == set(winners)
        assert store.holder("order-1") is None

    def test_a_lost_lease_writes_nothing_and_frees_the_instance(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)
        lease.append(step_records(1))
        if not self.lose_lease(store, lease):
            pytest.skip(f"{type(store).__name__} cannot lose a lease")
        with pytest.raises(LeaseLostError, match="'order-1'"):
            lease.append(step_records(2)[1:])
        assert store.holder("order-1") is None
        with store.acquire("order-1", OTHER) as taken_over:
            assert taken_over.read() == [created("order-1"), *step_records(1)]
            taken_over.append(step_records(3)[2:])
        with pytest.raises(LeaseLostError):
            lease.append(step_records(2)[1:])
        lease.release()  # harmless: it releases nothing of the new holder's
        assert store.read("order-1") == [created("order-1"), step_records(3)[0], step_records(3)[2]]

    def test_a_lease_lost_between_a_steps_start_and_its_result_writes_no_result(
        self, store: JournalStore
    ) -> None:
        # A step's start is appended unsynced and its callback runs before the result:
        # a store may still be sending the start when the lease goes.
        store.create(created("order-1"))
        lease = store.acquire("order-1", OWNER)
        started = AttemptStarted(at=START, step="s0", attempt=1)
        lease.append([started], sync=False)
        if not self.lose_lease(store, lease):
            lease.release()
            pytest.skip(f"{type(store).__name__} cannot lose a lease")
        with pytest.raises(LeaseLostError, match="'order-1'"):
            lease.append(step_records(1))
        journal = store.read("order-1")
        assert journal in ([created("order-1")], [created("order-1"), started])
        with store.acquire("order-1", OTHER) as taken_over:
            assert taken_over.read() == journal
            taken_over.append(step_records(1))
        with pytest.raises(LeaseLostError):
            lease.append(step_records(1))
        assert store.read("order-1") == [*journal, *step_records(1)]

    def test_import_journal_creates_the_whole_journal_and_refuses_a_taken_id(
        self, store: JournalStore
    ) -> None:
        journal = [created("moved", {"b": 1, "a": 2}), *step_records(3)]
        store.import_journal(journal)
        assert store.read("moved") == journal
        assert store.holder("moved") is None
        with pytest.raises(InstanceExistsError):
            store.import_journal([created("moved"), *step_records(1)])
        assert store.read("moved") == journal
        with store.acquire("moved", OWNER) as lease:  # it goes on like any journal
            lease.append(step_records(4)[3:])
        assert store.read("moved") == [*journal, step_records(4)[3]]
        with pytest.raises(JournalCorruptError, match="first record is not 'created'"):
            store.import_journal(step_records(1))

    def test_a_fork_is_a_new_journal_keeping_the_steps_before_its_step(
        self, store: JournalStore
    ) -> None:
        run = RunStarted(at=START, pid=1, host="h")
        done = Finished(at=START + timedelta(seconds=9), output={"ok": True})
        source = [created("source", {"n": 1}), run, *step_records(3), done]
        store.import_journal(source)
        later = START + timedelta(hours=1)
        store.import_journal(fork_journal(store.read("source"), "fork", "s1", later))
        assert store.read("source") == source
        state = fold(store.read("fork"))
        assert (state.status, state.forked_from, state.created) == (
            "queued",
            ("source", "s1"),
            later,
        )
        assert (state.params, [step.name for step in state.ordered_steps()]) == ({"n": 1}, ["s0"])
        listed = {s.id: s.status for s in store.list_instances(ListQuery()).instances}
        assert listed == {"fork": "queued", "source": "complete"}
        assert [s.id for s in store.list_instances(ListQuery(due_at=later)).instances] == ["fork"]
        with pytest.raises(InstanceExistsError):
            store.import_journal(fork_journal(source, "source", "s1", later))
        assert store.read("source") == source

    # the inbox --------------------------------------------------------------------------

    def test_posted_messages_are_pending_in_the_order_posted(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        sent = [message(n, action) for n, action in enumerate(["event", "pause", "event"])]
        for each in sent:
            store.post("order-1", each)
        assert store.pending("order-1") == sent
        with store.acquire("order-1", OWNER) as lease:
            assert lease.pending() == sent
        assert store.read("order-1") == [created("order-1")]  # posting never writes the journal

    def test_a_lease_sees_each_message_posted_while_it_is_held_the_first_one_included(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        with store.acquire("order-1", OWNER) as lease:
            assert lease.pending() == []
            assert lease.pending() == []  # looked at twice before anything is posted
            first, second = message(1), message(2, "pause")
            store.post("order-1", first)
            assert lease.pending() == [first]
            lease.discard([first.message_id])
            assert lease.pending() == []
            store.post("order-1", second)
            assert lease.pending() == [second]

    def test_discard_removes_exactly_the_named_messages(self, store: JournalStore) -> None:
        store.create(created("order-1"))
        sent = [message(n) for n in range(4)]
        for each in sent:
            store.post("order-1", each)
        with store.acquire("order-1", OWNER) as lease:
            lease.discard([sent[1].message_id, sent[3].message_id, "never-posted"])
            assert lease.pending() == [sent[0], sent[2]]
        assert store.pending("order-1") == [sent[0], sent[2]]

    def test_messages_posted_from_many_threads_are_all_kept_in_each_senders_order(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))

        def send_ten(sender: int) -> None:
            for n in range(10):
                store.post("order-1", message(sender * 100 + n))

        all_at_once(4, send_ten)
        pending = [m.payload for m in store.pending("order-1")]
        assert sorted(pending) == sorted(s * 100 + n for s in range(4) for n in range(10))  # type: ignore[type-var]
        for sender in range(4):
            assert [p for p in pending if p // 100 == sender] == [  # type: ignore[operator]
                sender * 100 + n for n in range(10)
            ]

    def test_delete_instance_removes_journal_and_inbox_and_frees_the_id(
        self, store: JournalStore
    ) -> None:
        store.create(created("order-1"))
        store.post("order-1", message(1))
        lease = store.acquire("order-1", OWNER)
        lease.delete_instance()
        assert store.instance_ids() == []
        assert store.holder("order-1") is None
        assert store.pending("order-1") == []
        with pytest.raises(InstanceNotFoundError):
            store.read("order-1")
        lease.release()  # already released: harmless
        store.create(created("order-1", "again"))
        assert store.read("order-1") == [created("order-1", "again")]
        assert store.pending("order-1") == []

    # listing ----------------------------------------------------------------------------

    def _landscape(self, store: JournalStore) -> list[Lease]:
        """Instances in every listing situation; returns the leases held (release them)."""
        minute = timedelta(minutes=1)
        for n, instance_id in enumerate(
            ("queued", "done", "asleep", "woken", "crashed", "held", "pausing", "other")
        ):
            record = created(instance_id, at=START + n * minute)
            if instance_id == "other":
                record = Created(at=record.at, instance_id="other", workflow="else", params=None)
            store.create(record)

        def run(instance_id: str, *more: Record) -> Lease:
            lease = store.acquire(instance_id, OWNER)
            lease.append([RunStarted(at=START, pid=OWNER.pid, host=OWNER.host), *more])
            return lease

        def sleep(until: datetime) -> Suspended:
            return Suspended(at=START, wait="sleep", step="nap", until=until, event_type=None)

        run("done", Finished(at=START + minute, output={"ok": True})).release()
        run("asleep", sleep(START + timedelta(days=1))).release()
        run("woken", sleep(START + 3 * minute)).release()
        run("crashed").release()  # running in its journal, held by nobody
        held = [run("held"), run("pausing")]
        store.post("pausing", message(1, "pause"))
        return held

    def test_a_listing_is_newest_first_with_shown_statuses(self, store: JournalStore) -> None:
        held = self._landscape(store)
        try:
            listing = store.list_instances(ListQuery())
        finally:
            for lease in held:
                lease.release()
        shown = [(s.id, s.status, s.interrupted) for s in listing.instances]
        assert shown == [
            ("other", "queued", False),
            ("pausing", "waitingForPause", False),
            ("held", "running", False),
            ("crashed", "running", True),
            ("woken", "waiting", False),
            ("asleep", "waiting", False),
            ("done", "complete", False),
            ("queued", "queued", False),
        ]
        assert listing.damaged == []
        by_id = {s.id: s for s in listing.instances}
        assert by_id["held"].holder == OWNER
        assert by_id["pausing"].pending_messages == ("pause",)
        assert by_id["done"].output == {"ok": True}

    def test_a_listing_filters_by_workflow_status_and_limit(self, store: JournalStore) -> None:
        for lease in self._landscape(store):
            lease.release()

        def ids(query: ListQuery) -> list[str]:
            return [summary.id for summary in store.list_instances(query).instances]

        assert ids(ListQuery(workflow="else")) == ["other"]
        assert ids(ListQuery(statuses=frozenset({"queued"}))) == ["other", "queued"]
        assert ids(ListQuery(statuses=frozenset({"waiting", "complete"}), limit=2)) == [
            "woken",
            "asleep",
        ]
        assert ids(ListQuery(workflow="wf", limit=1)) == ["pausing"]
        assert ids(ListQuery(workflow="nothing")) == []

    def test_due_lists_what_a_worker_should_run_oldest_first(self, store: JournalStore) -> None:
        held = self._landscape(store)
        store.post("asleep", message(2))  # an event for a sleeper: due, to take it in
        try:
            early = store.list_instances(ListQuery(due_at=START))
            later = store.list_instances(ListQuery(due_at=START + timedelta(minutes=5)))
        finally:
            for lease in held:
                lease.release()
        assert [s.id for s in early.instances] == ["queued", "asleep", "crashed", "other"]
        assert [s.id for s in later.instances] == ["queued", "asleep", "woken", "crashed", "other"]

    def test_claim_due_leases_what_is_due_oldest_first_and_skips_what_is_held(
        self, store: JournalStore
    ) -> None:
        held = self._landscape(store)
        try:
            claimed = store.claim_due(START + timedelta(minutes=5), OTHER, limit=3).leases
            assert [lease.instance_id for lease in claimed] == ["queued", "woken", "crashed"]
            assert all(store.holder(lease.instance_id) == OTHER for lease in claimed)
            rest = store.claim_due(START + timedelta(minutes=5), OWNER, limit=10).leases
            assert [lease.instance_id for lease in rest] == ["other"]
            for lease in [*claimed, *rest]:
                lease.release()
        finally:
            for lease in held:
                lease.release()

    def test_claim_due_leaves_out_what_it_is_told_to_skip(self, store: JournalStore) -> None:
        for n in range(3):
            store.create(created(f"q{n}", at=START + timedelta(seconds=n)))
        claim = store.claim_due(START, OWNER, limit=2, skip={"q0"})
        assert [lease.instance_id for lease in claim.leases] == ["q1", "q2"]
        assert claim.damaged == []
        for lease in claim.leases:
            lease.release()

    def test_claims_racing_for_the_same_work_never_share_an_instance(
        self, store: JournalStore
    ) -> None:
        for n in range(12):
            store.create(created(f"q{n:02d}", at=START + timedelta(seconds=n)))
        owners = [Owner(worker_id=f"w-{n}", pid=n, host="h") for n in range(4)]
        outcomes = all_at_once(4, lambda n: store.claim_due(START, owners[n], limit=12).leases)
        claimed = [lease for outcome in outcomes if isinstance(outcome, list) for lease in outcome]
        ids = [lease.instance_id for lease in claimed]
        assert sorted(ids) == [f"q{n:02d}" for n in range(12)]  # each once, none twice
        for lease in claimed:
            lease.release()

    def test_successive_claims_see_what_changed_since_the_last(self, store: JournalStore) -> None:
        minute = timedelta(minutes=1)
        store.create(created("asleep", at=START))
        with store.acquire("asleep", OTHER) as lease:
            nap = Suspended(
                at=START, wait="sleep", step="nap", until=START + timedelta(days=1), event_type=None
            )
            lease.append([RunStarted(at=START, pid=OTHER.pid, host=OTHER.host), nap])
        for n in range(4):
            store.create(created(f"q{n}", at=START + (n + 1) * minute))
        run = RunStarted(at=START, pid=OWNER.pid, host=OWNER.host)
        done = Finished(at=START, output=None)

        def claim_one() -> Lease:
            (lease,) = store.claim_due(START, OWNER, limit=1).leases
            return lease

        with claim_one() as lease:  # the oldest queued one, run to its end
            assert lease.instance_id == "q0"
            lease.append([run, done])
        with store.acquire("q1", OTHER) as lease:  # another process runs the next
            lease.append([run, done])
        with claim_one() as lease:
            assert lease.instance_id == "q2"  # left queued: released unrun
        store.create(replace(created("urgent", at=START + 10 * minute), priority=5))
        with claim_one() as lease:
            assert lease.instance_id == "urgent"
            lease.append([run, done])
        store.post("asleep", message(1))  # mail makes the sleeper due, the oldest
        with claim_one() as lease:
            assert lease.instance_id == "asleep"
            lease.append([done])
            lease.discard([message(1).message_id])
        rest = store.claim_due(START, OWNER, limit=10).leases
        assert [lease.instance_id for lease in rest] == ["q2", "q3"]
        for lease in rest:
            lease.release()

    def test_still_due_judges_a_lease_by_the_journal_now(self, store: JournalStore) -> None:
        for instance_id in ("finished", "crashed", "untouched", "mailed"):
            store.create(created(instance_id))
        listed = {s.id: s for s in store.list_instances(ListQuery(due_at=START)).instances}
        assert set(listed) == {"finished", "crashed", "untouched", "mailed"}
        run = RunStarted(at=START, pid=OTHER.pid, host=OTHER.host)
        for finished in ("finished", "mailed"):
            with store.acquire(finished, OTHER) as lease:  # run elsewhere since the listing
                lease.append([run, Finished(at=START, output=None)])
        store.post("mailed", message(1))  # and then sent a message: due for it
        with store.acquire("crashed", OTHER) as lease:  # started elsewhere, then died
            lease.append([run])
        expected = {"finished": False, "crashed": True, "untouched": True, "mailed": True}
        for instance_id, due in expected.items():
            with store.acquire(instance_id, OWNER) as lease:
                assert store.still_due(lease, listed[instance_id], START) is due, instance_id

    # admission: concurrency and rate limits, priorities ------------------------------

    def test_claim_due_admits_higher_priorities_first_then_the_oldest(
        self, store: JournalStore
    ) -> None:
        for n, priority in enumerate([0, 5, 0, 9]):
            store.create(
                Created(
                    at=START + timedelta(seconds=n),
                    instance_id=f"p{n}",
                    workflow="wf",
                    params=None,
                    priority=priority or None,
                )
            )
        for limits in (None, {"other": ConcurrencyLimit(limit=1)}):
            claim = store.claim_due(START, OWNER, limit=4, limits=limits)
            assert [lease.instance_id for lease in claim.leases] == ["p3", "p1", "p0", "p2"]
            for lease in claim.leases:
                lease.release()

    def test_a_concurrency_limit_leaves_the_rest_queued_and_waits_hold_no_slot(
        self, store: JournalStore
    ) -> None:
        limits = {"wf": ConcurrencyLimit(limit=2)}
        for n in range(4):
            store.create(created(f"q{n}", at=START + timedelta(seconds=n)))
        store.create(created("asleep", at=START - timedelta(hours=1)))
        with store.acquire("asleep", OWNER) as lease:
            lease.append([RunStarted(at=START, pid=1, host="h")])
            lease.append(
                [Suspended(at=START, wait="sleep", step="z", until=START, event_type=None)]
            )
        store.create(created("paused", at=START - timedelta(hours=1)))
        with store.acquire("paused", OWNER) as lease:
            lease.append([Paused(at=START, message_id="m")])
        first = store.claim_due(START, OWNER, limit=10, limits=limits)
        assert [lease.instance_id for lease in first.leases] == ["asleep", "q0"]
        with first.leases[0] as asleep:  # it wakes and runs, holding its slot
            asleep.append([RunStarted(at=START, pid=1, host="h")])
            assert store.claim_due(START, OTHER, limit=10, limits=limits).leases == []
            # suspending frees the slot: the next queued instance is admitted
            asleep.append(
                [Suspended(at=START, wait="sleep", step="z", until=START, event_type=None)]
            )
        second = store.claim_due(START, OTHER, limit=10, limits=limits)
        assert [lease.instance_id for lease in second.leases] == ["asleep"]
        second.leases[0].release()
        first.leases[1].release()
        third = store.claim_due(START + timedelta(hours=1), OTHER, limit=10, limits=limits)
        assert [lease.instance_id for lease in third.leases] == ["asleep", "q0"]
        for lease in third.leases:
            lease.release()

    def test_a_keyed_limit_counts_each_value_of_the_param_on_its_own(
        self, store: JournalStore
    ) -> None:
        limits = {"wf": ConcurrencyLimit(limit=1, key="customer")}
        for n, customer in enumerate(["a", "a", "b", None, "b"]):
            params: JsonValue = None if customer is None else {"customer": customer}
            store.create(created(f"k{n}", params, at=START + timedelta(seconds=n)))
        claim = store.claim_due(START, OWNER, limit=10, limits=limits)
        assert [lease.instance_id for lease in claim.leases] == ["k0", "k2", "k3"]
        for lease in claim.leases:
            lease.release()

    def test_a_rate_limit_counts_first_starts_in_its_period(self, store: JournalStore) -> None:
        limits = {"wf": ConcurrencyLimit(rate=Rate(2, timedelta(minutes=1)))}
        for n in range(4):
            store.create(created(f"r{n}", at=START + timedelta(seconds=n)))
        claim = store.claim_due(START, OWNER, limit=10, limits=limits)
        assert [lease.instance_id for lease in claim.leases] == ["r0", "r1"]
        for lease in claim.leases:  # they start and finish at once
            lease.append([RunStarted(at=START, pid=1, host="h")])
            lease.append([Finished(at=START, output=None)])
            lease.release()
        assert store.claim_due(START + timedelta(seconds=30), OWNER, 10, limits=limits).leases == []
        later = store.claim_due(START + timedelta(seconds=61), OWNER, limit=10, limits=limits)
        assert [lease.instance_id for lease in later.leases] == ["r2", "r3"]
        for lease in later.leases:
            lease.release()

    def test_claims_racing_under_a_limit_never_exceed_it(self, store: JournalStore) -> None:
        limits = {"wf": ConcurrencyLimit(limit=3)}
        for n in range(12):
            store.create(created(f"q{n:02d}", at=START + timedelta(seconds=n)))
        owners = [Owner(worker_id=f"w-{n}", pid=n, host="h") for n in range(4)]
        outcomes = all_at_once(
            4, lambda n: store.claim_due(START, owners[n], limit=12, limits=limits).leases
        )
        claimed = [lease for outcome in outcomes if isinstance(outcome, list) for lease in outcome]
        assert len(claimed) == 3, outcomes
        for lease in claimed:
            lease.release()

    # schedule states ----------------------------------------------------------------------

    def test_schedule_state_changes_are_atomic_and_kept(self, store: JournalStore) -> None:
        assert store.schedule_states() == {}

        def bump(state: JsonValue) -> JsonValue:
            count = state["count"] if isinstance(state, dict) else 0
            assert isinstance(count, int)
            return {"count": count + 1}

        outcomes = all_at_once(8, lambda n: store.update_schedule_state("k", bump))
        assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
        assert store.update_schedule_state("other", lambda state: [state]) == [None]
        assert store.schedule_states() == {"k": {"count": 8}, "other": [None]}

    def test_a_schedule_state_change_that_raises_changes_nothing(self, store: JournalStore) -> None:
        store.update_schedule_state("k", lambda state: 1)

        def fail(state: JsonValue) -> JsonValue:
            raise WorkflowInputError("change", "refused")

        with pytest.raises(WorkflowInputError):
            store.update_schedule_state("k", fail)
        assert store.schedule_states() == {"k": 1}

    def test_a_bad_query_is_refused(self) -> None:
        with pytest.raises(WorkflowInputError, match="'sleeping' is not one of"):
            ListQuery(statuses=frozenset({"sleeping"}))
        with pytest.raises(WorkflowInputError, match="limit: must be at least 1"):
            ListQuery(limit=0)

    # health -----------------------------------------------------------------------------

    def test_a_healthy_store_checks_healthy_and_notes_an_interrupted_run(
        self, store: JournalStore
    ) -> None:
        for lease in self._landscape(store):
            lease.release()
        report = store.check()
        assert report.healthy, [str(finding) for finding in report.problems]
        assert report.journals == 8
        notes = {(finding.kind, finding.instance_id) for finding in report.notes}
        assert ("interrupted", "crashed") in notes
        assert ("interrupted", "held") in notes  # released above: nobody runs it now
