"""The PostgreSQL store's schema, created and upgraded by wfcli itself.

Migrations are numbered and applied in order, each once, inside one transaction
holding a transaction-level advisory lock: many workers starting at once on a fresh
database serialise on it, the first creates the tables and the others find them made.
The tables live in the connection's current schema (``search_path``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

# The advisory lock key of wfcli's migrations (an arbitrary constant; the schema name
# is mixed in so that stores in two schemas of one database migrate independently).
_LOCK_KEY = "wfcli-schema"

MIGRATIONS: tuple[str, ...] = (
    # 1: instances with their listing summary and lease, journal lines, inbox messages.
    """
    CREATE TABLE wf_instance (
        instance_id text COLLATE "C" PRIMARY KEY,
        workflow text NOT NULL,
        status text NOT NULL,
        created timestamptz NOT NULL,
        wait_until timestamptz,
        event_ready boolean NOT NULL DEFAULT false,
        summary text NOT NULL,
        next_line bigint NOT NULL,
        lease_epoch bigint NOT NULL DEFAULT 0,
        lease_worker text,
        lease_pid integer,
        lease_host text,
        lease_expires timestamptz
    );
    CREATE INDEX wf_instance_created ON wf_instance (created, instance_id);
    CREATE INDEX wf_instance_status ON wf_instance (status, created, instance_id);
    CREATE INDEX wf_instance_workflow ON wf_instance (workflow, created, instance_id);
    CREATE INDEX wf_instance_active ON wf_instance (created, instance_id)
        WHERE status IN ('queued', 'running', 'waiting');
    CREATE INDEX wf_instance_wake ON wf_instance (wait_until) WHERE status = 'waiting';
    CREATE TABLE wf_journal (
        instance_id text COLLATE "C" NOT NULL,
        line_no bigint NOT NULL,
        epoch bigint NOT NULL,
        line text NOT NULL,
        PRIMARY KEY (instance_id, line_no)
    );
    CREATE TABLE wf_inbox (
        seq bigserial PRIMARY KEY,
        instance_id text COLLATE "C" NOT NULL,
        message_id text NOT NULL,
        action text NOT NULL,
        body text NOT NULL
    );
    CREATE INDEX wf_inbox_instance ON wf_inbox (instance_id, seq);
    """,
    # 2: what wf worker keeps per schedule (its watermark, last fire, skips).
    """
    CREATE TABLE wf_schedule (
        schedule_key text COLLATE "C" PRIMARY KEY,
        state text NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
    """The schema version in the current schema, None if wfcli never made one there."""
    row = conn.execute("SELECT to_regclass('wf_schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT max(version) FROM wf_schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else None


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the current schema to :data:`SCHEMA_VERSION`; returns the version found.

    ``conn`` is in autocommit mode. A database at a newer version than this wfcli
    knows is left alone (the caller refuses to use it).
    """
    if (found := schema_version(conn)) is not None and found >= SCHEMA_VERSION:
        return found
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s || coalesce(current_schema(), '')))",
            (_LOCK_KEY,),
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS wf_schema_version ("
            " version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM wf_schema_version").fetchone()
        found = int(row[0]) if row else 0
        for version in range(found + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO wf_schema_version (version) VALUES (%s)", (version,))
    return found
