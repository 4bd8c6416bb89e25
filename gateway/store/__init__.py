"""The store-and-forward buffer: SQLite in WAL mode (see ``gateway.store.outbox``).

Modules: ``db`` opens any SQLite file of the gateway (pragmas, checks, versioned schema,
quarantine); ``schema`` is the store file's schema; ``ledger`` runs the transactions on the
store thread and mirrors them in memory; ``cursors`` keeps each sink's handed and confirmed
cursors; ``outbox`` is the ``Store`` the rest of the gateway uses.
"""

from gateway.store.model import Row, StoreFullError, StoreStats
from gateway.store.outbox import Store

__all__ = ["Row", "Store", "StoreFullError", "StoreStats"]
