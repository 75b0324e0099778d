"""Checks of workflow params shared by the samples.

Params arrive read-only (``event.payload``: its dicts and lists refuse changes).
A bad value is the caller's mistake, so it fails without retries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wfcli import NonRetryableError

__all__ = ["InvalidParamsError", "require_int", "require_key", "require_mapping", "require_text"]

# Identifiers also name files (report and analysis keys), so no dots or slashes.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class InvalidParamsError(NonRetryableError):
    """The params (or an event payload) are not what the workflow needs."""


def require_mapping(value: object, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else :class:`InvalidParamsError`."""
    if not isinstance(value, Mapping):
        raise InvalidParamsError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def require_text(params: Mapping[str, Any], field: str, *, where: str = "params") -> str:
    """``params[field]`` as non-blank text; ``where`` names ``params`` in the error."""
    value = params.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidParamsError(f"{where}.{field} must be non-empty text, got {value!r}")
    return value


def require_key(params: Mapping[str, Any], field: str, *, where: str = "params") -> str:
    """``params[field]`` as an identifier safe to use in a file name."""
    value = params.get(field)
    if not isinstance(value, str) or _KEY.fullmatch(value) is None:
        raise InvalidParamsError(
            f"{where}.{field} must be 1-64 letters, digits, '_' or '-' (not first), got {value!r}"
        )
    return value


def require_int(
    params: Mapping[str, Any], field: str, *, minimum: int, where: str = "params"
) -> int:
    """``params[field]`` as a whole number no smaller than ``minimum``."""
    value = params.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParamsError(
            f"{where}.{field} must be a whole number >= {minimum}, got {value!r}"
        )
    return value
