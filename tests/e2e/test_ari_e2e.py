"""The ARI listener end to end: real Asterisk 22, real SIPp phones and carrier,
the real `sentinelle serve` (FastAGI + ARI listener) as a subprocess.

Why: the listener's promise (a refusal keyed during a call blocks the callee
for 60 days; outcomes are recorded; an Asterisk restart is survived without
burning CPU) depends on what Asterisk 22 actually emits for channels outside
Stasis, which only the real thing shows. Never skipped: if Asterisk cannot
run, `Pbx()` raises and these tests fail.

The service records the ARI event stream it receives ($SENTINELLE_ARI_RECORD);
the calls of a few scenarios are cut out of it and, with
SENTINELLE_WRITE_ARI_FIXTURES=1, written to tests/fixtures/ari/ for the
fast replay tests (tests/test_ari_replay.py).

The service runs with a frozen clock (`serve --at`, a Tuesday 10:30 in
Paris, inside the legal hours) because the tests may run on any day; under
it the listener's instants tick on from the frozen one, so the follow-up
`sentinelle check` is asked a little later (`LATER`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentinelle.store import Store
from tests.helpers.testconfig import ACME_PROMO
from tests.pbx import Pbx, free_ports

FROZEN = "2026-12-01T10:30:00+01:00"
LATER = "2026-12-01T11:00:00+01:00"
CONSENT_AT = "2026-11-02T10:00:00+01:00"
CALLER_ID = "0162000000"  # Arcep NPV range: valid for automated dialing
SENTINELLE = str(Path(sys.executable).with_name("sentinelle"))
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ari"
WRITE_FIXTURES = os.environ.get("SENTINELLE_WRITE_ARI_FIXTURES") == "1"
# One fresh callee per test, each with a recorded consent (R-11, fr-2026).
NUMBERS = {
    "answered": "0612340001",
    "dtmf": "0612340002",
    "refused": "0612340003",
    "do-not-call": "0612340004",
    "busy": "0612340005",
    "no-answer": "0612340006",
    "crash": "0612340007",
    "after-restart": "0612340008",
    "control": "0612340009",
    "right-after-boot": "0612340010",
}


def e164(national: str) -> str:
    return "+33" + national[1:]


@dataclass
class Env:
    pbx: Pbx
    config: Path
    store_path: Path
    serve: subprocess.Popen[bytes]
    serve_log: Path
    password: str
    record: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SENTINELLE, "--config", str(self.config), *args], cwd=self.config.parent,
                              capture_output=True, text=True, timeout=30, check=False)

    def check(self, number: str) -> tuple[int, dict[str, Any]]:
        res = self.cli("check", number, "--campaign", "promo", "--caller-id", CALLER_ID,
                       "--at", LATER, "--json")
        assert res.returncode in (0, 1), res.stderr
        return res.returncode, json.loads(res.stdout)

    def timeline(self, number: str) -> dict[str, list[dict[str, Any]]]:
        with Store(self.store_path) as store:
            return store.timeline(e164(number))

    def wait(self, number: str, pred: Callable[[dict[str, list[dict[str, Any]]]], bool],
             timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            timeline = self.timeline(number)
            if pred(timeline):
                return timeline
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached for {number}: {timeline}\n{self.log_tail()}")
            time.sleep(0.05)

    def call_events(self, number: str) -> list[dict[str, Any]]:
        """The recorded events of the one call to `number`: those of the agent
        channel that announced its attempt and of the channels it dialled."""
        events = [json.loads(line) for line in self.record.read_text().splitlines()]
        ids = {e["channel"]["id"] for e in events
               if e.get("type") == "ChannelUserevent" and e.get("eventname") == "SentinelleAttempt"
               and e.get("userevent", {}).get("number") == number}
        assert len(ids) == 1, f"{len(ids)} calls announced for {number} in {self.record}"
        ids |= {e["peer"]["id"] for e in events if e.get("type") == "Dial"
                and e.get("caller", {}).get("id") in ids and e.get("peer", {}).get("id")}
        return [e for e in events
                if ids & {(e.get(k) or {}).get("id") for k in ("channel", "caller", "peer")}]

    def keep_fixture(self, name: str, number: str) -> None:
        """Once the call is over (its outcome recorded), cut its events out of
        the recording; with SENTINELLE_WRITE_ARI_FIXTURES=1, save them as
        tests/fixtures/ari/<name>.jsonl."""
        self.wait(number, lambda t: bool(t["attempts"]) and t["attempts"][0]["outcome"] is not None)
        events = self.call_events(number)
        kinds = {e["type"] for e in events}
        assert {"ChannelUserevent", "Dial", "ChannelDestroyed"} <= kinds, kinds
        if WRITE_FIXTURES:
            FIXTURES.mkdir(parents=True, exist_ok=True)
            (FIXTURES / f"{name}.jsonl").write_text(
                "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.serve_log.read_text(errors="replace").splitlines()[-lines:])

    def ari_ready(self) -> bool:
        """Our app is registered and its event filter applied: the listener is
        connected and set up (what a reconnect must achieve)."""
        try:
            r = httpx.get(f"{self.pbx.ari_url}/applications/sentinelle", timeout=1,
                          auth=(self.pbx.ari_user, self.pbx.ari_password), trust_env=False)
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        allowed = {f.get("type") for f in r.json().get("events_allowed", [])}
        return "ChannelDtmfReceived" in allowed


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - t0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("ari-e2e")
    (agi_port,) = free_ports(1)
    pbx = Pbx(agi_url=f"agi://127.0.0.1:{agi_port}", campaign="promo")
    secret = work / "ari.secret"
    secret.write_text(pbx.ari_password + "\n")
    config = work / "sentinelle.toml"
    config.write_text(f"""
[store]
path = "{work / 'sentinelle.db'}"
{ACME_PROMO}
[server]
listen = "127.0.0.1:{agi_port}"

[ari]
url = "{pbx.ari_url}"
user = "{pbx.ari_user}"
password_file = "{secret}"
app = "sentinelle"
refusal_dtmf = "*9"
dtmf_gap_s = 3.0
""")
    consents = work / "consents.csv"
    consents.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,{CONSENT_AT},e2e web form\n" for n in NUMBERS.values()))
    serve_log = work / "serve.log"
    record = work / "ari-events.jsonl"
    pbx.start()
    serve = None
    try:
        res = subprocess.run([SENTINELLE, "--config", str(config), "import", "consents", str(consents)],
                             capture_output=True, text=True, timeout=30, check=False, cwd=work)
        assert res.returncode == 0, res.stderr
        with serve_log.open("wb") as out:
            serve = subprocess.Popen(
                [SENTINELLE, "--config", str(config), "--log-level", "INFO", "serve", "--at", FROZEN],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=work,
                env={**os.environ, "SENTINELLE_ARI_RECORD": str(record)})
        e = Env(pbx, config, work / "sentinelle.db", serve, serve_log, pbx.ari_password, record)

        def agi_up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", agi_port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_for(lambda: serve.poll() is None and agi_up() and e.ari_ready(), 15, "serve ready")
        yield e
    finally:
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(10)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        pbx.stop()
        print(f"serve log: {serve_log}\nAsterisk logs: {pbx.log_dir}")


def test_answered_call_records_outcome_times_and_cause(env: Env) -> None:
    number = NUMBERS["answered"]
    with env.pbx.carrier(response=200):
        assert env.pbx.call(number, caller_id=CALLER_ID, hold_ms=600).status == 200
    (attempt,) = env.wait(number, lambda t: bool(t["attempts"]) and t["attempts"][0]["outcome"])["attempts"]
    assert attempt["outcome"] == "answered"
    assert (attempt["cause"], attempt["cause_txt"]) == (16, "Normal Clearing")
    at, answered, ended = (datetime.fromisoformat(attempt[k]) for k in ("at", "answered_at", "ended_at"))
    assert at <= answered < ended
    assert 0.3 < (ended - answered).total_seconds() < 5  # the call lasted ~600 ms
    env.keep_fixture("answered", number)


def test_dtmf_refusal_blocks_the_next_call(env: Env) -> None:
    control_code, control = env.check(NUMBERS["control"])
    assert (control_code, control["verdict"]) == (0, "allow"), control  # consent alone allows
    number = NUMBERS["dtmf"]
    with env.pbx.carrier(response=200):
        assert env.pbx.call(number, caller_id=CALLER_ID, send_dtmf="*9", hold_ms=800).status == 200
    timeline = env.wait(number, lambda t: bool(t["refusals"]))
    (refusal,) = timeline["refusals"]
    # *9 is a feature too: the route (synchronous) or the listener (DTMF) records it first
    assert refusal["source"] in ("dtmf", "fastagi disposition:refused")
    assert refusal["attempt_id"] == timeline["attempts"][0]["id"]
    code, decision = env.check(number)
    assert (code, decision["verdict"]) == (1, "block")
    # the refusal revoked the consent (fr-2026), so no retry date either.
    assert {"R-31", "R-11"} <= set(decision["rules"]), decision
    env.keep_fixture("answered-dtmf-refusal", number)


@pytest.mark.parametrize(("code", "keys", "rules"), [
    ("refused", "*81", {"R-31", "R-11"}),
    ("do-not-call", "*82", {"R-12", "R-31", "R-11"}),
])
def test_agent_disposition_feature_code(env: Env, code: str, keys: str, rules: set[str]) -> None:
    number = NUMBERS[code]
    with env.pbx.carrier(response=200):
        assert env.pbx.call(number, caller_id=CALLER_ID, send_dtmf=keys, hold_ms=800).status == 200
    timeline = env.wait(number, lambda t: bool(t["refusals"]) and t["attempts"][0]["outcome"] is not None)
    (refusal,) = timeline["refusals"]
    assert refusal["source"] == f"fastagi disposition:{code}"  # recorded by the route, synchronously
    assert timeline["attempts"][0]["disposition"] == code
    assert len(timeline["optouts"]) == (1 if code == "do-not-call" else 0)
    exit_code, decision = env.check(number)
    assert exit_code == 1 and rules <= set(decision["rules"]), decision
    env.keep_fixture(f"disposition-{code}", number)


@pytest.mark.parametrize(("response", "outcome", "cause"), [(486, "busy", 17), (480, "no-answer", 19)])
def test_unanswered_call_outcome_still_counts(env: Env, response: int, outcome: str, cause: int) -> None:
    number = NUMBERS[outcome]
    with env.pbx.carrier(response=response, ring_ms=100) as carrier:
        assert env.pbx.call(number, caller_id=CALLER_ID).status == response
        assert carrier.count() == 1
    (attempt,) = env.wait(number, lambda t: bool(t["attempts"]) and t["attempts"][0]["outcome"])["attempts"]
    assert (attempt["outcome"], attempt["cause"], attempt["answered_at"]) == (outcome, cause, None)
    assert attempt["ended_at"]
    # Still an attempt for R-30: the decision log and the counter say so.
    timeline = env.timeline(number)
    assert [d["attempt_id"] for d in timeline["decisions"]] == [attempt["id"]]
    env.keep_fixture(outcome, number)


def test_asterisk_crash_and_restart(env: Env) -> None:
    """Kill Asterisk during a call (no close frame, no ChannelDestroyed), keep
    it down a few seconds, start it again: the listener idles, comes back
    within 5 s of Asterisk being ready, closes the lost call as "unknown" and
    records a refusal keyed after the restart."""
    pbx = env.pbx
    crash = NUMBERS["crash"]
    with pbx.carrier(response=200) as carrier:
        caller = threading.Thread(target=pbx.call, daemon=True, args=(crash,),
                                  kwargs={"caller_id": CALLER_ID, "hold_ms": 4000, "timeout": 8})
        caller.start()
        assert carrier.wait_for(1) == 1
        env.wait(crash, lambda t: bool(t["attempts"]))
        time.sleep(0.5)  # answered and followed by the listener
        assert pbx.proc is not None
        os.killpg(pbx.proc.pid, signal.SIGKILL)
        pbx.proc.wait()
        pbx.stop()  # tidy the harness (carrier, AMI); Asterisk is already gone
    assert env.timeline(crash)["attempts"][0]["outcome"] is None  # nobody told us yet
    # The outage: the listener retries with backoff and must stay nearly idle.
    cpu0, t0 = cpu_seconds(env.serve.pid), time.monotonic()
    time.sleep(4.0)
    cpu = (cpu_seconds(env.serve.pid) - cpu0) / (time.monotonic() - t0) * 100
    print(f"listener CPU during the outage: {cpu:.2f}%")
    assert cpu < 5, f"{cpu:.1f}% CPU while Asterisk was down"
    assert env.serve.poll() is None
    pbx.start()
    delay = wait_for(env.ari_ready, 5, "listener reconnected and set up")
    print(f"listener ready {delay:.2f}s after Asterisk was (Asterisk start took {pbx.start_seconds:.2f}s)")
    (attempt,) = env.wait(crash, lambda t: t["attempts"][0]["outcome"] is not None)["attempts"]
    assert attempt["outcome"] == "unknown"
    assert attempt["answered_at"]  # learnt before the crash
    number = NUMBERS["after-restart"]
    with pbx.carrier(response=200):
        assert pbx.call(number, caller_id=CALLER_ID, send_dtmf="*9", hold_ms=800).status == 200
    (refusal,) = env.wait(number, lambda t: bool(t["refusals"]))["refusals"]
    # *9 is a feature too: the route (synchronous) or the listener (DTMF) records it first
    assert refusal["source"] in ("dtmf", "fastagi disposition:refused")
    code, decision = env.check(number)
    assert code == 1 and "R-31" in decision["rules"]
    caller.join(15)
    log = env.serve_log.read_text(errors="replace")
    assert "ARI disconnected" in log and "ARI connected" in log
    assert env.password not in log  # credentials never in the logs


def test_refusal_keyed_before_the_listener_is_back(env: Env) -> None:
    """The scenario that lost every refusal (4 runs out of 4): SIGKILL
    Asterisk, keep it down 3 s, start it, and as soon as it is up place an
    answered call on which the agent keys *9, without waiting for the ARI
    listener to reconnect. The disposition route records it synchronously."""
    pbx = env.pbx
    assert pbx.proc is not None
    os.killpg(pbx.proc.pid, signal.SIGKILL)
    pbx.proc.wait()
    pbx.stop()
    time.sleep(3.0)
    pbx.start()
    number = NUMBERS["right-after-boot"]
    with pbx.carrier(response=200):
        assert pbx.call(number, caller_id=CALLER_ID, send_dtmf="*9", hold_ms=800).status == 200
    (refusal,) = env.wait(number, lambda t: bool(t["refusals"]))["refusals"]
    assert refusal["source"] in ("fastagi disposition:refused", "dtmf")
    code, decision = env.check(number)
    assert code == 1 and "R-31" in decision["rules"]
    wait_for(env.ari_ready, 10, "listener reconnected after the test")  # leave the module whole
