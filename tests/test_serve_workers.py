"""`server.workers = N` on PostgreSQL: N FastAGI processes share one port and
one R-30 count, and the supervisor keeps N of them alive."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta

import httpx
import pytest

from sentinelle.config import StoreConfig
from sentinelle.store import ConsentProof, open_store
from tests.helpers.hardening_support import FROZEN, Serve, free_port, probe
from tests.helpers.pgserver import pg_schema_url

pytestmark = pytest.mark.postgres_only

NUMBERS = [f"06123456{i:02d}" for i in range(10)]


def _workers(serve: Serve) -> dict[int, int]:
    """pid -> worker index of the workers alive now, from the service's log."""
    alive: dict[int, int] = {}
    for line in serve.log_lines():
        if line.get("msg") == "worker started":
            alive[int(line["pid"])] = int(line["worker"])
    return {pid: i for pid, i in alive.items() if _running(pid)}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _wait(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _burst(port: int) -> list:
    # 8 calls per callee at once, spread over the workers by the kernel.
    return await asyncio.gather(*(probe(port, n) for n in NUMBERS for _ in range(8)))


def test_two_workers_one_count_and_a_dead_worker_is_replaced(backend, pg_server, tmp_path):
    url = pg_schema_url(pg_server)
    with open_store(StoreConfig(url=url), create=True) as store:
        given = datetime.fromisoformat(FROZEN) - timedelta(days=3)
        for n in NUMBERS:
            store.add_consent("acme", "+33" + n[1:], ConsentProof(source="web", given_at=given))
    # A generous deadline: the point is the count, not the speed of a loaded machine.
    metrics_port = free_port()
    serve = Serve(tmp_path / "w", store_extra=f'url = "{url}"', server_extra="workers = 2",
                  request_timeout_s=10.0, extra=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"')
    with serve.start():
        _wait(lambda: len(_workers(serve)) == 2)
        probes = asyncio.run(_burst(serve.port))
        verdicts = {n: sorted((p.verdict, p.rules) for p in probes if p.number == n)
                    for n in NUMBERS}
        assert all([v for v, _ in got] == ["ALLOW"] * 4 + ["BLOCK"] * 4
                   for got in verdicts.values()), Counter(p.rules or p.verdict for p in probes)
        # Worker 0's /metrics counts both workers' checks: the kernel spread
        # the 80 connections over both (all on one: a chance of 2 in 2**80).
        scraped = _metrics(metrics_port)
        assert scraped['sentinelle_decisions_total{rule="",verdict="allow"}'] == 40
        assert scraped['sentinelle_decisions_total{rule="R-30",verdict="block"}'] == 40
        assert scraped["sentinelle_check_seconds_count"] == 80
        victim = next(iter(_workers(serve)))
        os.kill(victim, signal.SIGKILL)
        # One reading of the log per poll: two could see the victim still
        # alive (SIGKILL lands a moment after kill() returns), then gone.
        _wait(lambda: len(alive := _workers(serve)) == 2 and victim not in alive)
        assert any(line.get("msg") == "worker died: restarting" for line in serve.log_lines())
        after = asyncio.run(probe(serve.port, NUMBERS[0]))
        assert after.verdict == "BLOCK" and "R-30" in after.rules
        # A replaced worker keeps the service's counts: counters never go down.
        _wait(lambda: _metrics(metrics_port).get("sentinelle_check_seconds_count") == 81)
        assert _metrics(metrics_port)["sentinelle_inflight_requests"] == 0
        workers = list(_workers(serve))
        assert serve.stop() == 0
    assert not any(_running(pid) for pid in workers)
    with open_store(StoreConfig(url=url)) as store:
        assert store.count("attempts") == 4 * len(NUMBERS)


def _metrics(port: int) -> dict[str, float]:
    """The scrape of worker 0's /metrics, sample -> value (nothing on a refused connection:
    worker 0 may be the one being replaced)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in body.splitlines() if line and not line.startswith("#")}


def test_more_than_one_worker_needs_postgresql(backend, tmp_path):
    serve = Serve(tmp_path / "s", server_extra="workers = 2")
    r = serve.cli("serve", "--check-config")
    assert r.returncode == 2 and "server.workers" in r.stderr and "PostgreSQL" in r.stderr
