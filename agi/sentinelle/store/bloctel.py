"""Bloctel snapshots: loading a new copy of the opposition list while the
service keeps checking against the current one, then switching atomically.

A snapshot lives in its own table (`bloctel_<id>`, numbers as 64-bit
integer primary key): a lookup is one B-tree probe. The load is committed in small
batches while the snapshot is marked `loading`, so live checks are never
starved of the write lock, and the switch to the new snapshot is one tiny
transaction. A crash in the middle leaves the previous snapshot current;
the orphan is swept by the next import. Where a reader may still be about
to probe the replaced table after the switch (PostgreSQL: each statement
sees the latest commit), the replaced table is dropped by the next import
rather than in the switch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sentinelle.store.database import Database
from sentinelle.store.errors import SnapshotShrinks, StoreError
from sentinelle.store.values import Snapshot, ts
from sentinelle.store.values import utc_now as _now

BLOCTEL_BATCH = 10_000  # rows per load transaction: ~5-10 ms of write lock when sorted


def snapshot_table(sid: int) -> str:
    """The table of snapshot `sid`; built from an integer only, so it is safe
    to format into SQL."""
    return f"bloctel_{int(sid)}"


class Snapshots(Database):
    def begin_snapshot(self, professional: str, snapshot_date: date, kind: str, source: str) -> int:
        self.sweep_loading()
        with self.transaction() as conn:
            sid = int(conn.execute(
                "INSERT INTO bloctel_snapshots (professional, snapshot_date, kind, table_name,"
                " count, state, imported_at, source) VALUES (?,?,?,?,0,'loading',?,?) RETURNING id",
                (professional, snapshot_date.isoformat(), kind, "", ts(_now()), source),
            ).fetchone()[0])
            conn.execute(self.snapshot_ddl(snapshot_table(sid)))
            conn.execute("UPDATE bloctel_snapshots SET table_name=? WHERE id=?",
                         (snapshot_table(sid), sid))
        return sid

    def load_snapshot(self, sid: int, numbers: Iterable[int]) -> None:
        """Append a batch in one short transaction; duplicates are harmless.

        Pass batches in ascending order when you can: the B-tree then only
        grows at its right edge, while random order dirties pages all over a
        10 M-row table and writes far more WAL."""
        batch = numbers if isinstance(numbers, list) else list(numbers)
        with self.transaction() as conn:
            self.load_numbers(conn, snapshot_table(sid), batch)

    def commit_snapshot(self, sid: int, shrink_floor: float = 0.0) -> int:
        """The atomic switch: the new snapshot becomes current, the old one goes.

        Raises SnapshotShrinks (nothing switched) when the new snapshot holds
        fewer than `shrink_floor` times the numbers of the current one of the
        same kind: checked inside the switch's transaction, so the comparison
        is with the snapshot actually being replaced."""
        with self.transaction() as conn:
            row = conn.execute("SELECT professional, kind FROM bloctel_snapshots WHERE id=? AND"
                               " state='loading'", (sid,)).fetchone()
            if row is None:
                raise StoreError(f"snapshot {sid} is not being loaded")
            self.seal_snapshot(conn, snapshot_table(sid))
            count: int = conn.execute(
                f"SELECT count(*) FROM {snapshot_table(sid)}").fetchone()[0]  # noqa: S608
            current = conn.execute(
                "SELECT count, snapshot_date FROM bloctel_snapshots WHERE professional=? AND"
                " kind=? AND state='current'", row).fetchone()
            if current is not None and count < current[0] * shrink_floor:
                raise SnapshotShrinks(count, current[0], current[1])
            old = [r[0] for r in conn.execute(
                "SELECT id FROM bloctel_snapshots WHERE professional=? AND state='current'",
                (row[0],))]
            for oid in old:
                if self.drop_replaced_at_switch():
                    conn.execute(f"DROP TABLE IF EXISTS {snapshot_table(oid)}")
                conn.execute("UPDATE bloctel_snapshots SET state='replaced' WHERE id=?", (oid,))
            conn.execute("UPDATE bloctel_snapshots SET state='current', count=? WHERE id=?",
                         (count, sid))
        return count

    def abort_snapshot(self, sid: int) -> None:
        with self.transaction() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {snapshot_table(sid)}")
            conn.execute("UPDATE bloctel_snapshots SET state='aborted' WHERE id=?", (sid,))

    def sweep_loading(self) -> int:
        """Drop snapshots left `loading` by a killed import. Only called by a new
        import, which is the one process that may own loading snapshots."""
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM bloctel_snapshots WHERE state='loading'")]
            for sid in ids:
                conn.execute(f"DROP TABLE IF EXISTS {snapshot_table(sid)}")
                conn.execute("UPDATE bloctel_snapshots SET state='aborted' WHERE id=?", (sid,))
            if not self.drop_replaced_at_switch():
                # Replaced by an earlier import, kept until now for the readers
                # that were about to probe them.
                for (oid,) in conn.execute(
                        "SELECT id FROM bloctel_snapshots WHERE state='replaced'").fetchall():
                    conn.execute(f"DROP TABLE IF EXISTS {snapshot_table(oid)}")
        return len(ids)

    def snapshots(self, professional: str | None = None) -> list[Snapshot]:
        """The current snapshot of each professional (or of one)."""
        with self.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT id, professional, snapshot_date, kind, count, imported_at"
                " FROM bloctel_snapshots WHERE state='current' AND (? IS NULL OR professional=?)"
                " ORDER BY professional", (professional, professional)).fetchall()
        return [Snapshot(r[0], r[1], date.fromisoformat(r[2]), r[3], r[4],
                         datetime.fromisoformat(r[5])) for r in rows]
