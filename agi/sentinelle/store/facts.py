"""The facts admins enter (CLI, imports) or the ARI listener learns:
refusals, consents, contracts, opposition list, departments.

Each write is one short transaction, so a live check never waits long for
the lock, and a bulk import is all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sentinelle.store.database import Database, Tx
from sentinelle.store.values import ConsentProof, ts
from sentinelle.store.values import utc_now as _now


class Facts(Database):
    def add_refusal(self, professional: str, campaign: str, e164: str, at: datetime,
                    source: str, attempt_id: int | None = None) -> bool:
        """R-31. Idempotent per attempt: a refusal seen by DTMF and by agent
        disposition for the same call is one refusal. Returns True if new.
        Consents given before it are revoked (R-31 under fr-2026)."""
        with self.transaction() as conn:
            self.lock_key(conn, professional, e164)  # ordered with the callee's checks
            cur = conn.execute(
                "INSERT INTO refusals (professional, campaign, e164, at, source,"
                " attempt_id, recorded_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
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
            conn.execute(_CONTRACT, (professional, e164, product, ts(_now())))

    def set_optout(self, professional: str, e164: str, present: bool, source: str = "cli") -> bool:
        """R-12. Returns whether anything changed."""
        with self.transaction() as conn:
            if present:
                return conn.execute(
                    "INSERT INTO optouts (professional, e164, added_at, source) VALUES (?,?,?,?)"
                    " ON CONFLICT DO NOTHING", (professional, e164, ts(_now()), source)
                ).rowcount > 0
            return conn.execute("DELETE FROM optouts WHERE professional=? AND e164=?",
                                (professional, e164)).rowcount > 0

    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Consents, contracts or departments from a validated import: one
        transaction, so a failure leaves nothing half-imported. Consents are
        plain appends, bulk-loaded (COPY on PostgreSQL)."""
        count = 0
        with self.transaction() as conn:
            if table == "consents":
                def consents() -> Iterable[tuple[Any, ...]]:
                    nonlocal count
                    now = ts(_now())
                    for row in rows:
                        count += 1
                        yield (row["professional"], row["e164"], *_proof(row["proof"]), now)

                self.copy_rows(conn, "consents", _CONSENT_COLUMNS, consents())
                return count
            for row in rows:
                if table == "contracts":
                    conn.execute(_CONTRACT, (row["professional"], row["e164"],
                                             row.get("product", ""), ts(_now())))
                elif table == "departments":
                    conn.execute(_DEPARTMENT, (row["e164"], row["department"]))
                else:
                    raise ValueError(f"unknown import table {table!r}")
                count += 1
        return count


# A contract or department entered again replaces the one on file.
_CONTRACT = ("INSERT INTO contracts (professional, e164, product, added_at) VALUES (?,?,?,?)"
             " ON CONFLICT (professional, e164) DO UPDATE SET product = excluded.product,"
             " added_at = excluded.added_at")
_DEPARTMENT = ("INSERT INTO departments (e164, department) VALUES (?,?)"
               " ON CONFLICT (e164) DO UPDATE SET department = excluded.department")


_CONSENT_COLUMNS = ("professional", "e164", "given_at", "source", "channel", "wording",
                    "evidence_ref", "slot_from", "slot_until", "recorded_at")


def _proof(p: ConsentProof) -> tuple[str | None, ...]:
    """The proof's columns, in _CONSENT_COLUMNS order (given_at .. slot_until)."""
    return (ts(p.given_at), p.source, p.channel, p.wording, p.evidence_ref,
            ts(p.slot_from) if p.slot_from else None, ts(p.slot_until) if p.slot_until else None)


def _insert_consent(conn: Tx, professional: str, e164: str,
                    p: ConsentProof) -> int:
    row = conn.execute(
        f"INSERT INTO consents ({', '.join(_CONSENT_COLUMNS)})"  # noqa: S608 - fixed names
        " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (professional, e164, *_proof(p), ts(_now()))).fetchone()
    return int(row[0])
