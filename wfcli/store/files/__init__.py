"""The file store: a folder of JSON-lines journals, locks and inboxes."""

from wfcli.store.files.store import DEFAULT_MAX_LINE_BYTES, FileStore

__all__ = ["DEFAULT_MAX_LINE_BYTES", "FileStore"]
