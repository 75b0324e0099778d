"""Finding ``workflows.toml``: ``--config`` > ``WF_CONFIG`` > the nearest one from the
working directory up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wfcli.errors import ConfigError
from wfcli.project.schema import CONFIG_FILENAME, absolute_path

__all__ = ["CONFIG_ENV", "find_config", "resolve_config_path"]

CONFIG_ENV = "WF_CONFIG"


def find_config(start: Path) -> Path | None:
    """The nearest ``workflows.toml`` in ``start`` or a folder above it, or ``None``."""
    folder = absolute_path(start, Path.cwd())
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
    for value, source in ((explicit, "--config"), (environ.get(CONFIG_ENV), CONFIG_ENV)):
        if value:
            path = absolute_path(value, cwd)
            if path.is_dir():
                path /= CONFIG_FILENAME
            if not path.is_file():
                raise ConfigError(str(path), f"file not found (given by {source})")
            return path
    found = find_config(cwd)
    if found is None:
        raise ConfigError(
            CONFIG_FILENAME,
            f"not found in {cwd} or any folder above it; pass --config or set {CONFIG_ENV}",
        )
    return found
