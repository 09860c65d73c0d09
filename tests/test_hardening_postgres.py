"""A PostgreSQL crash and restart under load, against a real `sentinelle serve`:
every ALLOW that was sent has its attempt in the store, every check while
the server is down blocks (SYS-*), and the service recovers by itself."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sentinelle.config import StoreConfig
from sentinelle.store import ConsentProof, open_store
from tests.helpers.hardening_support import FROZEN, Probe, Serve, probe, report
from tests.helpers.pgserver import pg_schema_url, throwaway_cluster

pytestmark = pytest.mark.postgres_only

CALLEES = [f"0612{i:06d}" for i in range(400)]


@pytest.fixture
def own_cluster() -> Iterator[tuple[object, Path, str]]:
    """A cluster of this test's own: it is crashed and restarted."""
    with throwaway_cluster("sentinelle-pg-crash-") as cluster:
        yield cluster


async def _load(port: int, done: Callable[[], bool]) -> list[Probe]:
    out: list[Probe] = []
    turn = iter(range(1 << 30))

    async def agent() -> None:
        while not done():
            out.append(await probe(port, CALLEES[next(turn) % len(CALLEES)], timeout=10))

    await asyncio.gather(*(agent() for _ in range(6)))
    return out


def test_a_postgresql_crash_under_load_loses_no_allowed_attempt(backend, own_cluster,
                                                                 tmp_path, request):
    cluster, base, server = own_cluster
    url = pg_schema_url(server)
    with open_store(StoreConfig(url=url), create=True) as store:
        given = datetime.fromisoformat(FROZEN) - timedelta(days=3)
        for n in CALLEES:
            store.add_consent("acme", "+33" + n[1:], ConsentProof(source="web", given_at=given))
    serve = Serve(tmp_path / "s", store_extra=f'url = "{url}"')
    down: dict[str, float] = {}

    def crash() -> None:
        time.sleep(1.5)
        cluster.halt(base)  # -m immediate: as a crash, no shutdown checkpoint
        down["from"] = time.monotonic()
        time.sleep(4.0)
        down["resuming"] = time.monotonic()  # the server may answer before resume returns
        cluster.resume(base)
        down["until"] = time.monotonic()

    deadline = time.monotonic() + 90
    with serve.start():
        chaos = threading.Thread(target=crash)
        chaos.start()
        # Until 3 s after the server is back (its crash recovery takes a while).
        probes = asyncio.run(_load(serve.port, lambda: time.monotonic() > down.get(
            "until", float("inf")) + 3.0 or time.monotonic() > deadline))
        chaos.join(30)
    # A check waits for a connection at most its busy timeout (1.5 s), then
    # blocks: those that started well inside the outage must all have blocked.
    inside = [p for p in probes
              if down["from"] + 0.1 < p.started < down["resuming"] - 2.0]
    assert inside and all(p.verdict == "BLOCK" and p.rules.startswith("SYS-") for p in inside)
    allowed = [p for p in probes if p.verdict == "ALLOW"]
    after = [p for p in allowed if p.started > down["until"]]
    assert after, ("no call allowed after the restart: the service did not recover",
                   collections.Counter((p.verdict, p.reason[:80]) for p in probes
                                       if p.started > down["until"]),
                   serve.log.read_text()[-3000:])
    with open_store(StoreConfig(url=url)) as store:
        for p in allowed:
            row = store.attempt(p.attempt)
            assert row is not None and row["e164"] == "+33" + p.number[1:], p
        per_callee = collections.Counter(
            a["e164"] for n in CALLEES for a in store.timeline("+33" + n[1:])["attempts"])
    assert max(per_callee.values()) <= 4  # R-30 held across the crash
    recovered = min(p.started for p in after) - down["until"]
    report(request, f"PostgreSQL crash under load: {len(probes)} checks, {len(inside)} during "
                    f"the outage all blocked, {len(allowed)} allowed attempts all in the store; "
                    f"first ALLOW {recovered * 1000:.0f} ms after the server was back")
