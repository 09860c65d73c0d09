"""The PostgreSQL backend: one store shared by several PBXs.

The same jobs as the SQLite `Store` (hot path, facts, outcomes, Bloctel
snapshots, evidence reads, retention, audit), written once in
`store.database`'s portable SQL, over a `PostgresDatabase`.
"""

from __future__ import annotations

from sentinelle.store.audit import AuditReads
from sentinelle.store.backend import Backend
from sentinelle.store.batch import BatchReads
from sentinelle.store.bloctel import Snapshots
from sentinelle.store.evidence import EvidenceReads
from sentinelle.store.facts import Facts
from sentinelle.store.hot import HotPath
from sentinelle.store.outcomes import Outcomes
from sentinelle.store.pg_connection import PostgresDatabase
from sentinelle.store.retention import Retention


class PgStore(HotPath, Facts, Outcomes, Snapshots, EvidenceReads, Retention, AuditReads,
              BatchReads, PostgresDatabase):
    """A pool of connections to the sentinelle PostgreSQL store; thread-safe.

    `PgStore(url, create=..., busy_timeout_ms=..., password_file=...,
    pool_size=...)`: see `PostgresDatabase`."""


def _implements_backend(store: PgStore) -> Backend:
    """Never called: mypy checks here that `PgStore` satisfies the seam."""
    return store
