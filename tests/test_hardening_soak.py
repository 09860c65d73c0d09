"""Concurrency soak with an independent invariant checker.

Several processes (8 by default) hammer one SQLite store with `check
--record` (the same `guard.check` the AGI and the CLI use, each process with
its own connection) over random numbers (metropolitan, Alsace, overseas,
VoIP, foreign), campaigns of two professionals (prospecting, manual, press,
service), caller IDs, refusals, late consents, opt-outs and simulated
instants spanning the fr-2023 -> fr-2026 switch, with attempts recorded out
of order. Then `sentinelle.evidence.audit` (which shares no decision code with
`rules`) reads the store and must find zero violations.

Simulated time: a shared frontier advances with every operation. Checks are
placed at or before the frontier (sometimes days before: out-of-order
attempts); a refusal or an opt-out is placed AT a new frontier and committed
while holding the frontier lock. So any check whose instant is after a
refusal started after that refusal was committed and had to see it: a
violation found by the checker is a real one, never a race of the harness.

SENTINELLE_SOAK_CHECKS, SENTINELLE_SOAK_PROCS and SENTINELLE_SOAK_SECONDS
scale the run (defaults keep it well under a minute).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinelle.config import Config, load_config
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.evidence.audit import audit, audit_path
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, e164_int, open_store, ts
from tests.helpers.hardening_support import report, scaled
from tests.helpers.pgserver import config_text

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)  # fr-2023, Bloctel snapshot of 2026-07-01
SPAN = timedelta(days=150)  # crosses 2026-08-11 (fr-2026)
NPV = "0162000000"

SOAK_CONFIG = """
[store]
path = "soak.db"
busy_timeout_ms = 20000

[policy]
regime = "auto"
foreign = "block"

[professionals.acme]
caller_ids = ["0142000000"]

[professionals.beta]

[campaigns.promo]
professional = "acme"

[campaigns.manual]
professional = "acme"
dialing = "manual"

[campaigns.press]
professional = "acme"
purpose = "press"

[campaigns.svc]
professional = "acme"
purpose = "service"

[campaigns.beta]
professional = "beta"
"""
CAMPAIGNS = ["promo"] * 5 + ["manual", "press", "svc"] + ["beta"] * 3
PRO = {"promo": "acme", "manual": "acme", "press": "acme", "svc": "acme", "beta": "beta"}


def pool(scale: int = 1) -> list[str]:
    """About 270 callees per 24,000 checks, of every kind of territory."""
    raw = ([f"0612{i:06d}" for i in range(150 * scale)] + [f"0142{i:06d}" for i in range(30 * scale)]
           + [f"0388{i:06d}" for i in range(20 * scale)] + [f"0948{i:06d}" for i in range(10 * scale)]
           + [f"0692{i:06d}" for i in range(20 * scale)] + [f"0596{i:06d}" for i in range(10 * scale)]
           + [f"0590{i:06d}" for i in range(10 * scale)] + [f"+4420794600{i:02d}" for i in range(5)]
           + [f"+3225{i:06d}" for i in range(5 * scale)])
    out = []
    for n in raw:
        try:
            if parse(n).kind is not Kind.SHORT:
                out.append(n)
        except NumberError:
            pass
    return out


def dial_form(rng: random.Random, n: str) -> str:
    if n.startswith("+") or not n.startswith("06"):
        return n
    return rng.choice([n, f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8:]}", "+33" + n[1:],
                       "0033" + n[1:], n.replace("06", "06.", 1)])


def seed(config: Config, numbers: list[str], rng: random.Random) -> None:
    """Facts known before the soak. Real-time columns (imported_at, added_at)
    are backdated to the start of the simulation, as if entered then."""
    store = open_store(config.store, create=True)
    e164s = [parse(n).e164 for n in numbers]
    french = [e for e, n in zip(e164s, numbers, strict=True) if parse(n).territory is not None]
    for pro, share in (("acme", 0.6), ("beta", 0.4)):
        for e in e164s:
            if rng.random() < share:
                given = START - timedelta(days=rng.uniform(-60, 300))
                slot = None
                if rng.random() < 0.3:
                    s0 = START + timedelta(days=rng.uniform(0, 150), hours=rng.uniform(0, 24))
                    slot = (s0, s0 + timedelta(hours=rng.uniform(1, 48)))
                cid = store.add_consent(pro, e, ConsentProof(
                    source="soak-seed", given_at=given, slot_from=slot and slot[0],
                    slot_until=slot and slot[1]))
                if rng.random() < 0.1:
                    store.run(lambda c, cid=cid: c.execute(
                        "UPDATE consents SET revoked_at=? WHERE id=?",
                        (ts(START + timedelta(days=rng.uniform(0, 150))), cid)), immediate=True)
    backdated = ts(START - timedelta(days=1))
    for e in rng.sample(french, 12):
        store.add_contract("acme", e, "soak")
    for e in rng.sample(french, 8):
        store.set_optout("acme", e, True, "soak-seed")
    store.run(lambda c: c.execute("UPDATE contracts SET added_at=?", (backdated,)), immediate=True)
    store.run(lambda c: c.execute("UPDATE optouts SET added_at=?", (backdated,)), immediate=True)
    store.import_rows("departments", [{"e164": e, "department": rng.choice(["67", "68", "57", "75"])}
                                      for e in french if e.startswith(("+333", "+331"))])
    for pro, kind, share in (("acme", "opposed", 0.3), ("beta", "cleaned", 0.6)):
        sid = store.begin_snapshot(pro, START.date(), kind, "soak")
        store.load_snapshot(sid, [e164_int(e) for e in e164s if rng.random() < share])
        store.commit_snapshot(sid)
    store.run(lambda c: c.execute("UPDATE bloctel_snapshots SET imported_at=?", (backdated,)),
              immediate=True)
    store.close()


def _advance(rng: random.Random, frontier, step_s: float) -> datetime:
    """Move the shared frontier (caller holds its lock); often jump to the next
    legal window (Paris) so that enough checks fall inside legal hours."""
    f = datetime.fromtimestamp(frontier.value, UTC) + timedelta(seconds=rng.expovariate(1 / step_s))
    local = f.astimezone(PARIS)
    open_now = local.weekday() < 5 and (10 <= local.hour < 13 or 14 <= local.hour < 20)
    if not open_now and rng.random() < 0.7:
        day = local.date()
        hour = 10 if local.hour < 10 else 14 if local.hour < 14 else None
        if hour is None or day.weekday() >= 5:
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
            hour = 10
        f = datetime(day.year, day.month, day.day, hour, tzinfo=PARIS).astimezone(UTC) + \
            timedelta(seconds=rng.uniform(0, 600))
    frontier.value = f.timestamp()
    return f


def worker(config_path: str, numbers: list[str], seed_value: int, quota: int, until: float,
           step_s: float, lock, frontier, results) -> None:
    rng = random.Random(seed_value)
    config = load_config(config_path)
    store = open_store(config.store, busy_timeout_ms=config.store.busy_timeout_ms)
    hot = numbers[:30]
    stats: Counter[str] = Counter()
    done = 0
    while done < quota and time.time() < until:
        n = rng.choice(hot) if rng.random() < 0.4 else rng.choice(numbers)
        campaign = rng.choice(CAMPAIGNS)
        op = rng.random()
        if op < 0.015:  # a refusal expressed during a call, at the frontier
            with lock:
                at = _advance(rng, frontier, step_s)
                store.add_refusal(PRO[campaign], campaign, parse(n).e164, at, "soak")
            stats["refusals"] += 1
            continue
        if op < 0.017:  # "never call me again", at the frontier
            with lock:
                at = _advance(rng, frontier, step_s)
                store.run(lambda c, at=at, n=n, campaign=campaign: c.execute(
                    "INSERT INTO optouts (professional, e164, added_at, source) VALUES (?,?,?,?)"
                    " ON CONFLICT DO NOTHING",
                    (PRO[campaign], parse(n).e164, ts(at), "soak")), immediate=True)
            stats["optouts"] += 1
            continue
        if op < 0.05:  # a consent arrives late (paper form, CRM import), sometimes with a slot
            with lock:
                now = datetime.fromtimestamp(frontier.value, UTC)
            given = now - timedelta(days=rng.choice([0, 1, 10, 70, 120]) + rng.uniform(0, 5))
            slot = None
            if rng.random() < 0.3:
                s0 = now + timedelta(hours=rng.uniform(-24, 72))
                slot = (s0, s0 + timedelta(hours=rng.uniform(1, 12)))
            store.add_consent(PRO[campaign], parse(n).e164, ConsentProof(
                source="soak", given_at=given, slot_from=slot and slot[0],
                slot_until=slot and slot[1]))
            stats["consents"] += 1
            continue
        with lock:
            f = _advance(rng, frontier, step_s)
        r = rng.random()
        back = 0.0 if r < 0.6 else rng.uniform(0, 6 * 3600) if r < 0.9 else rng.uniform(0, 20 * 86400)
        at = max(START, f - timedelta(seconds=back)).astimezone(rng.choice([UTC, PARIS]))
        cid = rng.choices([NPV, "0142000000", "0612000000", None], [85, 5, 5, 5])[0]
        d = check(config, store, Request(dialled=dial_form(rng, n), at=at, campaign=campaign,
                                         caller_id=cid, masked=cid is None, record=True,
                                         source="soak"))
        done += 1
        stats["checks"] += 1
        stats[d.verdict.value] += 1
        for rule in d.rules:
            stats[rule] += 1
    store.close()
    results.put(dict(stats))


def run_soak(tmp: Path, checks: int, procs: int, seconds: float,
             config_text: str = SOAK_CONFIG) -> tuple[Counter[str], float, Config]:
    config_path = tmp / "sentinelle.toml"
    config_path.write_text(config_text)
    config = load_config(str(config_path))
    rng = random.Random(20261201)
    scale = max(1, checks // 24_000)  # bigger runs: more callees over a longer period
    numbers = pool(scale)
    seed(config, numbers, rng)
    ctx = mp.get_context("spawn")
    lock, frontier, results = ctx.Lock(), ctx.Value("d", START.timestamp()), ctx.Queue()
    step_s = SPAN.total_seconds() * scale / (checks * 1.08) / 3  # window jumps add the rest
    until = time.time() + seconds
    t0 = time.monotonic()
    workers = [ctx.Process(target=worker, args=(str(config_path), numbers, 1000 + i,
                                                 checks // procs, until, step_s, lock, frontier,
                                                 results)) for i in range(procs)]
    for w in workers:
        w.start()
    totals: Counter[str] = Counter()
    for _ in workers:
        totals.update(results.get(timeout=seconds + 120))
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    duration = time.monotonic() - t0
    totals["frontier_days"] = round((frontier.value - START.timestamp()) / 86400)
    return totals, duration, config


def test_soak_processes_then_invariants_hold(tmp_path, request, backend):
    """On both backends: with PostgreSQL the processes' R-30 count is held by
    the advisory lock, not by SQLite's one writer."""
    checks = scaled("SENTINELLE_SOAK_CHECKS", 24_000)
    procs = scaled("SENTINELLE_SOAK_PROCS", 8)
    seconds = scaled("SENTINELLE_SOAK_SECONDS", 40)
    totals, duration, config = run_soak(tmp_path, checks, procs, seconds,
                                        config_text(backend, request, SOAK_CONFIG))
    t0 = time.monotonic()
    with open_store(config.store) as store:
        result = audit(store, config)
    audit_s = time.monotonic() - t0
    assert not result.violations, str(result)
    assert totals["checks"] >= min(checks, 5_000), totals
    # The soak must have exercised every family it claims to test.
    for rule in ("R-10", "R-11", "R-12", "R-20", "R-21", "R-30", "R-31", "R-41", "R-40"):
        assert totals[rule] > 0, (rule, totals)
    assert totals["allow"] > 500 and result.attempts > 500
    assert not any(k.startswith("SYS-") for k in totals), totals
    families = ", ".join(f"{k} {totals[k]}" for k in sorted(totals) if k.startswith("R-"))
    report(request, f"soak ({backend}): {procs} processes, {totals['checks']:,} checks with record "
                    f"({totals['allow']:,} allow, {totals['block']:,} block; {families}) + "
                    f"{totals['refusals']} refusals, {totals['consents']} late consents, "
                    f"{totals['optouts']} opt-outs over {totals['frontier_days']} simulated days "
                    f"in {duration:.1f}s ({totals['checks'] / duration:,.0f} checks/s); invariant "
                    f"checker: {result.attempts:,} attempts / {result.callees} pairs audited in "
                    f"{audit_s:.1f}s, {len(result.violations)} violations, "
                    f"{len(result.unverifiable)} unverifiable")


# -- the checker itself catches what it claims to catch -------------------------

def _store_with(tmp_path: Path) -> tuple[sqlite3.Connection, object]:
    config_path = tmp_path / "sentinelle.toml"
    config_path.write_text(SOAK_CONFIG)
    config = load_config(str(config_path))
    open_store(config.store, create=True).close()
    return sqlite3.connect(config.store.path, isolation_level=None), config


def _attempt(conn: sqlite3.Connection, e164: str, at: datetime, pro: str = "acme",
             campaign: str = "promo") -> int:
    did = conn.execute("INSERT INTO decisions (at, source, campaign, professional, dialled, e164,"
                       " verdict, rules) VALUES (?, 'test', ?, ?, ?, ?, 'allow', '')",
                       (ts(at), campaign, pro, e164, e164)).lastrowid
    return conn.execute("INSERT INTO attempts (professional, campaign, e164, at, decision_id)"
                        " VALUES (?,?,?,?,?)", (pro, campaign, e164, ts(at), did)).lastrowid


TUE = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)  # fr-2026, legal hours


def _consent(conn, e164: str, given: datetime, pro: str = "acme", **extra) -> None:
    cols = {"professional": pro, "e164": e164, "given_at": ts(given), "source": "t",
            "recorded_at": ts(given), **{k: ts(v) for k, v in extra.items()}}
    conn.execute(f"INSERT INTO consents ({', '.join(cols)}) VALUES "  # noqa: S608 - test columns
                 f"({', '.join('?' * len(cols))})", tuple(cols.values()))


@pytest.mark.parametrize("case", ["R-30", "R-31", "R-20/R-21", "R-11", "R-10", "R-12", "EVIDENCE",
                                  "clean"])
def test_checker_detects_each_kind_of_violation(tmp_path, case):
    conn, config = _store_with(tmp_path)
    e = "+33612345678"
    _consent(conn, e, TUE - timedelta(days=40))
    if case == "R-30":
        for d in (0, 1, 7, 14, 28):  # five inside 30 days
            _attempt(conn, e, TUE + timedelta(days=d))
    elif case == "R-31":
        conn.execute("INSERT INTO refusals (professional, campaign, e164, at, source) VALUES"
                     " ('acme', 'promo', ?, ?, 't')", (e, ts(TUE - timedelta(days=59))))
        _attempt(conn, e, TUE)
    elif case == "R-20/R-21":
        _attempt(conn, e, TUE.replace(hour=13, minute=0))  # 13:00:00 is outside
    elif case == "R-11":
        _attempt(conn, "+33611111111", TUE)
    elif case == "R-10":
        sid = conn.execute("INSERT INTO bloctel_snapshots (professional, snapshot_date, kind,"
                           " table_name, count, state, imported_at, source) VALUES ('acme',"
                           " '2026-07-01', 'opposed', 'bloctel_1', 1, 'current', ?, 't')",
                           (ts(datetime(2026, 7, 1, tzinfo=UTC)),)).lastrowid
        conn.execute(f"CREATE TABLE bloctel_{int(sid)} (e164 INTEGER PRIMARY KEY)")
        conn.execute(f"INSERT INTO bloctel_{int(sid)} VALUES (33611111111)")  # noqa: S608
        _attempt(conn, "+33611111111", datetime(2026, 7, 7, 10, 30, tzinfo=PARIS))  # opposed
        _attempt(conn, "+33622222222", datetime(2026, 8, 5, 10, 30, tzinfo=PARIS))  # stale list
        _attempt(conn, "+33633333333", datetime(2026, 6, 30, 10, 30, tzinfo=PARIS))  # pre-import
    elif case == "R-12":
        conn.execute("INSERT INTO optouts VALUES ('acme', ?, ?, 't')", (e, ts(TUE - timedelta(days=1))))
        _attempt(conn, e, TUE)
    elif case == "EVIDENCE":
        aid = _attempt(conn, e, TUE)
        conn.execute("UPDATE attempts SET decision_id=NULL WHERE id=?", (aid,))
    else:  # four attempts, then one 30 days later at the same wall-clock time: legal
        for d in (0, 1, 2, 3, 30):  # the window from TUE ends at TUE + 30 days, excluded
            _attempt(conn, e, TUE + timedelta(days=d))
        conn.execute("INSERT INTO refusals (professional, campaign, e164, at, source) VALUES"
                     " ('acme', 'promo', ?, ?, 't')", (e, ts(TUE - timedelta(days=60))))
    with open_store(config.store) as store:
        result = audit(store, config)
    rules = sorted({v.rule for v in result.violations})
    if case == "clean":
        assert rules == [], str(result)
    elif case == "R-10":
        assert [v.rule for v in result.violations] == ["R-10", "R-10"], str(result)
        assert len(result.unverifiable) == 1
    else:
        assert case in rules, str(result)


def test_checker_detects_a_banned_sector_attempt(tmp_path):
    """R-13: an attempt of an energy-renovation campaign is a violation, unless
    a contract with the callee was recorded before it."""
    config_path = tmp_path / "sentinelle.toml"
    config_path.write_text(SOAK_CONFIG + '\n[campaigns.reno]\nprofessional = "acme"\n'
                                         'sector = "energy-renovation"\n')
    config = load_config(str(config_path))
    open_store(config.store, create=True).close()
    conn = sqlite3.connect(config.store.path, isolation_level=None)
    for e in ("+33612345678", "+33611111111"):
        _consent(conn, e, TUE - timedelta(days=40))
        _attempt(conn, e, TUE, campaign="reno")
    conn.execute("INSERT INTO contracts VALUES ('acme', '+33611111111', 'heat pump', ?)",
                 (ts(TUE - timedelta(days=1)),))
    conn.close()
    result = audit_path(config.store.path, config)
    assert [(v.rule, v.e164) for v in result.violations] == [("R-13", "+33612345678")], str(result)


def test_consent_older_than_a_refusal_outside_the_history_horizon(tmp_path):
    """A refusal revokes the consents given before it (R-31, fr-2026), however
    old the refusal: a consent dated before it but entered later (a paper form
    typed in months after) must not make the callee callable again. The
    history read at decision time only looked 62 days back, so such a
    consent used to pass: found by the soak's late consents."""
    config_path = tmp_path / "sentinelle.toml"
    config_path.write_text(SOAK_CONFIG)
    config = load_config(str(config_path))
    store = open_store(config.store, create=True)
    e = "+33612345678"
    refusal = TUE - timedelta(days=100)
    store.add_refusal("acme", "promo", e, refusal, "t")
    store.add_consent("acme", e, ConsentProof(source="paper", given_at=refusal - timedelta(days=5)))
    d = check(config, store, Request(dialled="0612345678", at=TUE, campaign="promo",
                                     caller_id=NPV, record=True))
    assert not d.allowed and d.rules == ("R-11",), d
    assert not audit_path(config.store.path, config).violations
    store.close()
