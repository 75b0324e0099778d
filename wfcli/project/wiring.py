"""From a project to a working client: where its store is, and the client over it.

The store is ``--store`` > ``WF_STORE`` > ``[store] url``/``dir`` > a per-project
folder under the user's data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wfcli.client.client import WorkflowClient
from wfcli.core.clock import Clock
from wfcli.errors import ConfigError
from wfcli.project.schema import CONFIG_FILENAME, Project, absolute_path
from wfcli.store.files import FileStore

__all__ = ["STORE_ENV", "default_store_dir", "open_client", "resolve_store_dir"]

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


def resolve_store_dir(
    explicit: str | None, environ: Mapping[str, str], project: Project | None
) -> Path:
    """The store folder: ``--store`` > ``WF_STORE`` > ``[store] dir`` > the default.

    Raises :class:`ConfigError` without a project unless a flag or variable names one.
    """
    for value in (explicit, environ.get(STORE_ENV)):
        if value:
            return absolute_path(value, Path.cwd())
    if project is None:
        raise ConfigError(
            CONFIG_FILENAME, f"no project to take the store from; pass --store or set {STORE_ENV}"
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
