"""R-30 atomicity with real processes: 20 agents dial the same number at the
same instant; exactly 4 attempts may be recorded, never a fifth."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sentinelle.config import load_config
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, open_store

PARIS = ZoneInfo("Europe/Paris")
AT = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)


def _agent(config_path: str, barrier, results) -> None:
    config = load_config(config_path)
    store = open_store(config.store, busy_timeout_ms=10_000)
    barrier.wait()
    d = check(config, store, Request(dialled="06 12 34 56 78", at=AT, campaign="promo",
                                     caller_id="0162000000", record=True, source="agi"))
    results.put((d.verdict.value, d.rules, d.reasons))
    store.close()


def test_twenty_processes_same_number_same_instant(config_path, config):
    store = open_store(config.store, create=True)
    store.add_consent("acme", "+33612345678",
                      ConsentProof(source="web", given_at=AT - timedelta(days=3)))
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(20), ctx.Queue()
    procs = [ctx.Process(target=_agent, args=(str(config_path), barrier, results))
             for _ in range(20)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(o[0] for o in outcomes).count("allow") == 4
    assert all(rules == ("R-30",) for v, rules, _ in outcomes if v == "block"), \
        [o for o in outcomes if o[0] == "block" and o[1] != ("R-30",)]
    assert store.count("attempts") == 4
    assert store.count("decisions") == 20
    store.close()
