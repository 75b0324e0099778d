"""Store URLs: shown without their password, and wfcli's own query parameters."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "split_url"]


def redact_url(url: str) -> str:
    """``url`` without its password (for messages and ``location()``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def split_url(url: str, own: Iterable[str]) -> tuple[str, dict[str, str]]:
    """``url`` without the query parameters named in ``own``, and their values
    (a driver refuses parameters it does not know)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = set(own)
    taken = {key: value for key, value in query if key in names}
    kept = [(key, value) for key, value in query if key not in names]
    return urlunsplit(parts._replace(query=urlencode(kept))), taken
