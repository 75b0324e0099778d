"""The PostgreSQL store: journals, inboxes and leases in tables shared by many workers.

Set-up, schema, guarantees and failure modes are in ``docs/postgres.md``. In short:

* a journal line is the file store's exact text (``encode_record(record, n)``), one
  row per line keyed by (instance, line number), read back with the shared rules;
* a lease is a row's (owner, epoch, expiry): taking one bumps the epoch, a thread
  renews the leases a store holds, and every write checks in its own statement that
  the epoch is still its lease's, unexpired, and the line number the next one;
* the instance row keeps what ``wf list`` shows, updated by the append that changes it;
* creating an instance and posting a message NOTIFY waiting workers; appends never do.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import select
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import psycopg

from wfcli.core.admission import ConcurrencyLimit
from wfcli.core.codec import (
    AttemptFailed,
    AttemptStarted,
    Created,
    InboxMessage,
    JsonValue,
    Record,
    RecordError,
    StepCompleted,
    StepFailed,
    WaitStarted,
    encode_record,
    parse_time,
)
from wfcli.core.ids import validate_instance_id
from wfcli.core.state import InstanceState, WaitInfo, fold
from wfcli.core.summary import InstanceSummary, JournalSummary
from wfcli.errors import (
    InstanceBusyError,
    InstanceExistsError,
    InstanceNotFoundError,
    JournalCorruptError,
    LeaseLostError,
    StoreFaultError,
    StoreLocationError,
)
from wfcli.store.contract import Claim, Damage, JournalStore, Lease, Listing, ListQuery, Owner
from wfcli.store.health import StoreReport
from wfcli.store.postgres.schema import SCHEMA_VERSION, migrate
from wfcli.store.urls import redact_url, split_url
from wfcli.store.validation import JournalRules, decode_journal_line

__all__ = ["DEFAULT_LEASE_SECONDS", "PgStore"]

DEFAULT_LEASE_SECONDS = 30.0
_ACQUIRE_TRIES = 3  # a refusal whose holder released at once is tried again
_T = TypeVar("_T")
_Connection = psycopg.Connection[tuple[Any, ...]]
# Records that change no listed field while the instance is not waiting (they touch
# its steps only), so an append of nothing else leaves the summary columns alone.
_STEP_ONLY = (AttemptStarted, StepCompleted, AttemptFailed, StepFailed, WaitStarted)
# What is due (InstanceSummary.is_due) as SQL over wf_instance ``i`` and a time
# %(due)s; the IN narrows the scan to active instances and those with mail.
_DUE = """
    (i.lease_expires IS NULL OR i.lease_expires <= now())
    AND i.instance_id IN (
        SELECT instance_id FROM wf_instance WHERE status IN ('queued', 'running', 'waiting')
        UNION SELECT instance_id FROM wf_inbox)
    AND (i.status IN ('queued', 'running')
         OR (i.status = 'waiting' AND (i.wait_until <= %(due)s OR i.event_ready))
         OR EXISTS (SELECT 1 FROM wf_inbox m WHERE m.instance_id = i.instance_id))
"""
# An instance's priority (wf run --priority), from its listing summary.
_PRIORITY = "coalesce((i.summary::jsonb #>> '{shown,priority}')::int, 0)"
# Advisory locks of this store's schema (two schemas of a database do not share them).
_ADVISORY_LOCK = (
    "SELECT pg_advisory_{verb}(hashtextextended(%s || coalesce(current_schema(), ''), 0))"
)
_SHOWN_STATUS = (
    "CASE WHEN i.status = 'running' AND 'pause' = ANY(m.actions)"
    " THEN 'waitingForPause' ELSE i.status END"
)


_FENCE_PARAMETERS = ("id", "epoch", "worker", "count", "ttl", "first")
_SUMMARY_PARAMETERS = ("status", "wait_until", "event_ready", "summary")


@functools.cache
def _append_statement(*, lines: int, summary: bool, synced: bool) -> tuple[str, tuple[str, ...]]:
    """The fenced append of ``lines`` journal lines and the names of its positional
    parameters, in order: one statement that bumps the instance row's line number
    (only if the lease and the next line number are still the caller's, and its expiry
    not passed), inserts the lines, and returns a row only if it wrote; ``summary``
    also sets the listing columns. A ``synced`` one returns whether the inbox has
    messages; an unsynced one returns NULL and has its transaction commit without
    waiting for the WAL flush."""
    names = (
        *_FENCE_PARAMETERS,
        *(_SUMMARY_PARAMETERS if summary else ()),
        *(("line",) if lines == 1 else ("numbers", "lines")),
    )
    slot = {name: f"${position}" for position, name in enumerate(names, start=1)}
    values = (
        f"SELECT {slot['id']}, {slot['first']}, {slot['epoch']}, {slot['line']} FROM fence"
        if lines == 1
        else f"SELECT {slot['id']}, l.n, {slot['epoch']}, l.line FROM fence,"
        f" unnest({slot['numbers']}::bigint[], {slot['lines']}::text[]) AS l(n, line)"
    )
    listing = (
        f", status = {slot['status']}, wait_until = {slot['wait_until']},"
        f" event_ready = {slot['event_ready']}, summary = {slot['summary']}"
        if summary
        else ""
    )
    returned = (
        f"EXISTS (SELECT 1 FROM wf_inbox WHERE instance_id = {slot['id']})"
        if synced
        else "NULL::boolean, set_config('synchronous_commit', 'off', true)"
    )
    return (
        f"""
WITH fence AS (
    UPDATE wf_instance SET next_line = next_line + {slot["count"]},
        lease_expires = now() + {slot["ttl"]} * interval '1 second' {listing}
    WHERE instance_id = {slot["id"]} AND lease_epoch = {slot["epoch"]}
        AND lease_worker = {slot["worker"]} AND lease_expires > now()
        AND next_line = {slot["first"]}
    RETURNING 1),
lines AS (INSERT INTO wf_journal (instance_id, line_no, epoch, line) {values})
SELECT {returned} FROM fence
""",
        names,
    )


def summary_columns(state: InstanceState) -> dict[str, object]:
    """The instance row's listing columns for ``state``."""
    journal = JournalSummary.of(state)
    wait = journal.waiting
    document: dict[str, JsonValue] = {
        "shown": journal.shown,
        "waiting": None if wait is None else wait.to_json(),
    }
    return {
        "status": journal.status,
        "wait_until": None if wait is None else wait.until,
        "event_ready": journal.event_ready,
        "summary": json.dumps(document, ensure_ascii=False, separators=(",", ":")),
    }


def _journal_summary(
    instance_id: str, workflow: str, status: str, event_ready: bool, summary: str
) -> JournalSummary:
    document = json.loads(summary)
    shown = document["shown"]
    wait = document["waiting"]
    return JournalSummary(
        instance_id=instance_id,
        workflow=workflow,
        status=status,  # type: ignore[arg-type]
        created=parse_time(shown["created"]),
        waiting=None
        if wait is None
        else WaitInfo(wait["kind"], wait["step"], parse_time(wait["until"]), wait["event_type"]),
        event_ready=event_ready,
        shown=shown,
    )


def _owner(worker: str | None, pid: int | None, host: str | None) -> Owner | None:
    if worker is None or pid is None or host is None:
        return None
    return Owner(worker_id=worker, pid=pid, host=host)


def _alive(conn: _Connection) -> bool:
    """Whether an idle connection may still work: one the server closed (it restarted,
    say) has its end of file waiting to be read, so a statement sent on it would fail
    without having run anywhere."""
    if conn.closed:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class _Pool:
    """Autocommit connections, reused: one per thread at a time, made on demand."""

    def __init__(self, conninfo: str, *, synchronous: bool) -> None:
        self._conninfo = conninfo
        self._synchronous = synchronous
        self._idle: list[_Connection] = []
        self._mutex = threading.Lock()

    def take(self) -> _Connection:
        """An idle connection that may still work, or a new one."""
        with self._mutex:
            conn = self._idle.pop() if self._idle else None
        while conn is not None and not _alive(conn):
            conn.close()
            with self._mutex:
                conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            if not self._synchronous:
                conn.execute("SET synchronous_commit = off")
        return conn

    def give(self, conn: _Connection) -> None:
        """Return a connection :meth:`take` gave, in a known state, for reuse."""
        with self._mutex:
            self._idle.append(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Connection]:
        conn = self.take()
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown (a broken link, a statement cut short)
            raise
        self.give(conn)

    def close(self) -> None:
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _AppendPipeline:
    """A lease's own connection in pipeline mode, for its appends.

    An unsynced append is sent as a transaction of its own (``BEGIN``, the append,
    ``COMMIT``), which commits without waiting for the WAL flush, and is not waited
    for: the server runs and commits it while the caller goes on (a step's callback
    runs), even if the caller's process dies meanwhile. A synced append is sent behind
    it and one ``Sync`` collects every outstanding result: one round trip per step.
    Statements go through raw cursors (positional parameters, nothing to convert) kept
    with the connection, since appends are per step.
    """

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._conn: _Connection | None = None
        self._pipeline: psycopg.Pipeline | None = None
        self._mode = contextlib.ExitStack()  # leaves pipeline mode
        self._control: psycopg.RawCursor[tuple[Any, ...]] | None = None
        self._idle: list[psycopg.RawCursor[tuple[Any, ...]]] = []
        self._sent: list[psycopg.RawCursor[tuple[Any, ...]]] = []

    def _open(self) -> tuple[psycopg.Pipeline, psycopg.RawCursor[tuple[Any, ...]]]:
        if self._conn is not None and not self._sent and not _alive(self._conn):
            self.close(reuse=False)  # the server closed it while idle (it restarted, say)
        if self._conn is None or self._pipeline is None or self._control is None:
            conn = self._pool.take()
            try:
                self._pipeline = self._mode.enter_context(conn.pipeline())
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._control = psycopg.RawCursor(conn)
        return self._pipeline, self._control

    def _execute(self, statement: str, parameters: Sequence[object]) -> None:
        assert self._conn is not None
        cursor = self._idle.pop() if self._idle else psycopg.RawCursor(self._conn)
        self._sent.append(cursor)
        cursor.execute(statement, parameters)

    def send(self, statement: str, parameters: Sequence[object]) -> None:
        """Send an unsynced append; its row comes with the next :meth:`call` or :meth:`settle`."""
        _, control = self._open()
        control.execute("BEGIN")
        self._execute(statement, parameters)
        control.execute("COMMIT")

    def call(self, statement: str, parameters: Sequence[object]) -> list[tuple[Any, ...] | None]:
        """Send a synced append and wait: the rows of every append sent since the last
        call (or settle), this one's last."""
        self._open()
        self._execute(statement, parameters)
        return self.settle()

    def settle(self) -> list[tuple[Any, ...] | None]:
        """Wait for the appends sent and not yet answered; their rows, in order."""
        if not self._sent:
            return []
        pipeline, _ = self._open()
        sent, self._sent = self._sent, []
        pipeline.sync()
        rows = [cursor.fetchone() for cursor in sent]
        self._idle.extend(sent)
        return rows

    def close(self, *, reuse: bool) -> None:
        """Give the connection back to the pool (``reuse``) or close it (its state is
        unknown after an error)."""
        conn, self._conn, self._pipeline, self._sent = self._conn, None, None, []
        self._control, self._idle = None, []
        if conn is None:
            return
        if not reuse:
            conn.close()  # first: leaving pipeline mode then fails at once, not waiting
        try:
            self._mode.close()
        except psycopg.Error:
            conn.close()
            return
        if reuse:
            self._pool.give(conn)


class _PgLease(Lease):
    def __init__(self, store: PgStore, instance_id: str, owner: Owner, epoch: int) -> None:
        self.instance_id = instance_id
        self.owner = owner
        self.epoch = epoch
        """The fencing token: bumped by every acquire, checked by every write."""
        self._store = store
        self._mutex = threading.Lock()  # parallel steps append from several threads
        self._lost: str | None = None
        self._state: InstanceState | None = None
        self._summary: dict[str, object] | None = None
        self._next_line = 0
        self._rules: JournalRules | None = None
        """The rules the journal was read with, from line 1 on (appends go on with them)."""
        self._mail_known_empty = False
        self._pipeline = _AppendPipeline(store._pool)

    def _check(self) -> None:
        if self._lost is not None:
            raise LeaseLostError(self.instance_id, self._lost)

    def _fence(self) -> dict[str, object]:
        return {"id": self.instance_id, "epoch": self.epoch, "worker": self.owner.worker_id}

    def read(self) -> list[Record]:
        with self._mutex:
            self._settle()
            return list(self._read())

    def _read(self) -> list[Record]:
        records = self._store.read(self.instance_id)
        self._state = fold(records)
        self._summary = summary_columns(self._state)
        self._next_line = len(records) + 1
        self._rules = JournalRules(self.instance_id, self._store.where(self.instance_id))
        for line_no, record in enumerate(records, start=1):
            self._rules.check(record, line_no)
        return records

    def append(self, records: Sequence[Record], *, sync: bool = True) -> None:
        if not records:
            return
        with self._mutex:
            self._check()
            if self._state is None:
                self._read()
            state = self._state
            rules = self._rules
            assert state is not None
            assert rules is not None
            first = self._next_line
            for line_no, record in enumerate(records, start=first):
                rules.check(record, line_no)
            lines = [encode_record(record, n) for n, record in enumerate(records, start=first)]
            self._state = None  # until the write is known to have happened
            step_only = state.waiting is None and all(isinstance(r, _STEP_ONLY) for r in records)
            for record in records:
                state.apply(record)
            parameters: dict[str, object] = {
                **self._fence(),
                "count": len(records),
                "ttl": self._store.lease_seconds,
                "first": first,
            }
            if len(records) == 1:
                parameters["line"] = lines[0]
            else:
                parameters.update(numbers=list(range(first, first + len(records))), lines=lines)
            summary = self._summary if step_only else summary_columns(state)
            if summary != self._summary:
                parameters.update(summary or {})
            statement, names = _append_statement(
                lines=len(records), summary=summary != self._summary, synced=sync
            )
            values = [parameters[name] for name in names]
            rows: list[tuple[Any, ...] | None] = []
            try:
                if sync:
                    rows = self._pipeline.call(statement, values)
                else:
                    self._pipeline.send(statement, values)
            except psycopg.Error as error:
                self._fail(error)
            self._confirm(rows)
            self._state, self._summary = state, summary
            self._next_line = first + len(records)
            # Only a synced append says whether there is mail (the engine asks after a
            # step's result, not between its start and its callback).
            last = rows[-1] if rows else None
            self._mail_known_empty = last is not None and not last[0]

    def _confirm(self, rows: Sequence[tuple[Any, ...] | None]) -> None:
        """Check the rows of appends sent: one missing was refused (and so was every
        later one, whose line numbers followed it)."""
        if any(row is None for row in rows):
            self._lose("it expired or another worker took it over")
            self._check()

    def _settle(self) -> None:
        """Wait for the unsynced appends sent; raises if one was refused."""
        try:
            self._confirm(self._pipeline.settle())
        except psycopg.Error as error:
            self._fail(error)

    def _fail(self, error: psycopg.Error) -> NoReturn:
        fault = self._store._failure(error)
        self._lose(
            f"the database failed, whether the write happened is unknown: {fault}", broken=True
        )
        raise fault from None

    def close_connection(self) -> None:
        """Close the connection this lease appends on (its store is closing)."""
        with self._mutex:
            self._pipeline.close(reuse=False)

    def _lose(self, reason: str, *, broken: bool = False) -> None:
        self._lost = reason
        self._pipeline.close(reuse=not broken)
        self._store._forget(self)

    def pending(self) -> list[InboxMessage]:
        # The engine asks between every two steps; the last append said whether
        # there was mail then. A message posted since is seen at the next step.
        if self._mail_known_empty:
            self._mail_known_empty = False
            return []
        return self._store.pending(self.instance_id)

    def discard(self, message_ids: Sequence[str]) -> None:
        with self._mutex:
            self._check()
            self._settle()
            row = self._store.run(
                lambda conn: conn.execute(
                    """
                    WITH fence AS (
                        SELECT 1 FROM wf_instance WHERE instance_id = %(id)s
                            AND lease_epoch = %(epoch)s AND lease_worker = %(worker)s
                            AND lease_expires > now()),
                    gone AS (
                        DELETE FROM wf_inbox WHERE instance_id = %(id)s
                            AND message_id = ANY(%(messages)s) AND EXISTS (SELECT 1 FROM fence))
                    SELECT EXISTS (SELECT 1 FROM fence)
                    """,
                    {**self._fence(), "messages": list(message_ids)},
                ).fetchone()
            )
            if not row or not row[0]:
                self._lose("it expired or another worker took it over")
                self._check()

    def delete_instance(self) -> None:
        with self._mutex:
            self._check()
            self._settle()
            row = self._store.run(
                lambda conn: conn.execute(
                    """
                    WITH gone AS (
                        DELETE FROM wf_instance WHERE instance_id = %(id)s
                            AND lease_epoch = %(epoch)s AND lease_worker = %(worker)s
                            AND lease_expires > now()
                        RETURNING instance_id),
                    lines AS (DELETE FROM wf_journal WHERE instance_id IN (SELECT * FROM gone)),
                    mail AS (DELETE FROM wf_inbox WHERE instance_id IN (SELECT * FROM gone))
                    SELECT count(*) FROM gone
                    """,
                    self._fence(),
                ).fetchone()
            )
            self._lose("it was released")
            if not row or not row[0]:
                raise LeaseLostError(self.instance_id, "it expired or another worker took it over")

    def release(self) -> None:
        with self._mutex:
            if self._lost is not None:
                return
            # What was sent lands before the lease goes (an attempt started counts).
            with contextlib.suppress(StoreFaultError, LeaseLostError):
                self._settle()
            if self._lost is not None:
                return
            self._lose("it was released")
            # If the database is unreachable the lease simply expires.
            with contextlib.suppress(StoreFaultError):
                self._store.run(
                    lambda conn: conn.execute(
                        "UPDATE wf_instance SET lease_worker = NULL, lease_pid = NULL,"
                        " lease_host = NULL, lease_expires = NULL"
                        " WHERE instance_id = %(id)s AND lease_epoch = %(epoch)s"
                        " AND lease_worker = %(worker)s",
                        self._fence(),
                    )
                )


class PgStore(JournalStore):
    """Journals in PostgreSQL, shared by workers on many machines.

    ``url`` is a libpq ``postgresql://`` URL; its query may set ``lease_seconds``
    (default :data:`DEFAULT_LEASE_SECONDS`): a lease not renewed for that long
    expires and another worker may take the instance over. The store renews its
    leases from a thread every third of that. The schema is created or upgraded on
    first use (:mod:`wfcli.store.postgres.schema`). Call :meth:`close` when done.
    """

    def __init__(
        self, url: str, *, durable: bool = True, lease_seconds: float | None = None
    ) -> None:
        conninfo, own = split_url(url, ("lease_seconds",))
        self.url = redact_url(url)
        self.durable = durable
        if lease_seconds is None:
            try:
                lease_seconds = float(own.get("lease_seconds", DEFAULT_LEASE_SECONDS))
            except ValueError:
                lease_seconds = 0.0
        if not lease_seconds > 0:
            raise StoreLocationError(self.url, "lease_seconds must be a positive number")
        self.lease_seconds = lease_seconds
        self._conninfo = conninfo
        self._pool = _Pool(conninfo, synchronous=durable)
        self._ready = False
        self._ready_mutex = threading.Lock()
        self._leases: dict[int, _PgLease] = {}
        self._leases_mutex = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self._listener: _Connection | None = None
        self._channel: str | None = None

    def location(self) -> str:
        return self.url

    def where(self, instance_id: str) -> str:
        """How errors name an instance's journal."""
        return f"{self.url} {instance_id}"

    # plumbing ------------------------------------------------------------------------

    def run(self, work: Callable[[_Connection], _T], pool: _Pool | None = None) -> _T:
        """``work(connection)`` on a pooled connection, after the schema is ready;
        a database error becomes :class:`StoreFaultError`."""
        self._prepare()
        try:
            with (pool or self._pool).connection() as conn:
                return work(conn)
        except psycopg.Error as error:
            raise self._failure(error) from None

    def _failure(self, error: psycopg.Error) -> StoreFaultError:
        text = " ".join(str(error).split()) or type(error).__name__
        return StoreFaultError("query", self.url, text)

    def _prepare(self) -> None:
        if self._ready:
            return
        with self._ready_mutex:
            if self._ready:
                return
            try:
                with self._pool.connection() as conn:
                    found = migrate(conn)
            except psycopg.Error as error:
                raise self._failure(error) from None
            if found > SCHEMA_VERSION:
                raise StoreFaultError(
                    "open",
                    self.url,
                    f"the schema is version {found}, newer than this wfcli knows"
                    f" ({SCHEMA_VERSION}): upgrade wfcli",
                )
            self._ready = True

    def close(self) -> None:
        """Stop renewing leases and close every connection (leases held expire)."""
        self._closed.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._leases_mutex:
            held = list(self._leases.values())
        for lease in held:
            lease.close_connection()
        with contextlib.suppress(psycopg.Error):
            if self._listener is not None:
                self._listener.close()
        self._pool.close()

    # leases ----------------------------------------------------------------------------

    def _hold(self, lease: _PgLease) -> _PgLease:
        with self._leases_mutex:
            self._leases[id(lease)] = lease
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(
                    target=self._renew_forever, name="wfcli-pg-heartbeat", daemon=True
                )
                self._heartbeat.start()
        return lease

    def _forget(self, lease: _PgLease) -> None:
        with self._leases_mutex:
            self._leases.pop(id(lease), None)

    def _renew_forever(self) -> None:
        while not self._closed.wait(self.lease_seconds / 3):
            with self._leases_mutex:
                held = list(self._leases.values())
            if not held:
                continue
            # A failed round is retried at the next; an expired lease is never
            # revived (the statement renews only unexpired ones).
            with contextlib.suppress(StoreFaultError):
                self.renew(held)

    def renew(self, leases: Sequence[_PgLease]) -> None:
        """Push back the expiry of ``leases`` still held (what the heartbeat does)."""
        self.run(
            lambda conn: conn.execute(
                """
                UPDATE wf_instance i SET lease_expires = now() + %(ttl)s * interval '1 second'
                FROM unnest(%(ids)s::text[], %(epochs)s::bigint[], %(workers)s::text[])
                    AS l(instance_id, epoch, worker)
                WHERE i.instance_id = l.instance_id AND i.lease_epoch = l.epoch
                    AND i.lease_worker = l.worker AND i.lease_expires > now()
                """,
                {
                    "ttl": self.lease_seconds,
                    "ids": [lease.instance_id for lease in leases],
                    "epochs": [lease.epoch for lease in leases],
                    "workers": [lease.owner.worker_id for lease in leases],
                },
            )
        )

    def expire_lease(self, instance_id: str) -> None:
        """End the lease on ``instance_id`` now, as if its holder had stopped renewing
        it: for tests of what a lost lease does."""
        self.run(
            lambda conn: conn.execute(
                "UPDATE wf_instance SET lease_expires = now() - interval '1 second'"
                " WHERE instance_id = %s AND lease_expires IS NOT NULL",
                (instance_id,),
            )
        )

    def _lease_parameters(self, owner: Owner) -> dict[str, object]:
        return {
            "worker": owner.worker_id,
            "pid": owner.pid,
            "host": owner.host,
            "ttl": self.lease_seconds,
        }

    # contract ----------------------------------------------------------------------------

    def create(self, record: Created) -> None:
        self.import_journal([record])

    def import_journal(self, records: Sequence[Record]) -> None:
        """Create an instance with a whole journal in one transaction."""
        first = records[0] if records else None
        if not isinstance(first, Created):
            raise JournalCorruptError(self.url, 1, "first record is not 'created'")
        instance_id = validate_instance_id(first.instance_id)
        rules = JournalRules(instance_id, self.where(instance_id))
        for line_no, record in enumerate(records, start=1):
            rules.check(record, line_no)
        state = fold(records)
        parameters = {
            "id": instance_id,
            "workflow": first.workflow,
            "created": first.at,
            "next": len(records) + 1,
            "numbers": list(range(1, len(records) + 1)),
            "lines": [encode_record(record, n) for n, record in enumerate(records, start=1)],
            **summary_columns(state),
        }
        row = self.run(
            lambda conn: conn.execute(
                """
                WITH made AS (
                    INSERT INTO wf_instance (instance_id, workflow, status, created, wait_until,
                        event_ready, summary, next_line)
                    VALUES (%(id)s, %(workflow)s, %(status)s, %(created)s, %(wait_until)s,
                        %(event_ready)s, %(summary)s, %(next)s)
                    ON CONFLICT (instance_id) DO NOTHING
                    RETURNING instance_id),
                lines AS (
                    INSERT INTO wf_journal (instance_id, line_no, epoch, line)
                    SELECT made.instance_id, l.n, 0, l.line
                    FROM made, unnest(%(numbers)s::bigint[], %(lines)s::text[]) AS l(n, line))
                SELECT pg_notify(%(channel)s, instance_id) FROM made
                """,
                {**parameters, "channel": self.channel()},
            ).fetchone()
        )
        if row is None:
            raise InstanceExistsError(instance_id)

    def read(self, instance_id: str) -> list[Record]:
        rows: list[tuple[int, str]] = self.run(
            lambda conn: conn.execute(
                "SELECT line_no, line FROM wf_journal WHERE instance_id = %s ORDER BY line_no",
                (instance_id,),
            ).fetchall()
        )
        where = self.where(instance_id)
        if not rows:
            if self._exists(instance_id):
                raise JournalCorruptError(where, 1, "empty journal (no created record)")
            raise InstanceNotFoundError(instance_id)
        rules = JournalRules(instance_id, where)
        return [
            decode_journal_line(line.encode(), line_no, rules)
            for line_no, (_, line) in enumerate(rows, start=1)
        ]

    def read_after(self, instance_id: str, known: int) -> list[Record]:
        """Only the lines after the first ``known`` (and line 1, for the journal's version)."""
        if known < 1:
            return self.read(instance_id)
        rows: list[tuple[int, str]] = self.run(
            lambda conn: conn.execute(
                "SELECT line_no, line FROM wf_journal WHERE instance_id = %s"
                " AND (line_no = 1 OR line_no > %s) ORDER BY line_no",
                (instance_id, known),
            ).fetchall()
        )
        if not rows:
            return self.read(instance_id)  # says what is wrong
        rules = JournalRules(instance_id, self.where(instance_id))
        decode_journal_line(rows[0][1].encode(), 1, rules)
        return [
            decode_journal_line(line.encode(), line_no, rules)
            for line_no, (_, line) in enumerate(rows[1:], start=known + 1)
        ]

    def _exists(self, instance_id: str) -> bool:
        return bool(
            self.run(
                lambda conn: conn.execute(
                    "SELECT 1 FROM wf_instance WHERE instance_id = %s", (instance_id,)
                ).fetchone()
            )
        )

    def instance_ids(self) -> list[str]:
        rows = self.run(
            lambda conn: conn.execute(
                "SELECT instance_id FROM wf_instance ORDER BY instance_id"
            ).fetchall()
        )
        return [row[0] for row in rows]

    def acquire(self, instance_id: str, owner: Owner) -> Lease:
        parameters = {**self._lease_parameters(owner), "id": instance_id}
        for _ in range(_ACQUIRE_TRIES):
            row = self.run(
                lambda conn: conn.execute(
                    """
                    WITH taken AS (
                        UPDATE wf_instance SET lease_epoch = lease_epoch + 1,
                            lease_worker = %(worker)s, lease_pid = %(pid)s,
                            lease_host = %(host)s,
                            lease_expires = now() + %(ttl)s * interval '1 second'
                        WHERE instance_id = %(id)s
                            AND (lease_expires IS NULL OR lease_expires <= now())
                        RETURNING lease_epoch)
                    SELECT (SELECT lease_epoch FROM taken)
                    FROM wf_instance WHERE instance_id = %(id)s
                    """,
                    parameters,
                ).fetchone()
            )
            if row is None:
                raise InstanceNotFoundError(instance_id)
            if row[0] is not None:
                return self._hold(_PgLease(self, instance_id, owner, row[0]))
            # Refused: name the holder from a new snapshot (the statement's own may
            # predate a claim that committed while it waited for the row).
            holder = self.holder(instance_id)
            if holder is not None:
                raise InstanceBusyError(instance_id, holder.pid, holder.host)
        raise InstanceBusyError(instance_id, None, None)

    def claim_due(
        self,
        now: datetime,
        owner: Owner,
        limit: int,
        *,
        skip: Collection[str] = (),
        limits: Mapping[str, ConcurrencyLimit] | None = None,
    ) -> Claim:
        """Without limits, in one statement: ``FOR UPDATE SKIP LOCKED`` over what is due,
        leased to ``owner``; no journal is read, so nothing is reported damaged. With
        limits, the contract's claim under :meth:`admission_lock` (an advisory lock
        that every machine on the database shares)."""
        if limits:
            return super().claim_due(now, owner, limit, skip=skip, limits=limits)
        rows = self.run(
            lambda conn: conn.execute(
                f"""
                WITH due AS (
                    SELECT i.instance_id FROM wf_instance i
                    WHERE {_DUE} AND NOT i.instance_id = ANY(%(skip)s)
                    ORDER BY {_PRIORITY} DESC, i.created, i.instance_id LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED)
                UPDATE wf_instance i SET lease_epoch = i.lease_epoch + 1,
                    lease_worker = %(worker)s, lease_pid = %(pid)s, lease_host = %(host)s,
                    lease_expires = now() + %(ttl)s * interval '1 second'
                FROM due WHERE i.instance_id = due.instance_id
                RETURNING i.instance_id, i.lease_epoch, i.created, {_PRIORITY}
                """,
                {
                    **self._lease_parameters(owner),
                    "due": now,
                    "limit": limit,
                    "skip": list(skip),
                },
            ).fetchall()
        )
        rows.sort(key=lambda row: (-row[3], row[2], row[0]))
        return Claim([self._hold(_PgLease(self, row[0], owner, row[1])) for row in rows], [])

    def still_due(self, lease: Lease, listed: InstanceSummary, now: datetime) -> bool:
        """Judged from the instance's row, whose summary every append keeps, and the
        actions of its mail, by the listing's query of that one row: the journal is not
        read (the run reads it). ``lease`` holds the row, so its holder is not counted."""
        found = self._listing("i.instance_id = %(id)s", {"id": lease.instance_id}, "ASC", None)
        if found.damaged:
            raise found.damaged[0]
        if not found.instances:
            return False
        row = found.instances[0]
        return InstanceSummary.of(row.journal, None, row.pending_messages).is_due(now)

    @contextlib.contextmanager
    def admission_lock(self) -> Iterator[None]:
        """A session advisory lock on a connection of its own, so it holds across
        machines; the server releases it if the holder's connection or process dies."""
        self._prepare()
        try:
            with self._pool.connection() as conn:
                conn.execute(_ADVISORY_LOCK.format(verb="lock"), ("wfcli-admission",))
                try:
                    yield
                finally:
                    conn.execute(_ADVISORY_LOCK.format(verb="unlock"), ("wfcli-admission",))
        except psycopg.Error as error:
            raise self._failure(error) from None

    def schedule_states(self) -> dict[str, JsonValue]:
        rows = self.run(
            lambda conn: conn.execute("SELECT schedule_key, state FROM wf_schedule").fetchall()
        )
        return {key: json.loads(state) for key, state in rows}

    def update_schedule_state(
        self, key: str, change: Callable[[JsonValue], JsonValue]
    ) -> JsonValue:
        """In one transaction under an advisory lock of the store's schedules."""

        def update(conn: _Connection) -> JsonValue:
            with conn.transaction():
                conn.execute(_ADVISORY_LOCK.format(verb="xact_lock"), ("wfcli-schedules",))
                row = conn.execute(
                    "SELECT state FROM wf_schedule WHERE schedule_key = %s", (key,)
                ).fetchone()
                state = change(None if row is None else json.loads(row[0]))
                conn.execute(
                    "INSERT INTO wf_schedule (schedule_key, state) VALUES (%s, %s)"
                    " ON CONFLICT (schedule_key) DO UPDATE SET state = excluded.state",
                    (key, json.dumps(state, separators=(",", ":"))),
                )
            return state

        return self.run(update)

    def holder(self, instance_id: str) -> Owner | None:
        row = self.run(
            lambda conn: conn.execute(
                "SELECT lease_worker, lease_pid, lease_host FROM wf_instance"
                " WHERE instance_id = %s AND lease_expires > now()",
                (instance_id,),
            ).fetchone()
        )
        return None if row is None else _owner(*row)

    def post(self, instance_id: str, message: InboxMessage) -> None:
        row = self.run(
            lambda conn: conn.execute(
                """
                WITH sent AS (
                    INSERT INTO wf_inbox (instance_id, message_id, action, body)
                    SELECT instance_id, %(message)s, %(action)s, %(body)s
                    FROM wf_instance WHERE instance_id = %(id)s
                    RETURNING instance_id)
                SELECT pg_notify(%(channel)s, instance_id) FROM sent
                """,
                {
                    "id": instance_id,
                    "message": message.message_id,
                    "action": message.action,
                    "body": message.encode(),
                    "channel": self.channel(),
                },
            ).fetchone()
        )
        if row is None:
            raise InstanceNotFoundError(instance_id)

    def pending(self, instance_id: str) -> list[InboxMessage]:
        rows = self.run(
            lambda conn: conn.execute(
                "SELECT seq, body FROM wf_inbox WHERE instance_id = %s ORDER BY seq",
                (instance_id,),
            ).fetchall()
        )
        return [self._message(instance_id, seq, body) for seq, body in rows]

    def _message(self, instance_id: str, seq: int, body: str) -> InboxMessage:
        try:
            return InboxMessage.decode(body)
        except RecordError as error:
            raise JournalCorruptError(
                f"{self.url} inbox of {instance_id} message {seq}", 1, error.reason
            ) from None

    def list_instances(self, query: ListQuery) -> Listing:
        """One query over the instance rows, which carry what a listing shows."""
        conditions = ["true"]
        parameters: dict[str, object] = {"due": query.due_at, "limit": query.limit}
        if query.workflow is not None:
            conditions.append("i.workflow = %(workflow)s")
            parameters["workflow"] = query.workflow
        if query.statuses:
            conditions.append(f"{_SHOWN_STATUS} = ANY(%(statuses)s)")
            parameters["statuses"] = sorted(query.statuses)
        if query.due_at is not None:
            conditions.append(_DUE)
        order = "ASC" if query.due_at is not None else "DESC"
        return self._listing(
            " AND ".join(f"({c})" for c in conditions), parameters, order, query.limit
        )

    def scan(self, now: datetime, limits: Mapping[str, ConcurrencyLimit]) -> Listing:
        """The rows a claim under ``limits`` needs: every unfinished instance and every
        one with mail, and the finished instances of rate-limited workflows that ended
        within their rate's period (they may have started within it). The rest of a
        long-lived store is never read."""
        rated = {name: limit.rate for name, limit in limits.items() if limit.rate is not None}
        condition = (
            "i.status NOT IN ('complete', 'errored', 'terminated')"
            " OR EXISTS (SELECT 1 FROM wf_inbox m WHERE m.instance_id = i.instance_id)"
            " OR (i.workflow = ANY(%(rated)s) AND"
            " (i.summary::jsonb #>> '{shown,ended}')::timestamptz"
            " > %(now)s - %(period)s * interval '1 second')"
        )
        period = max((rate.period.total_seconds() for rate in rated.values()), default=0.0)
        parameters = {"rated": sorted(rated), "period": period, "now": now}
        return self._listing(condition, parameters, "ASC", None)

    def _listing(
        self, condition: str, parameters: dict[str, object], order: str, limit: int | None
    ) -> Listing:
        cut = "LIMIT %(limit)s" if limit is not None else ""
        rows = self.run(
            lambda conn: conn.execute(
                f"""
                SELECT i.instance_id, i.workflow, i.status, i.event_ready, i.summary,
                    CASE WHEN i.lease_expires > now() THEN i.lease_worker END,
                    i.lease_pid, i.lease_host, coalesce(m.actions, '{{}}')
                FROM wf_instance i
                LEFT JOIN LATERAL (
                    SELECT array_agg(action ORDER BY seq) AS actions
                    FROM wf_inbox WHERE instance_id = i.instance_id) m ON true
                WHERE {condition}
                ORDER BY i.created {order}, i.instance_id {order} {cut}
                """,
                parameters,
            ).fetchall()
        )
        instances: list[InstanceSummary] = []
        damaged: list[Damage] = []
        for instance_id, workflow, status, ready, summary, worker, pid, host, actions in rows:
            try:
                journal = _journal_summary(instance_id, workflow, status, ready, summary)
            except (ValueError, KeyError, TypeError, RecordError):
                damaged.append(
                    JournalCorruptError(self.where(instance_id), 1, "unreadable listing summary")
                )
                continue
            instances.append(InstanceSummary.of(journal, _owner(worker, pid, host), tuple(actions)))
        return Listing(instances, damaged)

    def check(self) -> StoreReport:
        from wfcli.store.postgres.doctor import check_database

        return check_database(self)

    # wake-ups ----------------------------------------------------------------------------

    def channel(self) -> str:
        """The NOTIFY channel of this store (one per schema)."""
        if self._channel is None:
            row = self.run(lambda conn: conn.execute("SELECT current_schema()").fetchone())
            schema = re.sub(r"[^a-z0-9_]", "_", str(row[0] if row else "").lower())
            self._channel = f"wfcli_{schema}"[:63]
        return self._channel

    def wait_for_work(self, timeout: float) -> bool:
        """Block until new work may be there or ``timeout`` seconds pass.

        Returns True as soon as an instance is created or a message posted (send-event,
        pause, terminate, restart) anywhere in this store, False on timeout. It does
        not wake for times coming due (a sleep ending, a retry, an event timeout, an
        expired lease): a worker calls it with a timeout that bounds how late it
        notices those (a poll), then claims with :meth:`claim_due`. Listening starts
        at the first call; what arrives between two calls is reported by the next. If
        the database cannot be reached it waits out the timeout (the claim then
        reports the failure).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        woken = False
        try:
            conn = self._listening()
            for _ in conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                woken = True
            if woken:  # what else came meanwhile is the same news
                for _ in conn.notifies(timeout=0):
                    pass
        except (psycopg.Error, StoreFaultError, OSError):
            self._drop_listener()
            self._closed.wait(max(0.0, deadline - time.monotonic()))
        return woken

    def _listening(self) -> _Connection:
        if self._listener is None or self._listener.closed:
            channel = self.channel()
            conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.execute(f'LISTEN "{channel}"'.encode())
            self._listener = conn
        return self._listener

    def _drop_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None
