"""The SQLite backend: one file in WAL mode, the default store.

`Store` is the one entry point callers construct; it is assembled from one
class per job (connection, hot path, facts, outcomes, Bloctel snapshots,
evidence reads, retention, audit reads), each in its own module over the same
connection, so each job's SQL can be read and changed on its own. What the
rest of sentinelle may call is the `Backend` protocol (store.backend), so
that a PostgreSQL backend can take this one's place for multi-PBX sites.
"""

from __future__ import annotations

from sentinelle.store.audit import AuditReads
from sentinelle.store.backend import Backend
from sentinelle.store.batch import BatchReads
from sentinelle.store.bloctel import Snapshots
from sentinelle.store.connection import SqliteDatabase
from sentinelle.store.evidence import EvidenceReads
from sentinelle.store.facts import Facts
from sentinelle.store.hot import HotPath
from sentinelle.store.outcomes import Outcomes
from sentinelle.store.retention import Retention


class Store(HotPath, Facts, Outcomes, Snapshots, EvidenceReads, Retention, AuditReads,
            BatchReads, SqliteDatabase):
    """A connection to the sentinelle store; not shared between threads.

    `Store(path, create=..., busy_timeout_ms=..., synchronous=...,
    wal_autocheckpoint=...)`: see `SqliteDatabase`."""


def _implements_backend(store: Store) -> Backend:
    """Never called: mypy checks here that `Store` satisfies the seam."""
    return store
