"""The store: every fact the rules need and every decision taken, durable.

All SQL lives in this package. Callers open a store with `open_store`
(SQLite `Store`, or `PgStore` when `store.url` names PostgreSQL) and use it
through the methods of the `Backend` protocol and the plain types exported
here; no other layer opens a database connection.
"""

from sentinelle.store.backend import Backend
from sentinelle.store.backends import AnyStore, is_postgres, open_store
from sentinelle.store.bloctel import BLOCTEL_BATCH
from sentinelle.store.checkpoint import Checkpointer
from sentinelle.store.errors import SnapshotShrinks, StoreBusy, StoreError
from sentinelle.store.hot import HISTORY_HORIZON
from sentinelle.store.retention import PURGE_TABLES
from sentinelle.store.schema import SCHEMA_VERSION
from sentinelle.store.sqlite import Store
from sentinelle.store.values import ConsentProof, Snapshot, e164_int, from_ts, ts

__all__ = [
    "BLOCTEL_BATCH",
    "HISTORY_HORIZON",
    "PURGE_TABLES",
    "SCHEMA_VERSION",
    "AnyStore",
    "Backend",
    "Checkpointer",
    "ConsentProof",
    "Snapshot",
    "SnapshotShrinks",
    "Store",
    "StoreBusy",
    "StoreError",
    "e164_int",
    "from_ts",
    "is_postgres",
    "open_store",
    "ts",
]
