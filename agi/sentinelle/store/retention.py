"""Deleting what the store must no longer keep: `sentinelle purge` (rows
past retention) and `sentinelle forget` (an erasure request).

Finding expired rows, the slow part, runs in read transactions; deleting
runs in short write transactions that re-check each row, so a live check
never waits long for the lock. What is kept, and why, is in
`evidence.retention`'s docstring and README.md ("Evidence").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sentinelle.store.database import Database
from sentinelle.store.values import ts

# table -> when a row is past retention. Named parameters: cutoff (now -
# retention), consent_cutoff (cutoff - consent_max_age: the consent could
# not justify any call after cutoff), erased_attempts / erased_refusals
# (minimal rows kept by `forget` go once no longer need them).
# Never purged by age: optouts (R-12 holds until an admin removes it),
# contracts and departments (states, not events), the current snapshots.
PURGE_WHERE = (
    ("decisions", "at < :cutoff"),
    ("attempts", "at < :cutoff OR (outcome = 'erased' AND at < :erased_attempts)"),
    ("refusals", "at < :cutoff OR (source = 'erased' AND at < :erased_refusals)"),
    ("consents", "(revoked_at IS NOT NULL AND revoked_at < :cutoff)"
                 " OR given_at < :consent_cutoff"),
    ("bloctel_snapshots", "state IN ('replaced', 'aborted') AND imported_at < :cutoff"),
)
PURGE_TABLES = tuple(table for table, _ in PURGE_WHERE)
_BOUNDS = ("cutoff", "consent_cutoff", "erased_attempts", "erased_refusals")


def _where(table: str) -> str:
    return dict(PURGE_WHERE)[table]


def _params(bounds: dict[str, datetime]) -> dict[str, str]:
    return {k: ts(bounds[k]) for k in _BOUNDS}


class Retention(Database):
    PURGE_WHERE = PURGE_WHERE

    def count_expired(self, table: str, bounds: dict[str, datetime]) -> int:
        """How many rows `purge` would delete (`--dry-run`)."""
        with self.transaction(immediate=False) as conn:
            n: int = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {_where(table)}",  # noqa: S608
                _params(bounds)).fetchone()[0]
            return n

    def expired_rowids(self, table: str, bounds: dict[str, datetime], after: int,
                       limit: int) -> list[int]:
        """The next `limit` expired row ids after `after` (every purged table
        has an integer `id` key; SQLite's is the rowid itself). A read
        transaction: finding the rows, the slow part, never holds the write lock."""
        with self.transaction(immediate=False) as conn:
            return [r[0] for r in conn.execute(
                f"SELECT id FROM {table} WHERE id > :after"  # noqa: S608 - fixed names
                f" AND ({_where(table)}) ORDER BY id LIMIT :limit",
                {**_params(bounds), "after": after, "limit": limit})]

    def delete_expired(self, table: str, bounds: dict[str, datetime], rowids: list[int]) -> int:
        """Delete these rows in one short write transaction, re-checking that
        each is still expired (a row may have changed since it was found).
        The engine's cheap scrubbing (SQLite's secure_delete=FAST zeroes the
        deleted cells that share a page with live data at no extra I/O)."""
        params = _params(bounds)
        sql = (f"DELETE FROM {table} WHERE id = :rowid"  # noqa: S608 - fixed names
               f" AND ({_where(table)})")
        with self.transaction() as conn:
            self.secure_delete(conn, None)
            deleted = 0
            for rowid in rowids:
                deleted += conn.execute(sql, {**params, "rowid": rowid}).rowcount
            return deleted

    def forget_number(
        self, e164: str, *, keep_attempts_since: datetime, keep_refusals_since: datetime,
        dialled_is_number: Callable[[str], bool],
    ) -> dict[str, dict[str, int]]:
        """Erasure request (`sentinelle forget`), in one transaction with
        secure_delete on (deleted bytes are overwritten, not left in free
        pages). What is kept, and why, is in retention.forget's docstring.
        Returns {table: {"deleted": n, "kept": n}}."""
        out: dict[str, dict[str, int]] = {}
        with self.transaction() as tx:
            self.secure_delete(tx, True)
            stray = [r[0] for r in tx.execute(
                "SELECT id, dialled FROM decisions WHERE e164 IS NULL AND dialled IS NOT NULL")
                if dialled_is_number(r[1])]
            n = tx.execute("DELETE FROM decisions WHERE e164=?", (e164,)).rowcount
            n += sum(tx.execute("DELETE FROM decisions WHERE id=?", (i,)).rowcount
                     for i in stray)
            out["decisions"] = {"deleted": n, "kept": 0}
            keep_a = ts(keep_attempts_since)
            n = tx.execute("DELETE FROM attempts WHERE e164=? AND at<?", (e164, keep_a)).rowcount
            kept = tx.execute(
                "UPDATE attempts SET campaign='', decision_id=NULL, outcome='erased',"
                " answered_at=NULL, ended_at=NULL, cause=NULL, cause_txt=NULL,"
                " disposition=NULL WHERE e164=?", (e164,)).rowcount
            out["attempts"] = {"deleted": n, "kept": kept}
            keep_r = ts(keep_refusals_since)
            n = tx.execute("DELETE FROM refusals WHERE e164=? AND at<?", (e164, keep_r)).rowcount
            kept = tx.execute(
                "UPDATE refusals SET campaign='', source='erased', attempt_id=NULL,"
                " recorded_at=NULL WHERE e164=?", (e164,)).rowcount
            out["refusals"] = {"deleted": n, "kept": kept}
            for table in ("consents", "contracts", "departments"):
                n = tx.execute(f"DELETE FROM {table} WHERE e164=?", (e164,)).rowcount  # noqa: S608
                out[table] = {"deleted": n, "kept": 0}
            kept = tx.execute("SELECT count(*) FROM optouts WHERE e164=?", (e164,)).fetchone()[0]
            out["optouts"] = {"deleted": 0, "kept": kept}
            self.secure_delete(tx, False)
        return out
