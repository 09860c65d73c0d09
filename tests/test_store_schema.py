"""Schema v3: `decisions.slot_used`, the R-22 slot use stored as a field
(written by the decision log, backfilled once by the migration) so that
no query matches the wording of a rule note."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sentinelle.store import SCHEMA_VERSION, ConsentProof, Store, StoreError
from sentinelle.store.values import SLOT_NOTE
from tests.helpers.evidence_helpers import call

PARIS_SUNDAY = datetime.fromisoformat("2026-12-06T15:00:00+01:00")  # no calls on Sundays
TUESDAY = datetime.fromisoformat("2026-12-08T10:30:00+01:00")

V2_DECISIONS = (
    "CREATE TABLE decisions (id INTEGER PRIMARY KEY, at TEXT, source TEXT, campaign TEXT,"
    " professional TEXT, dialled TEXT, e164 TEXT, caller_id TEXT, verdict TEXT, rules TEXT,"
    " reasons TEXT, regime TEXT, retry_at TEXT, attempt_id INTEGER, inputs TEXT)")


def _v2_store(path: Path, notes: list[list[str]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute(V2_DECISIONS)
    conn.execute("CREATE TRIGGER decisions_append_only BEFORE UPDATE ON decisions "
                 "BEGIN SELECT RAISE(ABORT, 'decision log is append-only'); END")
    for i, n in enumerate(notes):
        conn.execute("INSERT INTO decisions (at, verdict, attempt_id, inputs) VALUES (?,?,?,?)",
                     (f"2026-12-0{i + 1}T09:30:00.000000+00:00", "allow", i + 1,
                      json.dumps({"notes": n})))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def test_v2_store_gains_slot_used_backfilled_once(tmp_path):
    path = tmp_path / "v2.db"
    _v2_store(path, [[f"{SLOT_NOTE} 2026-12-06 14:00 - 2026-12-06 16:00 lifts R-21"],
                     ["R-00 emergency number"], []])
    store = Store(path)
    rows = store.run(lambda c: c.execute("SELECT id, slot_used FROM decisions ORDER BY id")
                     .fetchall())
    assert rows == [(1, 1), (2, 0), (3, 0)]
    assert store.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
    # The decision log is append-only again once the backfill is done.
    with pytest.raises(StoreError, match="append-only"):
        store.run(lambda c: c.execute("UPDATE decisions SET slot_used = 0"), immediate=True)
    store.close()
    # Opening it again is a no-op: the backfill ran once.
    again = Store(path)
    assert again.count("decisions") == 3
    again.close()


@pytest.mark.sqlite_only
def test_new_store_column_is_not_null_with_default(store):
    cols = {r[1]: r for r in store.run(lambda c: c.execute("PRAGMA table_info(decisions)")
                                       .fetchall())}
    _, _, kind, notnull, default, _ = cols["slot_used"]
    assert (kind, notnull, default) == ("INTEGER", 1, "0")


def test_decision_log_writes_slot_used_from_the_rules_note(config, store):
    """End to end through the real rules: the note the core writes today is
    the one the store recognises (a change of wording would fail here)."""
    e164 = "+33612345678"
    store.add_consent("acme", e164, ConsentProof(
        source="web", given_at=PARIS_SUNDAY - timedelta(days=20),
        slot_from=PARIS_SUNDAY - timedelta(hours=1), slot_until=PARIS_SUNDAY + timedelta(hours=1)))
    store.add_consent("acme", "+33687654321", ConsentProof(
        source="web", given_at=TUESDAY - timedelta(days=20)))
    slot = call(config, store, "0612345678", PARIS_SUNDAY)
    plain = call(config, store, "0687654321", TUESDAY)
    assert slot.allowed and any(n.startswith(SLOT_NOTE) for n in slot.notes), slot
    assert plain.allowed and not plain.notes
    used = dict(store.run(lambda c: c.execute("SELECT e164, slot_used FROM decisions").fetchall()))
    assert used == {e164: 1, "+33687654321": 0}
