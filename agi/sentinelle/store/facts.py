"""The facts admins enter (CLI, imports) or the ARI listener learns:
refusals, consents, contracts, opposition list, departments.

Each write is one short transaction, so a live check never waits long for
the lock, and a bulk import is all or nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sentinelle.store.connection import SqliteDatabase
from sentinelle.store.values import ConsentProof, ts
from sentinelle.store.values import utc_now as _now


class Facts(SqliteDatabase):
    def add_refusal(self, professional: str, campaign: str, e164: str, at: datetime,
                    source: str, attempt_id: int | None = None) -> bool:
        """R-31. Idempotent per attempt: a refusal seen by DTMF and by agent
        disposition for the same call is one refusal. Returns True if new.
        Consents given before it are revoked (R-31 under fr-2026)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO refusals (professional, campaign, e164, at, source,"
                " attempt_id, recorded_at) VALUES (?,?,?,?,?,?,?)",
                (professional, campaign, e164, ts(at), source, attempt_id, ts(_now())))
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE consents SET revoked_at=? WHERE professional=? AND e164=?"
                " AND given_at<=? AND revoked_at IS NULL",
                (ts(at), professional, e164, ts(at)))
            return True

    def add_consent(self, professional: str, e164: str, proof: ConsentProof) -> int:
        with self.transaction() as conn:
            return _insert_consent(conn, professional, e164, proof)

    def revoke_consent(self, professional: str, e164: str, at: datetime) -> int:
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE consents SET revoked_at=? WHERE professional=? AND e164=?"
                " AND revoked_at IS NULL", (ts(at), professional, e164)).rowcount

    def add_contract(self, professional: str, e164: str, product: str = "") -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO contracts VALUES (?,?,?,?)",
                         (professional, e164, product, ts(_now())))

    def set_optout(self, professional: str, e164: str, present: bool, source: str = "cli") -> bool:
        """R-12. Returns whether anything changed."""
        with self.transaction() as conn:
            if present:
                return conn.execute("INSERT OR IGNORE INTO optouts VALUES (?,?,?,?)",
                                    (professional, e164, ts(_now()), source)).rowcount > 0
            return conn.execute("DELETE FROM optouts WHERE professional=? AND e164=?",
                                (professional, e164)).rowcount > 0

    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Consents, contracts or departments from a validated import: one
        transaction, so a failure leaves nothing half-imported."""
        count = 0
        with self.transaction() as conn:
            for row in rows:
                if table == "consents":
                    _insert_consent(conn, row["professional"], row["e164"], row["proof"])
                elif table == "contracts":
                    conn.execute("INSERT OR REPLACE INTO contracts VALUES (?,?,?,?)",
                                 (row["professional"], row["e164"], row.get("product", ""),
                                  ts(_now())))
                elif table == "departments":
                    conn.execute("INSERT OR REPLACE INTO departments VALUES (?,?)",
                                 (row["e164"], row["department"]))
                else:
                    raise ValueError(f"unknown import table {table!r}")
                count += 1
        return count


def _insert_consent(conn: sqlite3.Connection, professional: str, e164: str,
                    p: ConsentProof) -> int:
    cur = conn.execute(
        "INSERT INTO consents (professional, e164, given_at, source, channel, wording,"
        " evidence_ref, slot_from, slot_until, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (professional, e164, ts(p.given_at), p.source, p.channel, p.wording, p.evidence_ref,
         ts(p.slot_from) if p.slot_from else None,
         ts(p.slot_until) if p.slot_until else None, ts(_now())))
    assert cur.lastrowid is not None
    return cur.lastrowid
