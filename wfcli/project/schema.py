"""``workflows.toml``'s schema: reading a parsed file key by key into a :class:`Project`.

The file is modelled on ``wrangler.toml`` (SPEC §4). Every mistake in it is one
:class:`ConfigError` naming the file, the dotted key (``workflows[1].class_name``,
arrays counted from 0) and, where the text shows it, the line. Loading a project
never imports user code; :meth:`Project.load_workflows` does, on demand.
"""

from __future__ import annotations

import difflib
import keyword
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from wfcli.core.durations import parse_duration
from wfcli.core.retry import RetryPolicy
from wfcli.core.settings import Settings
from wfcli.errors import ConfigError, WorkflowInputError
from wfcli.project.toml_lines import (
    KeyPath,
    LineScanner,
    parse_toml,
    render_key,
    syntax_error,
    toml_type,
)
from wfcli.store.files import DEFAULT_MAX_LINE_BYTES

if TYPE_CHECKING:
    from wfcli.core.admission import ConcurrencyLimit
    from wfcli.core.codec import JsonValue
    from wfcli.core.schedule import Schedule
    from wfcli.engine.workflow import WorkflowEntrypoint  # loaded with the workflows themselves

__all__ = [
    "CONFIG_FILENAME",
    "NO_MAIN",
    "Project",
    "WorkflowConfig",
    "absolute_path",
    "config_error",
    "load_project",
]

CONFIG_FILENAME = "workflows.toml"

_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_WORKFLOW_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A step result is journaled inside one record line, which must stay under the line cap.
_MAX_VALUE_BYTES_LIMIT = DEFAULT_MAX_LINE_BYTES // 2

_TOP_KEYS = ("defaults", "limits", "main", "name", "store", "vars", "workflows")
_MAX_VERSION = 100
_WORKFLOW_KEYS = (
    "binding",
    "class_name",
    "concurrency",
    "main",
    "name",
    "rate",
    "schedules",
    "sensitive_params",
    "timeout",
    "version",
)
_CONCURRENCY_KEYS = ("key", "limit")
_SCHEDULE_KEYS = ("catchup", "catchup_window", "cron", "overlap", "params", "timezone")
_STORE_KEYS = ("dir", "fsync", "url")
_STORE_SCHEMES = ("file", "postgres", "postgresql")
_DEFAULTS_KEYS = ("max_inline_wait", "retries", "timeout")
_RETRIES_KEYS = ("backoff", "delay", "limit")
_LIMITS_KEYS = ("max_step_result_bytes",)

_T = TypeVar("_T")
_C = TypeVar("_C", bound=str)
NO_MAIN = "missing: set main here or at the top level of the file"


def config_error(
    path: Path, key_lines: Mapping[KeyPath, int], key: KeyPath, reason: str
) -> ConfigError:
    """A :class:`ConfigError` about ``key``, on the line of the key or of its nearest table."""
    line = None
    for end in range(len(key), 0, -1):
        line = key_lines.get(key[:end])
        if line is not None:
            break
    return ConfigError(str(path), reason, key=render_key(key) or None, line=line)


# --- the project -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """One ``[[workflows]]`` entry: a workflow name bound to a class.

    ``version`` is recorded on each instance created (shown, never a gate);
    ``sensitive_params`` are the params keys every view shows as ``"[REDACTED]"``.
    ``schedules`` start instances from ``wf worker``; ``concurrency`` (with
    ``rate``) limits how many run at once across every worker.
    ``timeout`` gives each instance a deadline that long after its creation.
    """

    name: str
    binding: str
    class_name: str
    main: str | None
    version: str | None = None
    schedules: tuple[Schedule, ...] = ()
    concurrency: ConcurrencyLimit | None = None
    sensitive_params: tuple[str, ...] = ()
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Project:
    """A checked ``workflows.toml``.

    ``main`` and each workflow's ``main`` are a dotted module name or a path to a
    ``.py`` file relative to the file's folder. ``store_location`` is ``[store] url``,
    or ``[store] dir`` made absolute; ``durable`` is ``[store] fsync``; ``settings`` come from
    ``[defaults]`` and ``[limits]``.
    """

    path: Path
    name: str
    main: str | None
    variables: dict[str, JsonValue]
    workflows: tuple[WorkflowConfig, ...]
    store_location: str | None
    durable: bool
    settings: Settings
    _key_lines: Mapping[KeyPath, int] = field(default_factory=dict, repr=False, compare=False)
    _modules: dict[str, ModuleType] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def error(self, key: KeyPath, reason: str) -> ConfigError:
        """A :class:`ConfigError` about ``key``, on its line where the text shows it."""
        return config_error(self.path, self._key_lines, key, reason)

    def limits(self) -> dict[str, ConcurrencyLimit]:
        """Each limited workflow's :class:`ConcurrencyLimit`, by workflow name."""
        return {w.name: w.concurrency for w in self.workflows if w.concurrency is not None}

    def schedules(self) -> list[Schedule]:
        """Every workflow's schedules, their cron and timezone checked (this imports the
        ``cron`` extra, so only the commands that run schedules call it).

        Raises :class:`ConfigError` naming the schedule's key and line.
        """
        found: list[Schedule] = []
        for index, workflow in enumerate(self.workflows):
            for number, schedule in enumerate(workflow.schedules):
                try:
                    schedule.check()
                except WorkflowInputError as error:
                    at: KeyPath = ("workflows", index, "schedules", number)
                    raise self.error(at, error.reason) from None
                found.append(schedule)
        return found

    def load_workflows(self) -> dict[str, type[WorkflowEntrypoint]]:
        """Import the modules; ``{workflow name: class}`` (:mod:`wfcli.project.loader`)."""
        from wfcli.project.loader import load_workflows

        return load_workflows(self)


def absolute_path(value: str | Path, base: Path) -> Path:
    """``value`` with ``~`` expanded, made absolute against ``base`` and normalised."""
    return Path(os.path.abspath(base / Path(value).expanduser()))


def load_project(path: Path) -> Project:
    """Read and check a ``workflows.toml``; user code is not imported.

    Raises :class:`ConfigError` for unreadable files, TOML syntax errors, unknown
    keys, wrong types, missing keys, bad names and duplicate workflows or bindings.
    """
    path = absolute_path(path, Path.cwd())
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(str(path), f"cannot read the file: {error.strerror or error}") from None
    try:
        document = parse_toml(text)
    except ValueError as error:
        reason, line = syntax_error(error, text)
        raise ConfigError(str(path), f"invalid TOML: {reason}", line=line) from None
    return _ProjectReader(path, LineScanner(text).scan()).read(document)


class _ProjectReader:
    """Checks a parsed document key by key and builds the :class:`Project`."""

    def __init__(self, path: Path, key_lines: dict[KeyPath, int]) -> None:
        self.path = path
        self.key_lines = key_lines

    def error(self, key: KeyPath, reason: str) -> ConfigError:
        return config_error(self.path, self.key_lines, key, reason)

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
                    raise self.error(("workflows", index, "main"), NO_MAIN)
        variables = self.variables(document, workflows)
        store = self.table(document, ("store",))
        self.check_keys(store, _STORE_KEYS, ("store",))
        store_location = self.store_location(store)
        durable = store.get("fsync", True)
        if not isinstance(durable, bool):
            raise self.error(
                ("store", "fsync"), f"expected true or false, got {toml_type(durable)}"
            )
        return Project(
            path=self.path,
            name=name,
            main=main,
            variables=variables,
            workflows=workflows,
            store_location=store_location,
            durable=durable,
            settings=self.settings(document),
            _key_lines=self.key_lines,
        )

    def store_location(self, store: Mapping[str, object]) -> str | None:
        folder = self.text(store, ("store", "dir"))
        url = self.text(store, ("store", "url"))
        if folder is not None and url is not None:
            raise self.error(("store", "url"), "give url or dir, not both")
        if folder is not None:
            return str(absolute_path(folder, self.path.parent))
        if url is None:
            return None
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in _STORE_SCHEMES:
            raise self.error(
                ("store", "url"), "expected a postgresql:// or file:// URL (or set dir instead)"
            )
        return url

    # generic checks --------------------------------------------------------------------

    def check_keys(
        self, table: Mapping[str, object], allowed: tuple[str, ...], at: KeyPath
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

    def table(self, parent: Mapping[str, object], key: KeyPath) -> dict[str, Any]:
        value = parent.get(str(key[-1]), {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {toml_type(value)}")
        return value

    def text(self, table: Mapping[str, object], key: KeyPath) -> str | None:
        """The string at ``key``, ``None`` when absent; never empty."""
        value = table.get(str(key[-1]))
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {toml_type(value)}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def required_text(self, table: Mapping[str, object], key: KeyPath) -> str:
        value = self.text(table, key)
        if value is None:
            raise self.error(key, "missing (it is required)")
        return value

    def identifier(self, table: Mapping[str, object], key: KeyPath) -> str:
        value = self.required_text(table, key)
        if not value.isidentifier() or keyword.iskeyword(value):
            raise self.error(key, f"{value!r} is not a Python identifier")
        return value

    def main(self, table: Mapping[str, object], key: KeyPath) -> str | None:
        value = self.text(table, key)
        if value is None or value.endswith(".py"):
            return value
        if not all(part.isidentifier() for part in value.split(".")):
            raise self.error(
                key, f"{value!r} is neither a dotted module name nor a path to a .py file"
            )
        return value

    def version(self, table: Mapping[str, object], key: KeyPath) -> str | None:
        value = self.text(table, key)
        if value is not None and (len(value) > _MAX_VERSION or not value.isprintable()):
            raise self.error(
                key, f"must be at most {_MAX_VERSION} printable characters, got {value!r}"
            )
        return value

    def key_names(self, table: Mapping[str, object], key: KeyPath) -> tuple[str, ...]:
        """An array of non-empty strings at ``key`` (none when absent)."""
        value = table.get(str(key[-1]), [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"expected an array of key names, got {value!r}")
        return tuple(value)

    # sections --------------------------------------------------------------------------

    def workflows(self, document: Mapping[str, object]) -> tuple[WorkflowConfig, ...]:
        entries = document.get("workflows")
        if entries is None:
            raise self.error(("workflows",), "missing: add at least one [[workflows]] entry")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.error(
                ("workflows",),
                f"expected an array of tables ([[workflows]]), got {toml_type(entries)}",
            )
        workflows: list[WorkflowConfig] = []
        names: dict[str, int] = {}
        bindings: dict[str, int] = {}
        for index, entry in enumerate(entries):
            at: KeyPath = ("workflows", index)
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
                    version=self.version(entry, (*at, "version")),
                    schedules=self.schedules(entry, at, name),
                    concurrency=self.concurrency(entry, at),
                    sensitive_params=self.key_names(entry, (*at, "sensitive_params")),
                    timeout=self.workflow_timeout(entry, (*at, "timeout")),
                )
            )
        return tuple(workflows)

    def schedules(
        self, entry: Mapping[str, object], at: KeyPath, workflow: str
    ) -> tuple[Schedule, ...]:
        """``schedules = ["0 2 * * *", {cron = "...", timezone = "...", ...}]``."""
        entries = entry.get("schedules", [])
        if not isinstance(entries, list):
            raise self.error((*at, "schedules"), f"expected an array, got {toml_type(entries)}")
        if not entries:
            return ()
        # Only a project with schedules loads them (and their JSON and time handling).
        from wfcli.core.schedule import (
            CATCHUP_POLICIES,
            DEFAULT_CATCHUP_WINDOW,
            OVERLAP_POLICIES,
            Schedule,
        )

        found: list[Schedule] = []
        for number, written in enumerate(entries):
            key: KeyPath = (*at, "schedules", number)
            name = workflow if len(entries) == 1 else f"{workflow}#{number + 1}"
            item = {"cron": written} if isinstance(written, str) else written
            if not isinstance(item, dict):
                raise self.error(
                    key, f"expected a cron string or an inline table, got {toml_type(item)}"
                )
            self.check_keys(item, _SCHEDULE_KEYS, key)
            window = self.duration(item, (*key, "catchup_window"), DEFAULT_CATCHUP_WINDOW)
            if window <= timedelta(0):
                raise self.error((*key, "catchup_window"), "must be longer than zero")
            found.append(
                Schedule(
                    workflow=workflow,
                    name=name,
                    cron=self.required_text(item, (*key, "cron")),
                    timezone=self.text(item, (*key, "timezone")) or "UTC",
                    params=self.json_value(item.get("params"), (*key, "params")),
                    catchup=self.choice(item, (*key, "catchup"), CATCHUP_POLICIES),
                    catchup_window=window,
                    overlap=self.choice(item, (*key, "overlap"), OVERLAP_POLICIES),
                )
            )
        crons = [(s.cron, s.timezone, repr(s.params)) for s in found]
        for number, schedule in enumerate(crons):
            if schedule in crons[:number]:
                raise self.error(
                    (*at, "schedules", number),
                    f"the same schedule as schedules[{crons.index(schedule)}]",
                )
        return tuple(found)

    def choice(self, table: Mapping[str, object], key: KeyPath, allowed: tuple[_C, ...]) -> _C:
        """The string at ``key``, one of ``allowed``; the first when absent."""
        value = self.text(table, key)
        if value is None:
            return allowed[0]
        for option in allowed:
            if value == option:
                return option
        raise self.error(key, f"expected one of {', '.join(allowed)}, got {value!r}")

    def concurrency(self, entry: Mapping[str, object], at: KeyPath) -> ConcurrencyLimit | None:
        """``concurrency = { limit = N, key = "PARAM" }`` and ``rate = "N/PERIOD"``."""
        table = self.table(entry, (*at, "concurrency"))
        self.check_keys(table, _CONCURRENCY_KEYS, (*at, "concurrency"))
        rate_text = self.text(entry, (*at, "rate"))
        if not table and rate_text is None:
            return None
        from wfcli.core.admission import ConcurrencyLimit, Rate  # only a limited workflow's

        limit = table.get("limit")
        if table and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise self.error(
                (*at, "concurrency", "limit"),
                f"expected a whole number of instances, at least 1, got {limit!r}",
            )
        key = self.text(table, (*at, "concurrency", "key"))
        rate = None
        if rate_text is not None:
            rate = self.converted(at, lambda: Rate.parse(rate_text))
        return ConcurrencyLimit(limit=limit, key=key, rate=rate)

    def variables(
        self, document: Mapping[str, object], workflows: tuple[WorkflowConfig, ...]
    ) -> dict[str, JsonValue]:
        table = self.table(document, ("vars",))
        bindings = {workflow.binding: index for index, workflow in enumerate(workflows)}
        variables: dict[str, JsonValue] = {}
        for name, value in table.items():
            key: KeyPath = ("vars", name)
            if not name.isidentifier() or keyword.iskeyword(name):
                raise self.error(key, f"{name!r} is not a Python identifier (read as env.{name})")
            if name in bindings:
                raise self.error(key, f"clashes with the binding of workflows[{bindings[name]}]")
            variables[name] = self.json_value(value, key)
        return variables

    def json_value(self, value: object, key: KeyPath) -> JsonValue:
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
        raise self.error(key, f"{toml_type(value)} is not a JSON value; write it as a string")

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

    def workflow_timeout(self, table: Mapping[str, object], key: KeyPath) -> timedelta | None:
        if key[-1] not in table:
            return None
        timeout = self.converted(
            key[:-1], lambda: parse_duration(table[str(key[-1])], str(key[-1]))
        )
        if timeout <= timedelta(0):
            raise self.error(key, "must be longer than zero")
        return timeout

    def duration(self, table: Mapping[str, object], key: KeyPath, default: timedelta) -> timedelta:
        if key[-1] not in table:
            return default
        return self.converted(key[:-1], lambda: parse_duration(table[str(key[-1])], str(key[-1])))

    def converted(self, at: KeyPath, convert: Callable[[], _T]) -> _T:
        """``convert()``, its :class:`WorkflowInputError` (``what`` is a dotted key under ``at``)
        turned into a :class:`ConfigError`."""
        try:
            return convert()
        except WorkflowInputError as error:
            raise self.error((*at, *error.what.split(".")), error.reason) from None
