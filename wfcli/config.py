"""``workflows.toml``: finding it, checking it, and resolving where the store lives.

The file is modelled on ``wrangler.toml`` (SPEC §4). Every mistake in it is one
:class:`ConfigError` naming the file, the dotted key (``workflows[1].class_name``,
arrays counted from 0) and, where the text shows it, the line. Loading a project
never imports user code; :meth:`Project.load_workflows` does, on demand.

Precedence is flag > environment > file > default, for the file itself
(``--config`` > ``WF_CONFIG`` > walking up from the working directory) and for the
store (``--store`` > ``WF_STORE`` > ``[store] dir`` > a per-project folder under
the user's data directory).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import keyword
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, Union

from .client import WorkflowClient
from .clock import Clock
from .codec import JsonValue
from .durations import parse_duration
from .errors import ConfigError, WorkflowInputError
from .journal import DEFAULT_MAX_LINE_BYTES, FileStore
from .retry import RetryPolicy
from .settings import Settings

if TYPE_CHECKING:  # loaded with the workflows themselves (status and list need none)
    from .workflow import WorkflowEntrypoint

__all__ = [
    "CONFIG_FILENAME",
    "Project",
    "WorkflowConfig",
    "default_store_dir",
    "find_config",
    "load_project",
    "open_client",
    "resolve_config_path",
    "resolve_store_dir",
]

CONFIG_FILENAME = "workflows.toml"
_CONFIG_ENV = "WF_CONFIG"
_STORE_ENV = "WF_STORE"

_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_WORKFLOW_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# A step result is journaled inside one record line, which must stay under the line cap.
_MAX_VALUE_BYTES_LIMIT = DEFAULT_MAX_LINE_BYTES // 2

_TOP_KEYS = ("defaults", "limits", "main", "name", "store", "vars", "workflows")
_WORKFLOW_KEYS = ("binding", "class_name", "main", "name")
_STORE_KEYS = ("dir", "fsync")
_DEFAULTS_KEYS = ("max_inline_wait", "retries", "timeout")
_RETRIES_KEYS = ("backoff", "delay", "limit")
_LIMITS_KEYS = ("max_step_result_bytes",)

# A key's place in the document: table and key names, and indexes into arrays.
_KeyPath: TypeAlias = tuple[Union[str, int], ...]  # noqa: UP007 (evaluated at runtime)
_T = TypeVar("_T")
_NO_MAIN = "missing: set main here or at the top level of the file"


def _render_key(key: _KeyPath) -> str:
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


def _config_error(
    path: Path, key_lines: Mapping[_KeyPath, int], key: _KeyPath, reason: str
) -> ConfigError:
    """A :class:`ConfigError` about ``key``, on the line of the key or of its nearest table."""
    line = None
    for end in range(len(key), 0, -1):
        line = key_lines.get(key[:end])
        if line is not None:
            break
    return ConfigError(str(path), reason, key=_render_key(key) or None, line=line)


# --- where keys are in the text (tomllib reports no positions) -------------------------


class _LineScanner:
    """Maps every table header and key of well-formed TOML text to its 1-based line.

    Only used to point error messages at a line, after ``tomllib`` has accepted the
    text; values are skipped with just enough lexing to step over strings and
    multi-line arrays.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.found: dict[_KeyPath, int] = {}
        self._array_counts: dict[_KeyPath, int] = {}
        self._table: _KeyPath = ()

    def scan(self) -> dict[_KeyPath, int]:
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
        path: _KeyPath = ()
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

    def _remember(self, path: _KeyPath, row: int) -> None:
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


def _parse_toml(text: str) -> dict[str, Any]:
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
        decoded: str = _parse_toml(f'k = "{raw}"')["k"]
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


# --- the project -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """One ``[[workflows]]`` entry: a workflow name bound to a class."""

    name: str
    binding: str
    class_name: str
    main: str | None


@dataclass(frozen=True, slots=True)
class Project:
    """A checked ``workflows.toml``.

    ``main`` and each workflow's ``main`` are a dotted module name or a path to a
    ``.py`` file relative to the file's folder. ``store_dir`` is ``[store] dir``
    made absolute; ``durable`` is ``[store] fsync``; ``settings`` come from
    ``[defaults]`` and ``[limits]``.
    """

    path: Path
    name: str
    main: str | None
    variables: dict[str, JsonValue]
    workflows: tuple[WorkflowConfig, ...]
    store_dir: Path | None
    durable: bool
    settings: Settings
    _key_lines: Mapping[_KeyPath, int] = field(default_factory=dict, repr=False, compare=False)
    _modules: dict[str, ModuleType] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _error(self, key: _KeyPath, reason: str) -> ConfigError:
        return _config_error(self.path, self._key_lines, key, reason)

    def load_workflows(self) -> dict[str, type[WorkflowEntrypoint]]:
        """Import the modules and return ``{workflow name: class}``.

        Each module is imported once per project. Raises :class:`ConfigError` if a
        module cannot be imported (whatever it raised), lacks the class, or the
        class is not a concrete :class:`WorkflowEntrypoint` subclass.
        """
        from .workflow import WorkflowEntrypoint

        classes: dict[str, type[WorkflowEntrypoint]] = {}
        for index, workflow in enumerate(self.workflows):
            main_key: _KeyPath = ("workflows", index, "main") if workflow.main else ("main",)
            main = workflow.main or self.main
            if main is None:
                raise self._error(("workflows", index, "main"), _NO_MAIN)
            module = self._module(main, main_key)
            class_key: _KeyPath = ("workflows", index, "class_name")
            found = getattr(module, workflow.class_name, None)
            if found is None:
                raise self._error(class_key, f"module {main!r} has no {workflow.class_name!r}")
            if not (isinstance(found, type) and issubclass(found, WorkflowEntrypoint)):
                raise self._error(
                    class_key,
                    f"{workflow.class_name!r} in {main!r} is not a subclass of "
                    "wfcli.WorkflowEntrypoint",
                )
            if inspect.isabstract(found):
                raise self._error(
                    class_key,
                    f"{workflow.class_name!r} in {main!r} is abstract: it does not implement run",
                )
            classes[workflow.name] = found
        return classes

    def _module(self, main: str, key: _KeyPath) -> ModuleType:
        module = self._modules.get(main)
        if module is not None:
            return module
        try:
            if main.endswith(".py"):
                module = self._import_file(main, key)
            else:
                _put_first_on_path(self.path.parent)
                importlib.invalidate_caches()
                module = importlib.import_module(main)
        except ConfigError:
            raise
        except (Exception, SystemExit) as error:
            detail = str(error)
            if isinstance(error, SyntaxError) and error.filename:
                # str() of a SyntaxError names only the file's base name.
                detail = f"{error.msg} ({error.filename}, line {error.lineno})"
            detail = " ".join(detail.splitlines())
            raise self._error(
                key, f"cannot import {main!r}: {type(error).__name__}: {detail}"
            ) from error
        self._modules[main] = module
        return module

    def _import_file(self, main: str, key: _KeyPath) -> ModuleType:
        file = _absolute(main, self.path.parent)
        if not file.is_file():
            raise self._error(key, f"file not found: {file}")
        import hashlib

        digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
        stem = re.sub(r"\W", "_", file.stem)
        name = f"_wfcli_main_{stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise self._error(key, f"cannot load {file} as a Python module")
        module = importlib.util.module_from_spec(spec)
        _put_first_on_path(file.parent)
        sys.modules[name] = module  # dataclasses and pickling look classes up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module


def _put_first_on_path(folder: Path) -> None:
    entry = str(folder)
    if not sys.path or sys.path[0] != entry:
        sys.path.insert(0, entry)


def _absolute(value: str | Path, base: Path) -> Path:
    """``value`` with ``~`` expanded, made absolute against ``base`` and normalised."""
    return Path(os.path.abspath(base / Path(value).expanduser()))


# --- finding and loading the file -------------------------------------------------------


def find_config(start: Path) -> Path | None:
    """The nearest ``workflows.toml`` in ``start`` or a folder above it, or ``None``."""
    folder = _absolute(start, Path.cwd())
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_FILENAME
        if path.is_file():
            return path
    return None


def resolve_config_path(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """The project file: ``--config`` > ``WF_CONFIG`` > the nearest one above ``cwd``.

    A folder given explicitly means its ``workflows.toml``. Raises
    :class:`ConfigError` if the chosen file does not exist or none is found.
    """
    for value, source in ((explicit, "--config"), (environ.get(_CONFIG_ENV), _CONFIG_ENV)):
        if value:
            path = _absolute(value, cwd)
            if path.is_dir():
                path /= CONFIG_FILENAME
            if not path.is_file():
                raise ConfigError(str(path), f"file not found (given by {source})")
            return path
    found = find_config(cwd)
    if found is None:
        raise ConfigError(
            CONFIG_FILENAME,
            f"not found in {cwd} or any folder above it; pass --config or set {_CONFIG_ENV}",
        )
    return found


def load_project(path: Path) -> Project:
    """Read and check a ``workflows.toml``; user code is not imported.

    Raises :class:`ConfigError` for unreadable files, TOML syntax errors, unknown
    keys, wrong types, missing keys, bad names and duplicate workflows or bindings.
    """
    path = _absolute(path, Path.cwd())
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(str(path), f"cannot read the file: {error.strerror or error}") from None
    try:
        document = _parse_toml(text)
    except ValueError as error:
        reason, line = _syntax_error(error, text)
        raise ConfigError(str(path), f"invalid TOML: {reason}", line=line) from None
    return _ProjectReader(path, _LineScanner(text).scan()).read(document)


_TOML_POSITION = re.compile(r"\s*\(at (?:line (?P<line>\d+), column \d+|end of document)\)$")


def _syntax_error(error: ValueError, text: str) -> tuple[str, int]:
    """The message and line of a ``tomllib`` error (its message carries the position)."""
    message = str(error)
    line: int = getattr(error, "lineno", None) or text.count("\n") + 1
    match = _TOML_POSITION.search(message)
    if match is not None:
        message = message[: match.start()]
        if match["line"] is not None:
            line = int(match["line"])
    return message, line


def _toml_type(value: object) -> str:
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


class _ProjectReader:
    """Checks a parsed document key by key and builds the :class:`Project`."""

    def __init__(self, path: Path, key_lines: dict[_KeyPath, int]) -> None:
        self.path = path
        self.key_lines = key_lines

    def error(self, key: _KeyPath, reason: str) -> ConfigError:
        return _config_error(self.path, self.key_lines, key, reason)

    def read(self, document: dict[str, Any]) -> Project:
        self.check_keys(document, _TOP_KEYS, ())
        name = self.required_text(document, ("name",))
        if _PROJECT_NAME.fullmatch(name) is None:
            raise self.error(
                ("name",),
                f"{name!r} is not a valid project name: use 1-64 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit",
            )
        main = self.main(document, ("main",))
        workflows = self.workflows(document)
        if main is None:
            for index, workflow in enumerate(workflows):
                if workflow.main is None:
                    raise self.error(("workflows", index, "main"), _NO_MAIN)
        variables = self.variables(document, workflows)
        store = self.table(document, ("store",))
        self.check_keys(store, _STORE_KEYS, ("store",))
        store_dir = self.text(store, ("store", "dir"))
        durable = store.get("fsync", True)
        if not isinstance(durable, bool):
            raise self.error(
                ("store", "fsync"), f"expected true or false, got {_toml_type(durable)}"
            )
        return Project(
            path=self.path,
            name=name,
            main=main,
            variables=variables,
            workflows=workflows,
            store_dir=None if store_dir is None else _absolute(store_dir, self.path.parent),
            durable=durable,
            settings=self.settings(document),
            _key_lines=self.key_lines,
        )

    # generic checks --------------------------------------------------------------------

    def check_keys(
        self, table: Mapping[str, object], allowed: tuple[str, ...], at: _KeyPath
    ) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"expected one of {', '.join(allowed)}"
                )
                raise self.error((*at, key), f"unknown key ({hint})")

    def table(self, parent: Mapping[str, object], key: _KeyPath) -> dict[str, Any]:
        value = parent.get(str(key[-1]), {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_toml_type(value)}")
        return value

    def text(self, table: Mapping[str, object], key: _KeyPath) -> str | None:
        """The string at ``key``, ``None`` when absent; never empty."""
        value = table.get(str(key[-1]))
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_toml_type(value)}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def required_text(self, table: Mapping[str, object], key: _KeyPath) -> str:
        value = self.text(table, key)
        if value is None:
            raise self.error(key, "missing (it is required)")
        return value

    def identifier(self, table: Mapping[str, object], key: _KeyPath) -> str:
        value = self.required_text(table, key)
        if not value.isidentifier() or keyword.iskeyword(value):
            raise self.error(key, f"{value!r} is not a Python identifier")
        return value

    def main(self, table: Mapping[str, object], key: _KeyPath) -> str | None:
        value = self.text(table, key)
        if value is None or value.endswith(".py"):
            return value
        if not all(part.isidentifier() for part in value.split(".")):
            raise self.error(
                key, f"{value!r} is neither a dotted module name nor a path to a .py file"
            )
        return value

    # sections --------------------------------------------------------------------------

    def workflows(self, document: Mapping[str, object]) -> tuple[WorkflowConfig, ...]:
        entries = document.get("workflows")
        if entries is None:
            raise self.error(("workflows",), "missing: add at least one [[workflows]] entry")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.error(
                ("workflows",),
                f"expected an array of tables ([[workflows]]), got {_toml_type(entries)}",
            )
        workflows: list[WorkflowConfig] = []
        names: dict[str, int] = {}
        bindings: dict[str, int] = {}
        for index, entry in enumerate(entries):
            at: _KeyPath = ("workflows", index)
            self.check_keys(entry, _WORKFLOW_KEYS, at)
            name = self.required_text(entry, (*at, "name"))
            if _WORKFLOW_NAME.fullmatch(name) is None:
                raise self.error(
                    (*at, "name"),
                    f"{name!r} is not a valid workflow name: use 1-64 lowercase letters, digits, "
                    "'_' or '-', starting with a letter or digit",
                )
            binding = self.identifier(entry, (*at, "binding"))
            for value, seen, what in ((name, names, "name"), (binding, bindings, "binding")):
                if value in seen:
                    raise self.error(
                        (*at, what), f"{value!r} is already the {what} of workflows[{seen[value]}]"
                    )
                seen[value] = index
            workflows.append(
                WorkflowConfig(
                    name=name,
                    binding=binding,
                    class_name=self.identifier(entry, (*at, "class_name")),
                    main=self.main(entry, (*at, "main")),
                )
            )
        return tuple(workflows)

    def variables(
        self, document: Mapping[str, object], workflows: tuple[WorkflowConfig, ...]
    ) -> dict[str, JsonValue]:
        table = self.table(document, ("vars",))
        bindings = {workflow.binding: index for index, workflow in enumerate(workflows)}
        variables: dict[str, JsonValue] = {}
        for name, value in table.items():
            key: _KeyPath = ("vars", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                raise self.error(key, f"{name!r} is not a Python identifier (read as env.{name})")
            if name in bindings:
                raise self.error(key, f"clashes with the binding of workflows[{bindings[name]}]")
            variables[name] = self.json_value(value, key)
        return variables

    def json_value(self, value: object, key: _KeyPath) -> JsonValue:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(key, f"{value} is not a JSON number")
            return value
        if isinstance(value, list):
            return [self.json_value(item, (*key, index)) for index, item in enumerate(value)]
        if isinstance(value, dict):
            return {name: self.json_value(item, (*key, name)) for name, item in value.items()}
        raise self.error(key, f"{_toml_type(value)} is not a JSON value; write it as a string")

    def settings(self, document: Mapping[str, object]) -> Settings:
        base = Settings()
        defaults = self.table(document, ("defaults",))
        self.check_keys(defaults, _DEFAULTS_KEYS, ("defaults",))
        retries = self.table(defaults, ("defaults", "retries"))
        self.check_keys(retries, _RETRIES_KEYS, ("defaults", "retries"))
        policy = self.converted(
            ("defaults",), lambda: RetryPolicy.from_value(retries, base.retries)
        )
        timeout = self.duration(defaults, ("defaults", "timeout"), base.timeout)
        if timeout <= timedelta(0):
            raise self.error(("defaults", "timeout"), "must be longer than zero")
        limits = self.table(document, ("limits",))
        self.check_keys(limits, _LIMITS_KEYS, ("limits",))
        max_bytes = limits.get("max_step_result_bytes", base.max_value_bytes)
        if (
            isinstance(max_bytes, bool)
            or not isinstance(max_bytes, int)
            or not 1 <= max_bytes <= _MAX_VALUE_BYTES_LIMIT
        ):
            raise self.error(
                ("limits", "max_step_result_bytes"),
                f"expected a whole number of bytes from 1 to {_MAX_VALUE_BYTES_LIMIT}, "
                f"got {max_bytes!r}",
            )
        return Settings(
            retries=policy,
            timeout=timeout,
            max_inline_wait=self.duration(
                defaults, ("defaults", "max_inline_wait"), base.max_inline_wait
            ),
            max_value_bytes=max_bytes,
        )

    def duration(self, table: Mapping[str, object], key: _KeyPath, default: timedelta) -> timedelta:
        if key[-1] not in table:
            return default
        return self.converted(key[:-1], lambda: parse_duration(table[str(key[-1])], str(key[-1])))

    def converted(self, at: _KeyPath, convert: Callable[[], _T]) -> _T:
        """``convert()``, its :class:`WorkflowInputError` (``what`` is a dotted key under ``at``)
        turned into a :class:`ConfigError`."""
        try:
            return convert()
        except WorkflowInputError as error:
            raise self.error((*at, *error.what.split(".")), error.reason) from None


# --- the store and the client -----------------------------------------------------------


def default_store_dir(project: Project) -> Path:
    """The project's store under the user's data directory (``platformdirs``).

    One folder per project file location, so two checkouts never share a store.
    """
    import hashlib

    import platformdirs  # only here: a store that is given or configured needs neither

    folder = str(project.path.parent.resolve())
    digest = hashlib.sha256(folder.encode()).hexdigest()[:8]
    data = platformdirs.user_data_path("wfcli", appauthor=False)
    return data / "projects" / f"{project.name}-{digest}"


def resolve_store_dir(
    explicit: str | None, environ: Mapping[str, str], project: Project | None
) -> Path:
    """The store folder: ``--store`` > ``WF_STORE`` > ``[store] dir`` > the default.

    Raises :class:`ConfigError` without a project unless a flag or variable names one.
    """
    for value in (explicit, environ.get(_STORE_ENV)):
        if value:
            return _absolute(value, Path.cwd())
    if project is None:
        raise ConfigError(
            CONFIG_FILENAME, f"no project to take the store from; pass --store or set {_STORE_ENV}"
        )
    return project.store_dir or default_store_dir(project)


def open_client(
    project: Project | None, store_dir: Path, *, clock: Clock | None = None, load: bool = True
) -> WorkflowClient:
    """A client on the store at ``store_dir`` with the project's workflows and settings.

    ``load=False`` skips importing user code (commands that only read the store).
    """
    if project is None:
        return WorkflowClient(FileStore(store_dir), {}, clock=clock)
    return WorkflowClient(
        FileStore(store_dir, durable=project.durable),
        project.load_workflows() if load else {},
        bindings={workflow.binding: workflow.name for workflow in project.workflows},
        variables=project.variables,
        clock=clock,
        settings=project.settings,
    )
