"""The store: every fact the rules need and every decision taken, durable.

All SQL lives in this package. Callers use the `Store` handle and the plain
types exported here; no other layer opens a database connection.
"""

from sentinelle.store.sqlite import (
    BLOCTEL_BATCH,
    HISTORY_HORIZON,
    Checkpointer,
    ConsentProof,
    Snapshot,
    SnapshotShrinks,
    Store,
    StoreBusy,
    StoreError,
    e164_int,
    from_ts,
    ts,
)

__all__ = [
    "BLOCTEL_BATCH",
    "HISTORY_HORIZON",
    "Checkpointer",
    "ConsentProof",
    "Snapshot",
    "SnapshotShrinks",
    "Store",
    "StoreBusy",
    "StoreError",
    "e164_int",
    "from_ts",
    "ts",
]
