"""The SQLite store: atomic check-and-record, fail-closed faults, evidence."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sentinelle.guard import Request, check
from sentinelle.store import SCHEMA_VERSION, ConsentProof, Store, StoreError, open_store

PARIS = ZoneInfo("Europe/Paris")
AT = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)


def _req(at: datetime = AT, number: str = "0612345678", record: bool = True) -> Request:
    return Request(dialled=number, at=at, campaign="promo", caller_id="0162000000", record=record)


def _consent(store: Store, e164: str = "+33612345678") -> None:
    store.add_consent("acme", e164, ConsentProof(source="web", given_at=AT - timedelta(days=10)))


def test_missing_store_is_an_error_not_a_new_file(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(StoreError, match="store missing"):
        Store(path)
    assert not path.exists()


def test_check_on_missing_store_blocks_sys_store(config):
    d = check(config, None, _req(), store_error="store missing: x")
    assert not d.allowed and d.rules == ("SYS-STORE",)


def test_record_only_allowed_prospecting_calls(config, store):
    _consent(store)
    allowed = check(config, store, _req())
    blocked = check(config, store, _req(number="0612345679"))
    dry = check(config, store, _req(record=False))
    assert allowed.allowed and allowed.attempt_id is not None
    assert not blocked.allowed and blocked.attempt_id is None
    assert dry.allowed and dry.attempt_id is None
    assert store.count("attempts") == 1
    assert store.count("decisions") == 2  # dry runs are not calls: not logged


def test_decision_log_is_append_only_and_keeps_inputs(config, store):
    _consent(store)
    check(config, store, _req())
    row = store.run(lambda c: c.execute("SELECT inputs, regime, verdict FROM decisions").fetchone())
    assert '"consent_max_age_days": 365' in row[0] and '"history"' in row[0]
    assert row[1:] == ("fr-2026", "allow")
    with pytest.raises(StoreError, match="append-only"):
        store.run(lambda c: c.execute("UPDATE decisions SET verdict='block'"), immediate=True)


@pytest.mark.sqlite_only
def test_locked_store_blocks_with_reason_then_recovers(config, store, tmp_path):
    _consent(store)
    fast = open_store(config.store, busy_timeout_ms=100)
    locker = sqlite3.connect(config.store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        d = check(config, fast, _req())
        assert not d.allowed and d.rules == ("SYS-STORE",) and "locked" in d.reasons[0]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert check(config, fast, _req()).allowed
    fast.close()


def test_corrupt_store_blocks(config, tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store(path)


@pytest.mark.sqlite_only
def test_replaced_or_deleted_file_is_detected(config, store):
    """Writing to a deleted inode would silently lose records."""
    _consent(store)
    assert check(config, store, _req()).allowed
    path = config.store.path
    import os

    os.rename(path, path + ".moved")
    d = check(config, store, _req())
    assert not d.allowed and d.rules == ("SYS-STORE",) and "disappeared" in d.reasons[0]
    os.rename(path + ".moved", path)
    assert check(config, store, _req(at=AT + timedelta(minutes=1))).allowed
    assert store.count("attempts") == 2


def test_refusal_idempotent_per_attempt_and_revokes_consent(store):
    _consent(store)
    assert store.add_refusal("acme", "promo", "+33612345678", AT, "dtmf", attempt_id=7)
    assert not store.add_refusal("acme", "promo", "+33612345678", AT, "disposition", attempt_id=7)
    assert store.count("refusals") == 1
    revoked = store.run(lambda c: c.execute("SELECT revoked_at FROM consents").fetchone()[0])
    assert revoked is not None


def test_bloctel_snapshot_switch_is_atomic(config, store, backend):
    sid = store.begin_snapshot("acme", date(2026, 7, 1), "opposed", "a.txt")
    store.load_snapshot(sid, [33612345678])
    assert store.commit_snapshot(sid) == 1
    h = store.history("acme", "+33612345678", datetime(2026, 7, 2, 11, tzinfo=PARIS))
    assert h.bloctel is not None and h.bloctel.listed
    # A second import in progress does not change what checks see...
    sid2 = store.begin_snapshot("acme", date(2026, 7, 20), "opposed", "b.txt")
    store.load_snapshot(sid2, [33699999999])
    h = store.history("acme", "+33612345678", datetime(2026, 7, 21, 11, tzinfo=PARIS))
    assert h.bloctel.snapshot_date == date(2026, 7, 1) and h.bloctel.listed
    # ... until it commits; the old snapshot table is gone (SQLite: at the
    # switch; PostgreSQL: at the next import, as a check may still probe it).
    store.commit_snapshot(sid2)
    h = store.history("acme", "+33612345678", datetime(2026, 7, 21, 11, tzinfo=PARIS))
    assert h.bloctel.snapshot_date == date(2026, 7, 20) and not h.bloctel.listed
    if backend == "postgresql":
        assert _snapshot_tables(store, backend) == [f"bloctel_{sid}", f"bloctel_{sid2}"]
        store.abort_snapshot(store.begin_snapshot("acme", date(2026, 7, 22), "opposed", "c"))
    assert _snapshot_tables(store, backend) == [f"bloctel_{sid2}"]


def _snapshot_tables(store, backend: str) -> list[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if backend == "sqlite" else
           "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    return sorted(r[0] for r in store.run(lambda c: c.execute(sql).fetchall())
                  if r[0].startswith("bloctel_") and r[0][8:].isdigit())


def test_orphan_loading_snapshot_is_swept_by_next_import(store):
    sid = store.begin_snapshot("acme", date(2026, 7, 1), "opposed", "killed.txt")
    store.load_snapshot(sid, [33612345678])
    # (the importing process was killed here)
    sid2 = store.begin_snapshot("acme", date(2026, 7, 2), "opposed", "again.txt")
    states = dict(store.run(lambda c: c.execute("SELECT id, state FROM bloctel_snapshots")
                            .fetchall()))
    assert states[sid] == "aborted" and states[sid2] == "loading"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_v1_store_is_migrated_in_place(tmp_path):
    """A store made before attempts.disposition existed gains the column and
    keeps its rows."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE attempts (id INTEGER PRIMARY KEY, professional TEXT, campaign TEXT,"
                 " e164 TEXT, at TEXT, decision_id INTEGER, outcome TEXT, answered_at TEXT,"
                 " ended_at TEXT, cause INTEGER, cause_txt TEXT)")
    conn.execute("INSERT INTO attempts (professional, e164, at) VALUES ('acme', '+33612345678',"
                 " '2026-12-01T09:30:00.000000+00:00')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.set_disposition(1, "callback")
    assert store.attempt(1)["disposition"] == "callback"
    assert store.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
    store.close()


def test_internal_error_is_sys_error_and_honours_fail_open(config, store, monkeypatch):
    """An unexpected exception on the call path blocks with SYS-ERROR, and the
    campaign's fail_open choice applies to it as to any sentinelle fault."""
    import dataclasses

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    broken = store
    monkeypatch.setattr(broken, "check_and_record", boom)
    d = check(config, broken, _req())
    assert not d.allowed and d.rules == ("SYS-ERROR",) and "boom" in d.reasons[0]
    assert d.campaign == "promo"
    campaigns = dict(config.campaigns)
    campaigns["promo"] = dataclasses.replace(campaigns["promo"], fail_open=True)
    d = check(dataclasses.replace(config, campaigns=campaigns), broken, _req())
    assert d.allowed and d.notes[0].startswith("SYS-ERROR fail-open")
