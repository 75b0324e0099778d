"""``wf doctor`` for the PostgreSQL store: the shared journal checks, and what only the
database shows (schema version, line counters, listing summaries, leases, stray rows)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from wfcli.core.state import fold
from wfcli.errors import InstanceNotFoundError, JournalCorruptError
from wfcli.store.health import Finding, StoreReport, check_journals
from wfcli.store.postgres.schema import SCHEMA_VERSION, schema_version
from wfcli.store.postgres.store import summary_columns

if TYPE_CHECKING:
    import psycopg

    from wfcli.store.postgres.store import PgStore

__all__ = ["check_database"]


def check_database(store: PgStore) -> StoreReport:
    """Everything :func:`check_journals` finds, plus the database's own findings."""
    report = check_journals(store)
    url = store.location()
    findings = list(report.findings)

    def problem(kind: str, message: str, instance_id: str | None = None) -> None:
        findings.append(Finding("problem", kind, url, message, None, instance_id))

    version = store.run(schema_version)
    if version != SCHEMA_VERSION:
        problem("schema", f"schema version {version}, this wfcli uses {SCHEMA_VERSION}")
    rows = store.run(
        lambda conn: conn.execute(
            """
            SELECT i.instance_id, i.status, i.wait_until, i.event_ready, i.summary,
                i.next_line, (SELECT max(line_no) FROM wf_journal j
                              WHERE j.instance_id = i.instance_id),
                i.lease_worker, i.lease_pid, i.lease_host, i.lease_expires,
                i.lease_expires <= now()
            FROM wf_instance i ORDER BY i.instance_id
            """
        ).fetchall()
    )
    for instance_id, status, until, ready, summary, next_line, last, *lease in rows:
        worker, pid, host, expires, expired = lease
        if last is not None and next_line != last + 1:
            problem(
                "line-counter",
                f"the next line is counted as {next_line} but the journal has {last} lines:"
                " appends to it fail",
                instance_id,
            )
        try:
            state = fold(store.read(instance_id))
        except (JournalCorruptError, InstanceNotFoundError):
            pass  # reported by check_journals, or deleted meanwhile
        else:
            expected = summary_columns(state)
            if (status, until, ready, summary) != tuple(expected.values()):
                problem(
                    "listing-summary",
                    "its listing columns disagree with its journal (wf list shows them)",
                    instance_id,
                )
        if worker is not None and expired:
            findings.append(
                Finding(
                    "note",
                    "expired-lease",
                    url,
                    f"a lease of worker {worker} (process {pid} on {host}) expired at"
                    f" {expires.isoformat()} without being released; the next claim takes"
                    " the instance over",
                    None,
                    instance_id,
                )
            )
    for table, what in (("wf_journal", "journal lines"), ("wf_inbox", "inbox messages")):
        query = (
            f"SELECT instance_id, count(*) FROM {table} t WHERE NOT EXISTS"
            " (SELECT 1 FROM wf_instance i WHERE i.instance_id = t.instance_id)"
            " GROUP BY instance_id ORDER BY instance_id"
        ).encode()
        strays = store.run(partial(_rows, query))
        for instance_id, count in strays:
            problem("stray-rows", f"{count} {what} of a missing instance", instance_id)
    return StoreReport(report.store, report.journals, report.inbox_messages, 0, tuple(findings))


def _rows(query: bytes, conn: psycopg.Connection[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()
