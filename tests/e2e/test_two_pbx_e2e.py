"""Two real Asterisk instances (same chroot, own ports and run directories),
each with its own `sentinelle serve`, sharing one PostgreSQL store: one R-30
count across the sites, a refusal keyed on one site blocks the other, and a
database outage blocks both sites until it is back (issue "Several PBXs")."""

from __future__ import annotations

import collections
import concurrent.futures as futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Service
from tests.helpers.pgserver import pg_schema_url, throwaway_cluster
from tests.pbx import Pbx

CALLEES = [f"06123456{i:02d}" for i in range(10)]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[tuple[object, Path, str]]:
    """A cluster of this module's own: the outage test stops and restarts it."""
    with throwaway_cluster("sentinelle-pg-e2e-") as cluster:
        yield cluster


@pytest.fixture
def sites(own_cluster, tmp_path: Path) -> Iterator[list[tuple[Service, Pbx]]]:
    _, _, server = own_cluster
    url = pg_schema_url(server)
    out: list[tuple[Service, Pbx]] = []
    try:
        for name in ("site1", "site2"):
            svc = Service(tmp_path / name, store_extra=f'url = "{url}"',
                          request_timeout_s=5.0)
            if not out:
                svc.cli("init")
            svc.start()
            pbx = Pbx(agi_url=svc.agi_url, campaign="promo", agents=20).start()
            out.append((svc, pbx))
        yield out
    finally:
        for svc, pbx in out:
            pbx.stop()
            pbx.cleanup()
            svc.stop()


def _blocked(r) -> bool:
    return (r.status, r.q850) == (403, 21)


def test_twenty_agents_per_site_on_the_same_callees_make_four_calls_each(sites):
    """Each wave: the 20 agents of each site dial the 10 callees at once, 2
    agents per callee per site (4 calls at once per callee across the sites).
    The first wave may all go out; the second is the fifth to eighth call of
    each callee in 30 days, on both sites: none may go out (R-30)."""
    (svc1, pbx1), (svc2, pbx2) = sites
    for n in CALLEES:
        svc1.consent(n)
    specs = [dict(number=CALLEES[i % 10], agent=f"agent{i + 1}", hold_ms=200) for i in range(20)]
    with pbx1.carrier(response=200, call_ms=100) as c1, \
            pbx2.carrier(response=200, call_ms=100) as c2, \
            futures.ThreadPoolExecutor(2) as pool:
        first = [r for rs in pool.map(lambda p: p.calls(specs), (pbx1, pbx2)) for r in rs]
        second = [r for rs in pool.map(lambda p: p.calls(specs), (pbx1, pbx2)) for r in rs]
        placed = collections.Counter(c1.numbers() + c2.numbers())
    rules = collections.Counter(
        tuple(d["rules"]) for svc in (svc1, svc2) for d in svc.decisions()
        if d["verdict"] == "block")
    assert placed == {n: 4 for n in CALLEES}, (placed, rules)
    assert [r.status for r in first] == [200] * 40, [(r.status, r.q850) for r in first]
    assert all(_blocked(r) for r in second), [(r.status, r.q850) for r in second]
    assert rules == {("R-30",): 40}, [d.get("reasons") for svc in (svc1, svc2)
                                      for d in svc.decisions() if d["rules"] == ["SYS-STORE"]]
    for n in CALLEES:
        timeline = json.loads(svc2.cli("history", n, "--json").stdout)
        assert len(timeline["attempts"]) == 4


def test_a_refusal_keyed_on_one_site_blocks_the_callee_on_the_other(sites):
    (svc1, pbx1), (svc2, pbx2) = sites
    number = CALLEES[0]
    svc1.consent(number)
    with pbx1.carrier(response=200):
        assert pbx1.call(number, send_dtmf="*9", hold_ms=800).status == 200
    with pbx2.carrier(response=200) as carrier:
        assert _blocked(pbx2.call(number))
        assert carrier.count() == 0
    (decision,) = [d for d in svc2.decisions() if d["dialled"] == number]
    assert "R-31" in decision["rules"]


def test_a_database_outage_blocks_both_sites_until_it_is_back(sites, own_cluster):
    cluster, base, _ = own_cluster
    (svc1, pbx1), (svc2, pbx2) = sites
    for n in CALLEES[:3]:
        svc1.consent(n)
    with pbx1.carrier(response=200) as c1, pbx2.carrier(response=200) as c2:
        assert pbx1.call(CALLEES[0], hold_ms=100).status == 200
        cluster.halt(base)
        try:
            assert _blocked(pbx1.call(CALLEES[1], hold_ms=100))
            assert _blocked(pbx2.call(CALLEES[1], hold_ms=100))
        finally:
            cluster.resume(base)
        # Back without restarting either serve: the pools reconnect (a call
        # in the few seconds before they have is blocked, SYS-STORE).
        for pbx, number in ((pbx2, CALLEES[1]), (pbx1, CALLEES[2])):
            deadline = time.monotonic() + 15
            while (r := pbx.call(number, hold_ms=100)).status != 200:
                assert _blocked(r) and time.monotonic() < deadline
        placed = c1.numbers() + c2.numbers()
    assert sorted(placed) == sorted([CALLEES[0], CALLEES[1], CALLEES[2]])
    outage = [d for svc in (svc1, svc2) for d in svc.decisions() if d["verdict"] == "block"]
    assert {d["dialled"] for d in outage if d["verdict"] == "block"} >= {CALLEES[1]}
    assert all(d["rules"] == ["SYS-STORE"] for d in outage), outage
    assert {svc.port for svc in (svc1, svc2) for d in svc.decisions()
            if d["dialled"] == CALLEES[1] and d["verdict"] == "block"} == {svc1.port, svc2.port}
    for n in CALLEES[:3]:  # every ALLOW sent was recorded
        assert len(json.loads(svc1.cli("history", n, "--json").stdout)["attempts"]) == 1
