"""Execution settings shared by the executor, the client and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from wfcli.core.retry import RetryPolicy

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "Settings"]

DEFAULT_MAX_VALUE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Defaults for steps and waits; ``workflows.toml`` ``[defaults]``/``[limits]`` set them.

    ``max_inline_wait``: waits up to this long are slept through in the
    foreground; longer ones suspend the instance as ``waiting``.
    ``poll_interval``: how often an inline wait checks the inbox for pause,
    terminate and events.
    """

    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta = timedelta(minutes=10)
    max_inline_wait: timedelta = timedelta(seconds=30)
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    poll_interval: float = 0.2
