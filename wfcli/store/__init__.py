"""Journal stores behind one contract (:mod:`wfcli.store.contract`): in memory, in a
folder of files, and chosen by location with :func:`open_store`."""

from wfcli.store.contract import JournalStore, Lease, LockOwner
from wfcli.store.files import FileStore
from wfcli.store.memory import MemoryStore

__all__ = ["FileStore", "JournalStore", "Lease", "LockOwner", "MemoryStore"]
