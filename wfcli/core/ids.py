"""Validation of instance IDs and step names, and random IDs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator

from wfcli.errors import WorkflowInputError

__all__ = [
    "MAX_STEP_NAME",
    "instance_id_of_file",
    "instance_ids_of_files",
    "new_instance_id",
    "validate_event_type",
    "validate_instance_id",
    "validate_step_name",
]

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # no UTF-8 form, so it cannot be journaled
MAX_STEP_NAME = 256


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if it matches ``^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$``.

    The pattern admits no ``/``, ``.`` or NUL, so an ID can never name a path
    outside the store. Raises :class:`WorkflowInputError` otherwise.
    """
    if not isinstance(instance_id, str) or _INSTANCE_ID.fullmatch(instance_id) is None:
        shown = repr(instance_id)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise WorkflowInputError(
            "instance ID",
            f"{shown} is not valid: use 1-100 ASCII letters, digits, '_' or '-', "
            "not starting with '-'",
        )
    return instance_id


def instance_id_of_file(file_name: str, suffix: str) -> str | None:
    """The instance ID a store file is named after (``ID`` + ``suffix``), or None
    when the name is not one (a stray file)."""
    if not file_name.endswith(suffix):
        return None
    stem = file_name[: len(file_name) - len(suffix)]
    return stem if _INSTANCE_ID.fullmatch(stem) else None


def instance_ids_of_files(file_names: Iterable[str], suffix: str) -> Iterator[str]:
    """The instance IDs that ``file_names`` are named after (:func:`instance_id_of_file`),
    the stray names left out."""
    for file_name in file_names:
        instance_id = instance_id_of_file(file_name, suffix)
        if instance_id is not None:
            yield instance_id


def validate_step_name(name: object) -> str:
    """Return ``name`` if it is 1..256 characters, none a control character or surrogate."""
    if not isinstance(name, str):
        raise WorkflowInputError("step name", f"expected text, got {type(name).__name__}")
    if not 1 <= len(name) <= MAX_STEP_NAME:
        raise WorkflowInputError(
            "step name", f"must be 1 to {MAX_STEP_NAME} characters, got {len(name)}"
        )
    if _CONTROL.search(name):
        raise WorkflowInputError("step name", f"{name!r} contains a control character")
    if _SURROGATE.search(name):
        raise WorkflowInputError("step name", f"{name!r} contains an unpaired surrogate")
    return name


def validate_event_type(event_type: object) -> str:
    """Return ``event_type`` if it follows the step-name rules; errors name the event type."""
    try:
        return validate_step_name(event_type)
    except WorkflowInputError as error:
        raise WorkflowInputError("event type", error.reason) from None


def new_instance_id() -> str:
    """A random instance ID (a UUID4, which matches the ID pattern)."""
    return str(uuid.uuid4())
