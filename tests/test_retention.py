"""`purge` (retention, in batches, next to a live service) and `forget`
(erasure that keeps honouring R-12, R-30 and R-31)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinelle.core.calendar import allowed_at
from sentinelle.core.numbers import Territory
from sentinelle.evidence.retention import (
    KEEP_ATTEMPTS,
    KEEP_REFUSALS,
    forget,
    parse_duration,
    purge,
    purge_bounds,
)
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, Store, StoreError, ts
from tests.helpers.evidence_helpers import NPV, PARIS, call, invoker

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def test_parse_duration():
    assert parse_duration("1095") == parse_duration("1095d") == parse_duration("3y")
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration(" 90 days ") == timedelta(days=90)
    for bad in ("", "3 months", "-5d", "1.5y", "y"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="R-30/R-31"):
        purge_bounds(NOW, timedelta(days=30), 365)


def _consent(store: Store, e164: str, given: datetime, ref: str = "") -> int:
    return store.add_consent("acme", e164, ConsentProof(source="web", given_at=given,
                                                        evidence_ref=ref))


def _aged_store(config, store):
    """Calls, refusals and consents 4.5 years, 2.9 years and 10 days old."""
    for age in (timedelta(days=1640), timedelta(days=1060), timedelta(days=10)):
        at = _open_day(NOW - age)
        for n in ("0612345678", "0698765432"):
            _consent(store, "+33" + n[1:], at - timedelta(days=1))
            call(config, store, n, at, "press")
        store.add_refusal("acme", "press", "+33612345678", at + timedelta(minutes=1), "dtmf")
    store.set_optout("acme", "+33611111111", True)  # never purged
    store.add_contract("acme", "+33622222222", "energy")


def _ages(store: Store, table: str, col: str) -> list[float]:
    rows = store.run(lambda c: c.execute(f"SELECT {col} FROM {table}").fetchall())  # noqa: S608
    return sorted(round((NOW - datetime.fromisoformat(r[0])).days / 365, 1) for r in rows)


def test_purge_deletes_only_what_is_past_retention(config, store):
    _aged_store(config, store)
    bounds = purge_bounds(NOW, 3 * YEAR, consent_max_age_days=365)
    dry = purge(store, bounds, dry_run=True)
    assert dry.deleted["decisions"] == 2 and store.count("decisions") == 6
    result = purge(store, bounds)
    assert result.deleted == dry.deleted
    assert _ages(store, "attempts", "at") == [0.0, 0.0, 2.9, 2.9]
    assert _ages(store, "refusals", "at") == [0.0, 2.9]
    # A consent is kept while a call it justified is kept: the 2.9-year-old
    # consent, valid for a year, stays; the 4.5-year-old ones go.
    assert _ages(store, "consents", "given_at") == [0.0, 0.0, 2.9, 2.9]
    assert _ages(store, "decisions", "at") == [0.0, 0.0, 2.9, 2.9]
    assert store.count("optouts") == 1 and store.count("contracts") == 1


def test_purge_consent_revoked_long_ago(config, store):
    cid = _consent(store, "+33612345678", NOW - timedelta(days=1200))
    store.revoke_consent("acme", "+33612345678", NOW - timedelta(days=1150))
    # Not revoked, expired 1,135 days ago: no call within retention relied on it.
    _consent(store, "+33612345678", NOW - timedelta(days=1500))
    # Expired 735 days ago: calls made under it are still within retention.
    _consent(store, "+33612345678", NOW - timedelta(days=1100))
    purge(store, purge_bounds(NOW, 3 * YEAR, 365))
    ids = store.run(lambda c: [r[0] for r in c.execute("SELECT id FROM consents")])
    assert ids == [3] and cid not in ids


def test_purge_runs_in_small_batches(config, store):
    at = ts(NOW - 4 * YEAR)

    def fill(conn):
        for i in range(95):
            conn.execute("INSERT INTO decisions (at, verdict, e164) VALUES (?, 'allow', ?)",
                         (at, f"+3361234{i:04d}"))
    store.run(fill, immediate=True)
    seen = []
    result = purge(store, purge_bounds(NOW, 3 * YEAR, 365), batch=10,
                   progress=lambda table, total: seen.append((table, total)))
    assert result.deleted["decisions"] == 95 and result.batches == 10
    steps = [b - a for (_, a), (_, b) in zip([("", 0), *seen], seen, strict=False)]
    assert max(steps) <= 10 and store.count("decisions") == 0


def test_purge_does_not_block_the_live_service(config, tmp_path):
    """60,000 expired decisions purged while another connection records calls:
    no check fails, none waits anywhere near the 1.5 s busy timeout."""
    path = config.store.path
    with Store(path, create=True) as s:
        old = ts(NOW - 4 * YEAR)
        blob = json.dumps({"history": {"attempts": [old] * 8}, "pad": "x" * 400})

        def fill(conn):
            conn.executemany(
                "INSERT INTO decisions (at, source, campaign, professional, dialled, e164,"
                " verdict, rules, reasons, regime, inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                ((old, "fastagi", "promo", "acme", "0612345678", f"+336{i:08d}", "block",
                  "R-20", "[]", "fr-2023", blob) for i in range(60_000)))
        s.run(fill, immediate=True)
    latencies: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def live():
        with Store(path, busy_timeout_ms=1500) as s:
            i = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                d = check(config, s, Request(dialled=f"0198{i % 1000:06d}", at=NOW,
                                             campaign="service", caller_id=NPV, record=True))
                latencies.append(time.perf_counter() - t0)
                if any(r.startswith("SYS") for r in d.rules):
                    errors.append(str(d.reasons))
                i += 1

    thread = threading.Thread(target=live)
    thread.start()
    try:
        with Store(path) as s:
            result = purge(s, purge_bounds(NOW, 3 * YEAR, 365))
    finally:
        stop.set()
        thread.join()
    assert result.deleted["decisions"] == 60_000
    assert not errors
    assert len(latencies) > 50
    # The property is "no check fails closed" (above); the bound here stays
    # well under the 1.5 s busy timeout but leaves room for a WAL checkpoint's
    # fsync on a loaded 2-core CI machine (0.5 s flaked there once).
    assert max(latencies) < 1.0, f"a live check waited {max(latencies):.3f} s"


def test_purge_cli(config_path, config, store):
    _aged_store(config, store)
    cli = invoker(config_path)
    r = cli("purge", "--dry-run")
    assert r.exit_code == 0 and "retention 1095 days" in r.output and "would delete" in r.output
    assert store.count("decisions") == 6
    r = cli("purge", "--older-than", "10y")
    assert r.exit_code == 0 and "decisions: deleted 0" in r.output
    assert cli("purge", "--older-than", "7d").exit_code == 2
    assert cli("purge", "--older-than", "soon").exit_code == 2


# -- forget ---------------------------------------------------------------------

E164 = "+33612345678"


def _rich_history(config, store, now: datetime) -> None:
    """Consent with proof, contract, department, old and recent calls and refusals,
    plus a decision on an unknown campaign that holds only the raw number."""
    _consent(store, E164, now - timedelta(days=200), ref="scan-SECRET-77")
    store.add_contract("acme", E164, "energy")
    store.import_rows("departments", [{"e164": E164, "department": "67"}])
    for days in (45, 40):  # old calls: R-30 no longer needs them
        call(config, store, "0612345678", _open_day(now - timedelta(days=days)))
    store.add_refusal("acme", "promo", E164, now - timedelta(days=90), "dtmf")
    check(config, store, Request(dialled="06 12 34 56 78", at=now, campaign="nope", record=True))


def _open_day(at: datetime, step: int = -1) -> datetime:
    """10:30 Paris on the nearest open day (R-20/R-21, Alsace days included)."""
    at = at.astimezone(PARIS).replace(hour=10, minute=30, second=0, microsecond=0)
    while not allowed_at(Territory.FR, at)[0]:
        at += timedelta(days=step)
    return at


def _rows(store: Store, table: str) -> list[dict]:
    def read(conn):
        cur = conn.execute(f"SELECT * FROM {table} WHERE e164=?", (E164,))  # noqa: S608
        return [dict(zip([c[0] for c in cur.description], r, strict=True)) for r in cur]
    return store.run(read)


def test_forget_erases_everything_when_nothing_must_be_honoured(config, store):
    now = datetime.now(UTC)
    _rich_history(config, store, now)
    assert store.count("decisions") == 3
    result = forget(store, E164, now)
    assert result.tables["decisions"]["deleted"] == 3  # incl. the raw-number SYS-CONFIG one
    for table in ("attempts", "refusals", "consents", "contracts", "departments", "optouts",
                  "decisions"):
        assert _rows(store, table) == [], table
    assert store.count("decisions") == 0 and result.checkpointed
    store.close()
    # Nothing left in the bytes either (secure_delete + WAL checkpoint).
    db = Path(config.store.path)
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    for needle in (b"612345678", b"SECRET-77"):
        assert needle not in raw, needle


def test_forget_keeps_what_honours_opposition_refusal_and_r30(config, store, config_path):
    now = datetime.now(UTC)
    _rich_history(config, store, now)
    recent = [_open_day(now - timedelta(days=d)) for d in (12, 9, 6, 3)]
    for at in recent:
        store.check_and_record("acme", E164, at, lambda h, at=at: _allow(config, at),
                               record=True, source="test")
    store.record_outcome(store.count("attempts"), outcome="answered", answered_at=recent[-1],
                         ended_at=recent[-1], cause=16, cause_txt="Normal Clearing")
    store.set_disposition(store.count("attempts"), "callback")
    store.add_refusal("acme", "promo", E164, now - timedelta(days=20), "disposition")
    store.set_optout("other", E164, True, "dtmf")
    r = invoker(config_path)("forget", "06 12 34 56 78", "--yes", "--json")
    assert r.exit_code == 0, r.output
    tables = json.loads(r.output)["tables"]
    assert tables["attempts"] == {"deleted": 2, "kept": 4}
    assert tables["refusals"] == {"deleted": 1, "kept": 1}
    assert tables["optouts"] == {"deleted": 0, "kept": 1}
    assert tables["consents"]["deleted"] == 1 and tables["contracts"]["deleted"] == 1
    kept = _rows(store, "attempts")
    assert all(a["outcome"] == "erased" and a["campaign"] == "" and a["decision_id"] is None
               and a["cause"] is None and a["answered_at"] is None
               and a["disposition"] is None for a in kept)
    (refusal,) = _rows(store, "refusals")
    assert refusal["source"] == "erased" and refusal["campaign"] == ""
    assert refusal["attempt_id"] is None and refusal["recorded_at"] is None
    assert _rows(store, "decisions") == [] and _rows(store, "departments") == []
    # The law is still honoured for this number after the erasure:
    for campaign, rule in (("promo", "R-30"), ("promo", "R-31"), ("elsewhere", "R-12")):
        d = check(config, store, Request(dialled="0612345678", at=_next_open(now),
                                         campaign=campaign, caller_id=NPV))
        assert rule in d.rules, (campaign, d.rules)


def _allow(config, at):
    from sentinelle.core.model import Call, History
    from sentinelle.core.numbers import parse
    from sentinelle.core.rules import decide

    campaign = config.campaign("service")  # always allowed by the rules here...
    call_ = Call("0612345678", at, config.campaign("promo"), config.professional_of(campaign),
                 caller_id=NPV)
    d = decide(call_, parse("0612345678"), History(contract=True), config.policy)
    assert d.allowed and d.counts, d.reasons  # ...a counted prospecting attempt
    return d


def _next_open(now: datetime) -> datetime:
    return _open_day(now + timedelta(days=1), step=1)


def test_purge_removes_erased_minimal_rows_once_useless(config, store):
    now = datetime.now(UTC)
    for days in (5, 20):
        at = _open_day(now - timedelta(days=days))
        store.check_and_record("acme", E164, at, lambda h, at=at: _allow(config, at),
                               record=True, source="test")
    store.add_refusal("acme", "promo", E164, now - timedelta(days=40), "dtmf")
    forget(store, E164, now)
    assert len(_rows(store, "attempts")) == 2 and len(_rows(store, "refusals")) == 1
    later = now + timedelta(days=15)  # the 20-day-old attempt is now 35 days old
    purge(store, purge_bounds(later, 3 * YEAR, 365))
    assert len(_rows(store, "attempts")) == 1 and len(_rows(store, "refusals")) == 1
    purge(store, purge_bounds(now + KEEP_REFUSALS, 3 * YEAR, 365))
    assert _rows(store, "refusals") == [] and _rows(store, "attempts") == []
    assert KEEP_ATTEMPTS < KEEP_REFUSALS


def test_forget_cli_asks_first(config_path, config, store):
    call(config, store, "0612345678", _open_day(datetime.now(UTC) - timedelta(days=40)))
    cli = invoker(config_path)
    r = cli("forget", "0612345678", input="n\n")
    assert r.exit_code == 1 and store.count("decisions") == 1
    r = cli("forget", "0612345678", input="y\n")
    assert r.exit_code == 0 and "decisions: deleted 1" in r.output
    assert cli("forget", "garbage").exit_code == 2


def test_store_errors_exit_1(config_path, tmp_path):
    cli = invoker(config_path)
    r = cli("purge")  # no store yet: nothing to purge, and nothing created
    assert r.exit_code == 1 and "store missing" in r.output
    assert not (tmp_path / "sentinelle.db").exists()
    with pytest.raises(StoreError):
        Store(tmp_path / "sentinelle.db")


def test_purge_waits_out_a_lock_held_past_the_busy_timeout(config):
    """Another writer holds the store for longer than the purge's busy
    timeout (a burst of calls under load): the purge pauses and tries the
    batch again instead of aborting half-way with 'database is locked'."""
    import sqlite3

    path = config.store.path
    with Store(path, create=True) as s:
        old = ts(NOW - 4 * YEAR)

        def fill(conn):
            conn.executemany(
                "INSERT INTO decisions (at, source, campaign, professional, dialled, e164,"
                " verdict, rules, reasons, regime, inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                ((old, "fastagi", "promo", "acme", "0612345678", f"+336{i:08d}", "block",
                  "R-20", "[]", "fr-2023", "{}") for i in range(500)))
        s.run(fill, immediate=True)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.6, holder.rollback)
    release.start()
    try:
        with Store(path, busy_timeout_ms=100) as s:
            result = purge(s, purge_bounds(NOW, 3 * YEAR, 365))
    finally:
        release.join()
        holder.close()
    assert result.deleted["decisions"] == 500
