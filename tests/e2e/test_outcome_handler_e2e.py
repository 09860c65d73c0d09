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

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service
from tests.pbx import AgentPhone, Pbx, free_ports

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


def serve_consented(service: Service, pbx: Pbx, tmp_path: Path, callees: tuple[str, ...],
                    consent_at: str, listener: bool) -> None:
    """The topology tests' start: a consent per callee, then `serve`, with
    the ARI listener connected to `pbx` when `listener`."""
    if listener:
        secret = tmp_path / "ari.secret"
        secret.write_text(pbx.ari_password + "\n")
        with service.config.open("a") as f:
            f.write(ari_section(pbx.ari_url, pbx.ari_user, secret))
    consents = service.workdir / "consents.csv"
    consents.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,{consent_at},e2e web form\n" for n in callees))
    service.cli("import", "consents", str(consents))
    service.start()
    if listener:
        wait_until(lambda: listener_connected(pbx), 30, "ARI listener connected")


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def hang_up_agents(pbx: Pbx, channels: Iterable[str], phones: Iterable[AgentPhone],
                   timeline: Callable[[str], dict], callees: Iterable[str]) -> None:
    """The topology tests' end: hang the agents' channels up, then wait for
    every agent's phone to see its call end and every callee's outcome."""
    for channel in channels:
        pbx.ami.action("Hangup", Channel=channel)
    wait_until(lambda: all(p.done for p in phones), 30, "the agents' calls ended")
    wait_until(lambda: all(t["attempts"][0]["outcome"] for t in map(timeline, callees)),
               30, "outcomes recorded")


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


class CuttableProxy:
    """A TCP proxy between the listener and Asterisk's HTTP port, that can be
    cut (connections dropped, new ones refused) and restored: an ARI outage
    while Asterisk itself keeps running calls."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        (self.port,) = free_ports(1)
        self.server: socket.socket | None = None
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()

    def start(self) -> CuttableProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ari"


OUTAGE_S = 30.0
HELD = [f"06123454{i:02d}" for i in range(20)]


@pytest.mark.parametrize("cut", ["mid-call", "before-calls"])
def test_calls_ending_during_a_listener_outage_keep_their_outcome(service: Service, pbx: Pbx,
                                                                  tmp_path: Path, cut: str) -> None:
    """The issue's scenario: the listener is connected, loses ARI for 30 s
    (Asterisk keeps running) while 20 calls end, then reconnects and
    resyncs. Without the hangup handler its resync would close all 20 as
    `unknown`; with it, each keeps its real outcome. `mid-call`: the calls
    started while the listener watched; `before-calls`: they are placed
    during the outage, and every other agent keys the refusal `*9` then."""
    proxy = CuttableProxy(pbx.http_port).start()
    secret = tmp_path / "ari.secret"
    secret.write_text(pbx.ari_password + "\n")
    with service.config.open("a") as f:
        f.write(ari_section(proxy.url, pbx.ari_user, secret))
    consents = tmp_path / "consents.csv"
    consents.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,{CONSENT_AT},e2e web form\n" for n in HELD))
    service.cli("import", "consents", str(consents))
    service.start()
    wait_until(lambda: listener_connected(pbx), 30, "ARI listener connected")

    refusing = set(HELD[::2]) if cut == "before-calls" else set()

    def outage() -> float:
        proxy.cut()
        wait_until(lambda: not listener_connected(pbx), 30, "ARI app gone after the cut")
        return time.monotonic()

    with pbx.carrier(response=200) as carrier:
        if cut == "before-calls":
            cut_at = outage()
        results: list = []
        calls = threading.Thread(target=lambda: results.extend(pbx.calls(
            [dict(number=n, agent=f"agent{i + 1}", campaign="promo", hold_ms=4000,
                  send_dtmf="*9" if n in refusing else None)
             for i, n in enumerate(HELD)])))
        calls.start()
        assert carrier.wait_for(len(HELD), timeout=60) == len(HELD)
        if cut == "mid-call":
            cut_at = outage()
        calls.join(120)
        assert [r.status for r in results] == [200] * len(HELD), results
        ended_during_outage = time.monotonic() - cut_at < OUTAGE_S
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
    proxy.start()
    wait_until(lambda: listener_connected(pbx), 60, "ARI listener back")
    # The first connect's resync, and the one after the outage (logged once it
    # has run, a moment after Asterisk lists the app again).
    wait_until(lambda: sum(e.get("msg") == "ARI resync" for e in service.log_lines()) >= 2, 60,
               "the listener's resync after the outage")

    timelines = {n: json.loads(service.cli("history", n, "--json").stdout) for n in HELD}
    seen = {n: t["attempts"][0] for n, t in timelines.items()}
    got = {n: (a["outcome"], a["cause"], bool(a["answered_at"])) for n, a in seen.items()}
    assert ended_during_outage
    assert got == {n: ("answered", 16, True) for n in HELD}
    refused = {n for n, t in timelines.items()
               if [r["attempt_id"] for r in t["refusals"]] == [seen[n]["id"]]}
    assert refused == refusing
    print(f"ARI outage of {OUTAGE_S:g} s ({cut}): {len(HELD)} calls ended during it, "
          f"{sum(o == 'answered' for o, _, _ in got.values())}/{len(HELD)} with their outcome, "
          f"{len(refused)}/{len(refusing)} refusals keyed during it recorded")
