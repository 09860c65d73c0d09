"""The tables, the schema version, and how an older store is brought up to date.

A store file outlives the sentinelle that created it, and the service may
start on a store written by an older version: opening it must upgrade it
in place, in one transaction, without rewriting any row. So the tables are
declared at their current shape; `upgrade` creates what is missing and adds
the columns later versions introduced (v2: attempts.disposition, v3:
decisions.slot_used), then runs the data steps of the versions the file
has not seen yet.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sentinelle.store.errors import StoreError
from sentinelle.store.values import SLOT_NOTE

# v2: attempts.disposition (ARI listener); v3: decisions.slot_used (report)
SCHEMA_VERSION = 3

TABLES: dict[str, dict[str, Any]] = {
    "meta": {"columns": {"key": str, "value": str}, "pk": "key"},
    "bloctel_snapshots": {
        "columns": {"id": int, "professional": str, "snapshot_date": str, "kind": str,
                    "table_name": str, "count": int, "state": str, "imported_at": str,
                    "source": str},
        "pk": "id",
        "indexes": [["professional", "state"]],
    },
    "optouts": {
        "columns": {"professional": str, "e164": str, "added_at": str, "source": str},
        "pk": ("professional", "e164"),
    },
    "consents": {
        "columns": {"id": int, "professional": str, "e164": str, "given_at": str, "source": str,
                    "channel": str, "wording": str, "evidence_ref": str, "slot_from": str,
                    "slot_until": str, "revoked_at": str, "recorded_at": str},
        "pk": "id",
        "indexes": [["professional", "e164"], ["e164"]],
    },
    "contracts": {
        "columns": {"professional": str, "e164": str, "product": str, "added_at": str},
        "pk": ("professional", "e164"),
    },
    "departments": {"columns": {"e164": str, "department": str}, "pk": "e164"},
    "refusals": {
        "columns": {"id": int, "professional": str, "campaign": str, "e164": str, "at": str,
                    "source": str, "attempt_id": int, "recorded_at": str},
        "pk": "id",
        "indexes": [["professional", "e164", "at"], ["e164"]],
    },
    "attempts": {
        "columns": {"id": int, "professional": str, "campaign": str, "e164": str, "at": str,
                    "decision_id": int, "outcome": str, "answered_at": str, "ended_at": str,
                    "cause": int, "cause_txt": str, "disposition": str},
        "pk": "id",
        "indexes": [["professional", "e164", "at"], ["e164"], ["at"]],
    },
    "decisions": {
        "columns": {"id": int, "at": str, "source": str, "campaign": str, "professional": str,
                    "dialled": str, "e164": str, "caller_id": str, "verdict": str, "rules": str,
                    "reasons": str, "regime": str, "retry_at": str, "attempt_id": int,
                    "inputs": str, "slot_used": int},
        "not_null_default": {"slot_used": 0},
        "pk": "id",
        "indexes": [["e164"], ["at"]],
    },
}


def stored_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; a newer one than this code knows is refused
    (its meaning, and what writing to it would break, are unknown)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(f"store schema v{version} is newer than this sentinelle (v{SCHEMA_VERSION})")
    return version


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION. The caller holds a write transaction;
    the version is read again under it, so two processes opening an old store
    at once upgrade it once."""
    version = stored_version(conn)
    if version == SCHEMA_VERSION:
        return
    # Imported only to create or upgrade a store: sqlite_utils pulls numpy
    # when it is installed (~100 ms), which a per-call AGI on an up-to-date
    # store must not pay.
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    for name, spec in TABLES.items():
        table = db.table(name)
        defaults = spec.get("not_null_default", {})
        table.create(spec["columns"], pk=spec["pk"], not_null=set(defaults), defaults=defaults,
                     if_not_exists=True)
        # Columns added by later versions: an older store gains them in
        # place, nothing is rewritten.
        for col, kind in spec["columns"].items():
            if col not in table.columns_dict:
                table.add_column(col, kind, not_null_default=defaults.get(col))
        for cols in spec.get("indexes", []):
            table.create_index(cols, if_not_exists=True)
    if version < 3:
        # Decisions logged before v3 said they used an R-22 slot only in the
        # wording of a note in `inputs`: read it this once, so the report
        # counts a field from now on. The append-only trigger is lifted for
        # this one UPDATE inside the migration's transaction (re-created
        # below), so no other connection ever sees the log unguarded.
        conn.execute("DROP TRIGGER IF EXISTS decisions_append_only")
        conn.execute("UPDATE decisions SET slot_used = 1 WHERE inputs LIKE ?",
                     (f"%{SLOT_NOTE}%",))
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS refusals_attempt "
                 "ON refusals(attempt_id) WHERE attempt_id IS NOT NULL")
    # The decision log is evidence: rows are appended, never edited.
    conn.execute(
        "CREATE TRIGGER IF NOT EXISTS decisions_append_only BEFORE UPDATE ON decisions "
        "BEGIN SELECT RAISE(ABORT, 'decision log is append-only'); END"
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
