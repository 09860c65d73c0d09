"""The SQLite backend: one file in WAL mode, the default store.

`Store` is the one entry point callers construct; it is assembled from one
class per job (connection, hot path, facts, outcomes, Bloctel snapshots,
evidence reads, retention), each in its own module over the same
connection, so each job's SQL can be read and changed on its own.
"""

from __future__ import annotations

from sentinelle.store.bloctel import Snapshots
from sentinelle.store.evidence import EvidenceReads
from sentinelle.store.facts import Facts
from sentinelle.store.hot import HotPath
from sentinelle.store.outcomes import Outcomes
from sentinelle.store.retention import Retention


class Store(HotPath, Facts, Outcomes, Snapshots, EvidenceReads, Retention):
    """A connection to the sentinelle store; not shared between threads.

    `Store(path, create=..., busy_timeout_ms=..., synchronous=...,
    wal_autocheckpoint=...)`: see `SqliteDatabase`."""
