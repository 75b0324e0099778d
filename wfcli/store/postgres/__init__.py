"""The PostgreSQL store (``pip install 'wfcli[postgres]'``): importing it imports psycopg."""

from wfcli.store.postgres.store import DEFAULT_LEASE_SECONDS, PgStore

__all__ = ["DEFAULT_LEASE_SECONDS", "PgStore"]
