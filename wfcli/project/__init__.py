"""The project: ``workflows.toml`` found, read and checked, its workflow code imported,
and the client wired to its store."""

from wfcli.project.discovery import CONFIG_ENV, find_config, resolve_config_path
from wfcli.project.schema import CONFIG_FILENAME, Project, WorkflowConfig, load_project
from wfcli.project.wiring import (
    STORE_ENV,
    StoreChoice,
    default_store_dir,
    open_client,
    resolve_store,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "STORE_ENV",
    "Project",
    "StoreChoice",
    "WorkflowConfig",
    "default_store_dir",
    "find_config",
    "load_project",
    "open_client",
    "resolve_config_path",
    "resolve_store",
]
