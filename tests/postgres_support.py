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
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

__all__ = ["PgServer", "pg_server", "require_driver", "require_postgres"]

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
