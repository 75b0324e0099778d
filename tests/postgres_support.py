"""A real PostgreSQL server for the tests: a database per test session, a schema per store.

The server is ``$WF_TEST_POSTGRES`` (a ``postgresql://`` URL of a database whose user
may create databases), else ``postgresql://postgres@127.0.0.1:5432/postgres``. Without
a server the PostgreSQL tests are skipped for that one reason, unless
``WF_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from wfcli.core.codec import Record, RunStarted

if TYPE_CHECKING:
    from wfcli.store.postgres import PgStore

__all__ = [
    "PgServer",
    "check_one_holder_at_a_time",
    "journal_with_epochs",
    "pg_server",
    "require_driver",
    "require_postgres",
]

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def with_schema(url: str, schema: str, **extra: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options``), plus query ``extra``."""
    parts = urlsplit(url)
    query = [parts.query] if parts.query else []
    query.append("options=" + quote(f"-csearch_path={schema}", safe=""))
    query += [f"{key}={value}" for key, value in extra.items()]
    return urlunsplit(parts._replace(query="&".join(query)))


@dataclass
class PgServer:
    """The session's own database on the test server; :meth:`store_url` makes a fresh
    schema in it for each store."""

    database_url: str
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def new_schema(self) -> str:
        import psycopg

        schema = f"s{next(self._numbers)}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        return schema

    def store_url(self, **extra: str) -> str:
        return with_schema(self.database_url, self.new_schema(), **extra)


def _unavailable(reason: str, *, module: bool = False) -> None:
    if os.environ.get("WF_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"WF_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(
        f"no PostgreSQL for the tests: {reason} (set WF_TEST_POSTGRES)",
        allow_module_level=module,
    )


def require_driver() -> None:
    """At the top of a test module that imports the PostgreSQL store."""
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("psycopg is not installed: pip install 'wfcli[postgres]'", module=True)


def require_postgres() -> str:
    """The server URL, after skipping (or failing) the test if there is none."""
    url = os.environ.get("WF_TEST_POSTGRES") or DEFAULT_SERVER
    require_driver()
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as error:
        _unavailable(f"cannot connect to {url}: {' '.join(str(error).split())}")
    return url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A database of its own for this test session, dropped at the end."""
    url = require_postgres()
    import psycopg

    database = f"wftest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}".encode())
    try:
        yield PgServer(with_database(url, database))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)".encode())


def journal_with_epochs(store: PgStore, instance_id: str) -> list[tuple[int, Record]]:
    """The journal's records, each with the lease epoch that wrote its line."""
    rows = store.run(
        lambda conn: conn.execute(
            "SELECT epoch FROM wf_journal WHERE instance_id = %s ORDER BY line_no",
            (instance_id,),
        ).fetchall()
    )
    records = store.read(instance_id)
    assert len(records) == len(rows), instance_id
    return [(epoch, record) for (epoch,), record in zip(rows, records, strict=True)]


def check_one_holder_at_a_time(store: PgStore, instance_id: str) -> None:
    """The journal's lines come in lease epochs that never go back (no append from a
    former holder after a takeover), and the runs of one epoch are one owner's."""
    journal = journal_with_epochs(store, instance_id)
    epochs = [epoch for epoch, _ in journal]
    assert epochs == sorted(epochs), (instance_id, epochs)
    runners: dict[int, set[tuple[int, str]]] = {}
    for epoch, record in journal:
        if isinstance(record, RunStarted):
            runners.setdefault(epoch, set()).add((record.pid, record.host))
    for epoch, owners in runners.items():
        assert len(owners) == 1, (instance_id, epoch, owners)
