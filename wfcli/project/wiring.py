"""From a project to a working client: where its store is, and the client over it.

The store is ``--store`` > ``WF_STORE`` > ``[store] url``/``dir`` > a per-project
folder under the user's data directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wfcli.client.client import WorkflowClient
from wfcli.core.clock import Clock
from wfcli.errors import ConfigError
from wfcli.project.schema import CONFIG_FILENAME, Project, absolute_path
from wfcli.store import open_store

__all__ = ["STORE_ENV", "StoreChoice", "default_store_dir", "open_client", "resolve_store"]

STORE_ENV = "WF_STORE"


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


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """Where the store is, and whether it was ``given`` for this command (``--store``,
    ``WF_STORE``) rather than taken from the project (``[store]`` or the default
    folder, which the project's first run makes)."""

    location: str
    given: bool


def resolve_store(
    explicit: str | None, environ: Mapping[str, str], project: Project | None
) -> StoreChoice:
    """The store: ``--store`` > ``WF_STORE`` > ``[store] url``/``dir`` > the default.

    A relative folder is taken from the working directory. Raises
    :class:`ConfigError` without a project unless a flag or variable names one.
    """
    for value in (explicit, environ.get(STORE_ENV)):
        if value:
            return StoreChoice(
                value if "://" in value else str(absolute_path(value, Path.cwd())), True
            )
    if project is None:
        raise ConfigError(
            CONFIG_FILENAME, f"no project to take the store from; pass --store or set {STORE_ENV}"
        )
    return StoreChoice(project.store_location or str(default_store_dir(project)), False)


def open_client(
    project: Project | None,
    location: str | os.PathLike[str],
    *,
    clock: Clock | None = None,
    load: bool = True,
    must_exist: bool = False,
) -> WorkflowClient:
    """A client on the store at ``location`` (:func:`~wfcli.store.open_store`) with the
    project's workflows and settings.

    ``load=False`` skips importing user code (commands that only read the store);
    ``must_exist`` refuses a store folder that does not exist.
    """
    if project is None:
        return WorkflowClient(open_store(location, must_exist=must_exist), {}, clock=clock)
    return WorkflowClient(
        open_store(location, durable=project.durable, must_exist=must_exist),
        project.load_workflows() if load else {},
        bindings={workflow.binding: workflow.name for workflow in project.workflows},
        variables=project.variables,
        clock=clock,
        settings=project.settings,
        versions={w.name: w.version for w in project.workflows if w.version is not None},
        limits=project.limits(),
        sensitive_params={w.name: w.sensitive_params for w in project.workflows},
        timeouts={w.name: w.timeout for w in project.workflows if w.timeout is not None},
    )
