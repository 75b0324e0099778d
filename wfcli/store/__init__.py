"""Journal stores behind one contract (:mod:`wfcli.store.contract`): in memory, in a
folder of files, in PostgreSQL (:mod:`wfcli.store.postgres`, imported only when one is
opened); :func:`open_store` picks one by its location."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from wfcli.errors import StoreLocationError
from wfcli.store.contract import JournalStore, Lease, Listing, ListQuery, Owner
from wfcli.store.files import FileStore
from wfcli.store.urls import redact_url

if TYPE_CHECKING:
    from wfcli.store.memory import MemoryStore

__all__ = [
    "FileStore",
    "JournalStore",
    "Lease",
    "ListQuery",
    "Listing",
    "MemoryStore",
    "Owner",
    "open_store",
]


def __getattr__(name: str) -> object:
    if name != "MemoryStore":  # for tests and programs: no command uses it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = importlib.import_module("wfcli.store.memory").MemoryStore
    globals()[name] = value
    return value


def open_store(
    location: str | os.PathLike[str], *, durable: bool = True, must_exist: bool = False
) -> JournalStore:
    """The store at ``location``: a folder path, a ``file://`` URL or a
    ``postgresql://`` (``postgres://``) URL.

    ``durable`` (``[store] fsync``) syncs every journaled record. ``must_exist`` (for
    commands that only read) refuses a folder that does not exist instead of treating it
    as an empty store. Raises :class:`StoreLocationError` for a location that names no
    usable store: an unknown scheme, a file where a folder belongs, a missing folder
    (with ``must_exist``), a PostgreSQL URL without the driver installed.
    """
    text = os.fspath(location)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise StoreLocationError(text, "a file:// URL names a folder on this machine")
        folder = Path(unquote(parts.path))
    elif scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None:
            raise StoreLocationError(
                redact_url(text),
                "the PostgreSQL driver is not installed: pip install 'wfcli[postgres]'",
            )
        from wfcli.store.postgres import PgStore

        return PgStore(text, durable=durable)
    elif scheme:
        raise StoreLocationError(
            text, f"unknown scheme {scheme!r}: use a folder, a file:// or a postgresql:// URL"
        )
    else:
        folder = Path(text).expanduser()
    folder = Path(os.path.abspath(folder))
    if folder.exists() and not folder.is_dir():
        raise StoreLocationError(str(folder), "not a folder (a file store is a folder)")
    if must_exist and not folder.exists():
        raise StoreLocationError(str(folder), "no such folder")
    return FileStore(folder, durable=durable)
