"""Moving an install to another store: `sentinelle store copy`.

A single-PBX site that grows moves its SQLite store to PostgreSQL (or back,
or to a new server). The copy must be all or nothing: a half-copied store
would hold some callees' attempts and not others', and a PBX pointed at it
would allow calls R-30 forbids. So:
- the destination must be empty (a copy never merges into a live store);
- the source is read in one read transaction (one consistent state, even
  while a `serve` keeps writing to it: what it writes after that is not
  copied, so stop the PBX's traffic first for a cut-over);
- the destination is written in ONE transaction, counts are compared table
  by table inside it, and any difference rolls everything back;
- rows keep their ids (attempts and decisions point at each other, refusals
  at attempts), and the current Bloctel snapshots come with their numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sentinelle.store.bloctel import snapshot_table
from sentinelle.store.database import Database
from sentinelle.store.errors import StoreError
from sentinelle.store.schema import TABLES

CHUNK = 5000
# Rows that are the store's own bookkeeping, written by the destination itself.
_SKIP_META = ("schema_version",)


def _numbers(rows: Iterator[Any]) -> Iterator[int]:
    for (number,) in rows:
        yield int(number)


def copy_store(src: Database, dst: Database,
               progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every table of `src` into the empty `dst`; returns rows copied per
    table (Bloctel numbers as `bloctel_<id>`). Raises StoreError, leaving
    `dst` as it was, on any failure or count mismatch."""
    copied: dict[str, int] = {}
    with src.transaction(immediate=False) as rtx, dst.transaction() as wtx:
        for table in TABLES:
            n = wtx.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            if n and table != "meta":
                raise StoreError(f"destination is not empty: {table} has {n} rows"
                                 " (a copy never merges into a store in use)")
        for table, spec in TABLES.items():
            columns = list(spec["columns"])
            sql = f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608 - fixed names
            if table == "meta":
                sql += " WHERE key NOT IN ('schema_version')"
            elif "id" in columns:
                sql += " ORDER BY id"
            _, rows = src.stream(rtx, sql, {}, CHUNK)
            dst.copy_rows(wtx, table, columns, rows)
            if "id" in columns:
                dst.restart_ids(wtx, table)
            copied[table] = _count(wtx, table, exclude_meta=table == "meta")
            expected = _count(rtx, table, exclude_meta=table == "meta")
            if copied[table] != expected:
                raise StoreError(f"copy of {table}: {copied[table]} rows written, {expected} read")
            if progress:
                progress(table, copied[table])
        for (sid,) in rtx.execute(
                "SELECT id FROM bloctel_snapshots WHERE state = 'current' ORDER BY id").fetchall():
            table = snapshot_table(sid)
            wtx.execute(dst.snapshot_ddl(table))
            _, rows = src.stream(rtx, f"SELECT e164 FROM {table}", {}, CHUNK)  # noqa: S608
            batch: list[int] = []
            for number in _numbers(rows):
                batch.append(number)
                if len(batch) >= 100_000:
                    dst.load_numbers(wtx, table, batch)
                    batch = []
            if batch:
                dst.load_numbers(wtx, table, batch)
            dst.seal_snapshot(wtx, table)
            got = wtx.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            want = rtx.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            if got != want:
                raise StoreError(f"copy of {table}: {got} numbers written, {want} read")
            copied[table] = int(got)
            if progress:
                progress(table, int(got))
    return copied


def _count(tx: Any, table: str, *, exclude_meta: bool) -> int:
    sql = f"SELECT count(*) FROM {table}"  # noqa: S608 - fixed names
    if exclude_meta:
        sql += " WHERE key NOT IN ('schema_version')"
    return int(tx.execute(sql).fetchone()[0])
