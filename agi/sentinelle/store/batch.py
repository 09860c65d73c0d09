"""Histories of many callees at once, for a scrub of a lead list.

`HotPath.history` costs a transaction, one statement and a Bloctel probe
per callee (a network round trip each on PostgreSQL), which a list of a
million leads pays a million times. A scrub reads the same facts for a
whole batch instead: one statement per table for up to `BATCH_KEYS`
callees, inside ONE read transaction, so every history of the batch is
taken from the same snapshot of the store (as one check's history is).

Each history must be exactly the one `HotPath.history` returns at the same
instant, since the same `decide` reads it: the same rows, in the same order
(attempts and refusals by time, consents in id order, which the per-callee
read sorts by explicitly on both engines). `tests/test_scrub_batch.py`
compares the two on random stores, on both backends. The SQL is plain
(`IN (...)`, no JSON or temp table), written once for both engines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sentinelle.core.model import Bloctel, Consent, History
from sentinelle.store.bloctel import snapshot_table
from sentinelle.store.database import Database, Tx
from sentinelle.store.hot import HISTORY_HORIZON
from sentinelle.store.values import e164_int, from_ts, ts

# Keys per IN list: far below SQLite's 32,766 variables (999 before 3.32),
# and large enough that a statement's fixed cost is spread thin.
BATCH_KEYS = 500


class BatchReads(Database):
    def histories(self, professional: str, e164s: Sequence[str],
                  at: datetime) -> dict[str, History]:
        """The history of each distinct callee of `e164s` at `at`, as
        `history(professional, e164, at)` would read it, all from one
        snapshot of the store."""
        keys = list(dict.fromkeys(e164s))
        with self.transaction(immediate=False) as conn:
            return _histories(conn, professional, keys, at)


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(keys), BATCH_KEYS):
        yield keys[i: i + BATCH_KEYS]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _rows(conn: Tx, sql: str, head: tuple[Any, ...], keys: list[str],
          tail: tuple[Any, ...] = ()) -> Iterable[Any]:
    """`sql` holds one `{keys}` for the IN list; run once per chunk of keys."""
    for chunk in _chunks(keys):
        yield from conn.execute(sql.format(keys=_marks(len(chunk))), (*head, *chunk, *tail))


def _histories(conn: Tx, professional: str, keys: list[str],
               at: datetime) -> dict[str, History]:
    lo, hi, now = ts(at - HISTORY_HORIZON), ts(at + HISTORY_HORIZON), ts(at)
    attempts: dict[str, list[datetime]] = {}
    for e164, when in _rows(
            conn, "SELECT e164, at FROM attempts WHERE professional=? AND e164 IN ({keys})"
                  " AND at>=? AND at<=? ORDER BY e164, at, id", (professional,), keys, (lo, hi)):
        attempts.setdefault(e164, []).append(datetime.fromisoformat(when))
    refusals = _refusals(conn, professional, keys, lo, now)
    consents: dict[str, list[Consent]] = {}
    for e164, given, source, revoked, slot_from, slot_until in _rows(
            conn, "SELECT e164, given_at, source, revoked_at, slot_from, slot_until FROM consents"
                  " WHERE professional=? AND e164 IN ({keys}) ORDER BY e164, id",
            (professional,), keys):
        consents.setdefault(e164, []).append(Consent(
            given_at=datetime.fromisoformat(given), source=source, revoked_at=from_ts(revoked),
            slot_from=from_ts(slot_from), slot_until=from_ts(slot_until)))
    contracts = {r[0] for r in _rows(
        conn, "SELECT e164 FROM contracts WHERE professional=? AND e164 IN ({keys})",
        (professional,), keys)}
    optouts = {r[0] for r in _rows(
        conn, "SELECT e164 FROM optouts WHERE professional=? AND e164 IN ({keys})",
        (professional,), keys)}
    departments: dict[str, str] = {e: d for e, d in _rows(
        conn, "SELECT e164, department FROM departments WHERE e164 IN ({keys})", (), keys)}
    bloctel = _bloctel(conn, professional, keys)
    return {e164: History(
        attempts=tuple(attempts.get(e164, ())), refusals=refusals.get(e164, ()),
        consents=tuple(consents.get(e164, ())), contract=e164 in contracts,
        opted_out=e164 in optouts, bloctel=bloctel(e164),
        department=departments.get(e164),
    ) for e164 in keys}


def _refusals(conn: Tx, professional: str, keys: list[str], lo: str,
              now: str) -> dict[str, tuple[datetime, ...]]:
    """The refusals of the horizon plus the latest before it (every row at
    that instant), as `HotPath._history` selects them: one read of every
    refusal up to `now`, sorted out here. Refusals are few (one a callee
    who said no), so reading those older than the horizon costs little."""
    found: dict[str, list[str]] = {}
    for e164, when in _rows(
            conn, "SELECT e164, at FROM refusals WHERE professional=? AND e164 IN ({keys})"
                  " AND at<=? ORDER BY e164, at, id", (professional,), keys, (now,)):
        found.setdefault(e164, []).append(when)
    out: dict[str, tuple[datetime, ...]] = {}
    for e164, times in found.items():
        before = [t for t in times if t < lo]
        latest = before[-1] if before else None  # sorted: the last is the max
        out[e164] = tuple(datetime.fromisoformat(t) for t in times if t >= lo or t == latest)
    return out


def _bloctel(conn: Tx, professional: str, keys: list[str]
             ) -> _Listed:
    row = conn.execute(
        "SELECT id, snapshot_date, kind FROM bloctel_snapshots"
        " WHERE professional=? AND state='current'", (professional,)).fetchone()
    if row is None:
        return _Listed(None, set())
    sid, snap_date, kind = row
    numbers: dict[int, list[str]] = {}  # two spellings may share one integer
    for e164 in keys:
        with contextlib.suppress(ValueError):  # never listed: the per-callee probe looks for -1
            numbers.setdefault(e164_int(e164), []).append(e164)
    table = snapshot_table(int(sid))
    ints = list(numbers)
    listed: set[str] = set()
    for i in range(0, len(ints), BATCH_KEYS):
        chunk = ints[i: i + BATCH_KEYS]
        for (number,) in conn.execute(
                f"SELECT e164 FROM {table} WHERE e164 IN ({_marks(len(chunk))})",  # noqa: S608 - int id
                chunk):
            listed.update(numbers[number])
    return _Listed((date.fromisoformat(snap_date), str(kind)), listed)


class _Listed:
    """Where each callee stands in the professional's current snapshot."""

    def __init__(self, snapshot: tuple[date, str] | None, listed: set[str]) -> None:
        self.snapshot = snapshot
        self.listed = listed

    def __call__(self, e164: str) -> Bloctel | None:
        if self.snapshot is None:
            return None
        return Bloctel(self.snapshot[0], self.snapshot[1], e164 in self.listed)
