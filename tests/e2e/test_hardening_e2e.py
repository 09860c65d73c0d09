"""Restarts under load on a real PBX: no call goes out unchecked.

Real Asterisk 22, real SIPp agents and carrier, real `sentinelle serve`.
Agents keep dialling (every call to its own number, half of them consented)
while Asterisk is killed with SIGKILL and restarted, then while
`sentinelle serve` is killed with SIGKILL and restarted. Whatever was in
flight, the carrier must only ever see INVITEs for numbers whose check
returned ALLOW (and at most one per ALLOW), every one of them counted in the
store; calls caught by a restart fail closed; and once both are back, calls
go through again.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import threading
import time
from collections import Counter

from tests.e2e.conftest import Service
from tests.helpers.hardening_support import report

CONSENTED = [f"06123{i:05d}" for i in range(0, 400, 2)]


def _crash_and_restart_asterisk(pbx) -> float:
    """SIGKILL Asterisk's whole process group (no graceful hang-up), then boot it again."""
    t0 = time.monotonic()
    os.killpg(pbx.proc.pid, signal.SIGKILL)
    pbx.proc.wait(10)
    pbx.proc = None
    if pbx._ami is not None:
        pbx._ami.close()
        pbx._ami = None
    pbx.start()
    return time.monotonic() - t0


def test_restarts_under_load_never_let_an_unchecked_call_out(service: Service, pbx, tmp_path,
                                                              request):
    csv = tmp_path / "consents.csv"
    csv.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,2026-11-01T10:00:00+01:00,e2e-web-form\n" for n in CONSENTED))
    assert service.cli("import", "consents", str(csv)).returncode == 0
    service.start()
    numbers = (f"06123{i:05d}" for i in itertools.count())
    results = []
    stop = threading.Event()

    def agents() -> None:
        agent = itertools.cycle(range(1, 21))
        while not stop.is_set():
            wave = [{"number": next(numbers), "agent": f"agent{next(agent)}", "hold_ms": 150,
                     "timeout": 6} for _ in range(6)]
            results.extend(pbx.calls(wave))

    with pbx.carrier(response=200, call_ms=150) as carrier:
        load = threading.Thread(target=agents, name="agents")
        load.start()
        try:
            time.sleep(3)
            asterisk_down_s = _crash_and_restart_asterisk(pbx)
            time.sleep(3)
            service.stop(signal.SIGKILL)
            time.sleep(1.0)  # calls keep coming while the service is down
            service.start()
            time.sleep(3)
        finally:
            stop.set()
            load.join(120)
        after = pbx.calls([{"number": n, "agent": f"agent{i + 1}", "hold_ms": 100}
                           for i, n in enumerate(CONSENTED[-4:])])
        carrier_numbers = carrier.numbers()

    decisions = service.decisions()
    allowed = Counter(d["dialled"] for d in decisions if d["verdict"] == "allow")
    reached = Counter(carrier_numbers)
    unchecked = {n: c for n, c in reached.items() if c > allowed.get(n, 0)}
    assert not unchecked, f"INVITEs at the carrier without an ALLOW: {unchecked}"
    assert all(c == 1 for c in reached.values()), reached.most_common(3)
    assert not set(reached) - set(CONSENTED), "a call without consent reached the carrier"
    conn = sqlite3.connect(service.store)
    counted = {"0" + r[0][3:] for r in conn.execute("SELECT e164 FROM attempts")}
    conn.close()
    assert set(reached) <= counted, "a call went out without its attempt in the store"
    # Calls that did not get through ended as a refusal by the PBX or a failure,
    # never with the carrier answering them.
    failed = [r for r in results if r.status != 200]
    caught = [r for r in failed if r.number in CONSENTED]  # would have been allowed
    assert caught, "the restarts did not catch any call"
    assert all((r.status, r.q850) == (403, 21) or r.status is None for r in caught), \
        [(r.number, r.status, r.q850) for r in caught]
    assert all(r.number not in reached for r in failed), \
        [r.number for r in failed if r.number in reached]
    assert [r.status for r in after] == [200] * 4, [(r.status, r.q850) for r in after]
    assert all(n in reached for n in CONSENTED[-4:])
    placed = sum(r.status == 200 for r in results)
    report(request, f"restarts under load (real PBX): {len(results)} calls, {placed} answered, "
                    f"{len(failed) - len(caught)} blocked by law, {len(caught)} consented calls "
                    f"caught by the restarts failed closed "
                    f"({dict(Counter(r.status for r in caught))}); Asterisk SIGKILL+boot "
                    f"{asterisk_down_s:.1f}s, serve SIGKILL+restart; carrier saw "
                    f"{sum(reached.values())} INVITEs, each with its ALLOW and its attempt")
