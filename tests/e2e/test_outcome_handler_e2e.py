"""Outcomes across a listener outage (issue #12, section 3), on the real
Asterisk: the hangup handler that the check pushes reports each call's end
to the FastAGI route `outcome`, so calls that end while the ARI listener is
down do not stay open. Asterisk keeps no ARI event for an app that is not
connected, so without the handler those 20 attempts would keep no outcome
(or `unknown` once the listener came back).

Twice: with the listener configured but unable to connect for the whole run
(its Asterisk URL answers nothing: an outage longer than the calls), and
with it connected, where both sources report every call and must agree
(whichever comes first is kept)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service
from tests.pbx import Pbx, free_ports

CONSENT_AT = "2026-11-01T10:00:00+01:00"
# 20 callees: the carrier answers 8, is busy for 6 (486) and unavailable for 6 (480).
BATCHES = [
    (200, "answered", 16, [f"06123451{i:02d}" for i in range(8)]),
    (486, "busy", 17, [f"06123452{i:02d}" for i in range(6)]),
    (480, "no-answer", 19, [f"06123453{i:02d}" for i in range(6)]),
]
NUMBERS = [n for *_, numbers in BATCHES for n in numbers]


def e164(national: str) -> str:
    return "+33" + national[1:]


def ari_section(url: str, user: str, password_file: Path) -> str:
    return f"""
[ari]
url = "{url}"
user = "{user}"
password_file = "{password_file}"
app = "sentinelle"
"""


def listener_connected(pbx: Pbx) -> bool:
    """Our ARI app is registered with its event filter: the listener is set up."""
    try:
        r = httpx.get(f"{pbx.ari_url}/applications/sentinelle", timeout=1,
                      auth=(pbx.ari_user, pbx.ari_password), trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and bool(r.json().get("events_allowed"))


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


@pytest.mark.parametrize("listener", ["down", "connected"])
def test_every_attempt_gets_its_outcome(service: Service, pbx: Pbx, tmp_path: Path,
                                        listener: str) -> None:
    secret = tmp_path / "ari.secret"
    secret.write_text(pbx.ari_password + "\n")
    (dead_port,) = free_ports(1)  # nothing listens there: the listener stays down
    url = pbx.ari_url if listener == "connected" else f"http://127.0.0.1:{dead_port}/ari"
    with service.config.open("a") as f:
        f.write(ari_section(url, pbx.ari_user, secret))
    consents = tmp_path / "consents.csv"
    consents.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,{CONSENT_AT},e2e web form\n" for n in NUMBERS))
    service.cli("import", "consents", str(consents))
    service.start()
    if listener == "connected":
        wait_until(lambda: listener_connected(pbx), 30, "ARI listener connected")
    else:
        time.sleep(1)
        assert not listener_connected(pbx)

    for response, _, _, numbers in BATCHES:
        with pbx.carrier(response=response):
            results = pbx.calls([dict(number=n, agent=f"agent{i + 1}", campaign="promo",
                                      hold_ms=600) for i, n in enumerate(numbers)])
        assert [r.status for r in results] == [response] * len(numbers), results

    def timelines() -> dict[str, dict]:
        return {n: json.loads(service.cli("history", n, "--json").stdout) for n in NUMBERS}

    deadline = time.monotonic() + 60
    while True:
        seen = timelines()
        if all(t["attempts"] and t["attempts"][0]["outcome"] for t in seen.values()):
            break
        assert time.monotonic() < deadline, {n: t["attempts"] for n, t in seen.items()}
        time.sleep(0.5)

    got = {n: (t["attempts"][0]["outcome"], t["attempts"][0]["cause"]) for n, t in seen.items()}
    want = {n: (outcome, cause) for _, outcome, cause, numbers in BATCHES for n in numbers}
    assert got == want
    for n in BATCHES[0][3]:
        attempt = seen[n]["attempts"][0]
        assert attempt["answered_at"] and attempt["ended_at"]
        assert attempt["at"] <= attempt["answered_at"] <= attempt["ended_at"]
    for _, _, _, numbers in BATCHES[1:]:
        assert all(seen[n]["attempts"][0]["answered_at"] is None for n in numbers)
    reports = [e for e in service.log_lines() if e.get("msg") == "outcome reported"]
    assert len(reports) == len(NUMBERS)
    if listener == "down":  # every outcome came from the handler
        assert sorted(e["status"] for e in reports) == sorted(o for o, _ in want.values())
    log = pbx.messages_log.read_text(errors="replace")
    assert "NOT recorded" not in log
    print(f"listener {listener}: {len(got)}/{len(NUMBERS)} attempts with their outcome")
