"""Following one instance's journal as it grows: each refresh reads only the new lines."""

from __future__ import annotations

from wfcli.client.views import InstanceStatus, snapshot
from wfcli.core.codec import Record
from wfcli.core.state import InstanceState, fold
from wfcli.store.contract import JournalStore

__all__ = ["JournalFollower"]


class JournalFollower:
    """An instance's journal as read so far, and its state folded from it.

    Made by :meth:`WorkflowClient.follow`; live views (``wf status --watch``, ``wf
    timeline --follow``) call :meth:`refresh` or :meth:`status` as often as they
    redraw, and each reads only what was appended since (the store's
    :meth:`~wfcli.store.contract.JournalStore.read_after`).
    """

    def __init__(self, store: JournalStore, instance_id: str) -> None:
        self.store = store
        self.instance_id = instance_id
        self.records: list[Record] = []
        """Every record read so far, oldest first."""
        self._state: InstanceState | None = None

    def refresh(self) -> list[Record]:
        """Read the records appended since the last refresh (at the first, all of them),
        fold them into :attr:`state`, and return them."""
        new = self.store.read_after(self.instance_id, len(self.records))
        if self._state is None:
            self._state = fold(new)
        else:
            for record in new:
                self._state.apply(record)
        self.records.extend(new)
        return new

    @property
    def state(self) -> InstanceState:
        """The state of the records read so far (one :meth:`refresh` first)."""
        if self._state is None:
            self.refresh()
        assert self._state is not None
        return self._state

    def status(self) -> InstanceStatus:
        """:meth:`refresh`, then the status as :meth:`WorkflowClient.status` gives it.

        The snapshot shares the follower's state, which the next refresh moves on.
        """
        self.refresh()
        return snapshot(self.store, self.state)
