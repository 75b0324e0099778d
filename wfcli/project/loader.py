"""Importing the user's workflow code named by ``workflows.toml``.

A module that fails to import, whatever it raised (``SystemExit`` included), lacks
the class, or whose class is not a concrete :class:`WorkflowEntrypoint`, is one
:class:`ConfigError` naming the key it came from.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from wfcli.errors import ConfigError
from wfcli.project.schema import NO_MAIN, Project, absolute_path
from wfcli.project.toml_lines import KeyPath

if TYPE_CHECKING:
    from wfcli.engine.workflow import WorkflowEntrypoint

__all__ = ["load_workflows"]


def load_workflows(project: Project) -> dict[str, type[WorkflowEntrypoint]]:
    """Import the project's modules and return ``{workflow name: class}``.

    Each module is imported once per project.
    """
    from wfcli.engine.workflow import WorkflowEntrypoint

    classes: dict[str, type[WorkflowEntrypoint]] = {}
    for index, workflow in enumerate(project.workflows):
        main_key: KeyPath = ("workflows", index, "main") if workflow.main else ("main",)
        main = workflow.main or project.main
        if main is None:
            raise project.error(("workflows", index, "main"), NO_MAIN)
        module = _module(project, main, main_key)
        class_key: KeyPath = ("workflows", index, "class_name")
        found = getattr(module, workflow.class_name, None)
        if found is None:
            raise project.error(class_key, f"module {main!r} has no {workflow.class_name!r}")
        if not (isinstance(found, type) and issubclass(found, WorkflowEntrypoint)):
            raise project.error(
                class_key,
                f"{workflow.class_name!r} in {main!r} is not a subclass of "
                "wfcli.WorkflowEntrypoint",
            )
        if inspect.isabstract(found):
            raise project.error(
                class_key,
                f"{workflow.class_name!r} in {main!r} is abstract: it does not implement run",
            )
        classes[workflow.name] = found
    return classes


def _module(project: Project, main: str, key: KeyPath) -> ModuleType:
    module = project._modules.get(main)
    if module is not None:
        return module
    try:
        if main.endswith(".py"):
            module = _import_file(project, main, key)
        else:
            _put_first_on_path(project.path.parent)
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
        raise project.error(
            key, f"cannot import {main!r}: {type(error).__name__}: {detail}"
        ) from error
    project._modules[main] = module
    return module


def _import_file(project: Project, main: str, key: KeyPath) -> ModuleType:
    file = absolute_path(main, project.path.parent)
    if not file.is_file():
        raise project.error(key, f"file not found: {file}")
    import hashlib

    digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", file.stem)
    name = f"_wfcli_main_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise project.error(key, f"cannot load {file} as a Python module")
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
