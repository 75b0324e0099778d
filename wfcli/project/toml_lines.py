"""TOML for ``workflows.toml``: parsing, and where each key is in the text.

``tomllib`` reports no positions of keys, so :class:`LineScanner` maps every table
header and key of text ``tomllib`` has accepted to its line, for error messages.
"""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, TypeAlias, Union

if TYPE_CHECKING:  # loaded with the workflows themselves (status and list need none)
    pass


__all__ = ["KeyPath", "LineScanner", "parse_toml", "render_key", "syntax_error", "toml_type"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# A key's place in the document: table and key names, and indexes into arrays.
KeyPath: TypeAlias = tuple[Union[str, int], ...]  # noqa: UP007 (evaluated at runtime)


def render_key(key: KeyPath) -> str:
    """``("workflows", 1, "class_name")`` -> ``workflows[1].class_name``."""
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if _BARE_KEY.fullmatch(part) else _quote(part)
            text += f".{shown}" if text else shown
    return text


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- where keys are in the text (tomllib reports no positions) -------------------------


class LineScanner:
    """Maps every table header and key of well-formed TOML text to its 1-based line.

    Only used to point error messages at a line, after ``tomllib`` has accepted the
    text; values are skipped with just enough lexing to step over strings and
    multi-line arrays.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.found: dict[KeyPath, int] = {}
        self._array_counts: dict[KeyPath, int] = {}
        self._table: KeyPath = ()

    def scan(self) -> dict[KeyPath, int]:
        row = 0
        while row < len(self.lines):
            line = self.lines[row]
            stripped = line.lstrip()
            if stripped.startswith("["):
                self._header(stripped, row)
            elif stripped and not stripped.startswith("#"):
                parsed = _parse_key(line, 0, "=")
                if parsed is not None:
                    parts, column = parsed
                    self._remember((*self._table, *parts), row)
                    row = _value_end(self.lines, row, column)
            row += 1
        return self.found

    def _header(self, stripped: str, row: int) -> None:
        is_array = stripped.startswith("[[")
        parsed = _parse_key(stripped, 2 if is_array else 1, "]")
        if parsed is None:
            return
        names, _ = parsed
        path: KeyPath = ()
        for position, name in enumerate(names):
            path = (*path, name)
            if is_array and position == len(names) - 1:
                index = self._array_counts.get(path, -1) + 1
                self._array_counts[path] = index
                path = (*path, index)
            elif path in self._array_counts:  # [a.b] under the latest [[a]]
                path = (*path, self._array_counts[path])
        self._table = path
        self._remember(path, row)

    def _remember(self, path: KeyPath, row: int) -> None:
        for end in range(1, len(path) + 1):
            self.found.setdefault(path[:end], row + 1)


def _parse_key(line: str, column: int, end: str) -> tuple[list[str], int] | None:
    """Parse a dotted key at ``column`` up to ``end``; return its parts and the column after."""
    parts: list[str] = []
    while True:
        while column < len(line) and line[column] in " \t":
            column += 1
        if column >= len(line):
            return None
        quote = line[column]
        if quote in "\"'":
            close = column + 1
            while close < len(line) and line[close] != quote:
                close += 2 if quote == '"' and line[close] == "\\" else 1
            if close >= len(line):
                return None
            raw = line[column + 1 : close]
            parts.append(_unescape(raw) if quote == '"' else raw)
            column = close + 1
        else:
            match = _BARE_KEY.match(line, column)
            if match is None:
                return None
            parts.append(match[0])
            column = match.end()
        while column < len(line) and line[column] in " \t":
            column += 1
        if line.startswith(end, column):
            return parts, column + 1
        if not line.startswith(".", column):
            return None
        column += 1


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text; the parser is imported on first use (``wf --store DIR`` reads none).

    Raises ``ValueError``: ``TOMLDecodeError`` is one, and so is Python's error for an
    integer with more digits than it converts.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    document: dict[str, Any] = tomllib.loads(text)
    return document


def _unescape(raw: str) -> str:
    try:
        decoded: str = parse_toml(f'k = "{raw}"')["k"]
    except ValueError:
        return raw
    return decoded


def _value_end(lines: list[str], row: int, column: int) -> int:
    """The last row of the value that starts at ``lines[row][column]``."""
    depth = 0
    quote = ""
    while row < len(lines):
        line = lines[row]
        while column < len(line):
            if quote:
                if line[column] == "\\" and quote in ('"', '"""'):
                    column += 2
                elif line.startswith(quote, column):
                    column += len(quote)
                    quote = ""
                else:
                    column += 1
                continue
            char = line[column]
            if char == "#":
                break
            if line.startswith(('"""', "'''"), column):
                quote = line[column : column + 3]
            elif char in "\"'":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            column += len(quote) or 1
        if quote in ('"', "'"):
            quote = ""
        if depth <= 0 and not quote:
            return row
        row += 1
        column = 0
    return row


# Compiled on first use (``re``'s cache): only a file with a syntax error needs it.
_TOML_POSITION = r"\s*\(at (?:line (?P<line>\d+), column \d+|end of document)\)$"


def syntax_error(error: ValueError, text: str) -> tuple[str, int]:
    """The message and line of a ``tomllib`` error (its message carries the position)."""
    message = str(error)
    line: int = getattr(error, "lineno", None) or text.count("\n") + 1
    match = re.search(_TOML_POSITION, message)
    if match is not None:
        message = message[: match.start()]
        if match["line"] is not None:
            line = int(match["line"])
    return message, line


def toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for kind, described in (
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    ):
        if isinstance(value, kind):
            return described
    return type(value).__name__
