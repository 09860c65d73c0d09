"""The ARI listener's bookkeeping: outcomes, refusals, dispositions, resync.

Events are shaped exactly like Asterisk 22's (captured from the real PBX of
tests/pbx), fed to `Listener.handle` one by one against a real SQLite store;
REST calls of the resync go to the fake ARI of test_ari_client. The last test
runs the whole chain over a real websocket, including a dropped connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sentinelle.config import Config, ConfigError, load_config
from sentinelle.config import validate_for_listening as validate
from sentinelle.core.clock import frozen
from sentinelle.pbx.listener import ALLOWED_EVENTS, Listener
from sentinelle.store import Store, open_store, ts
from tests.test_ari_client import PASSWORD, USER, FakeAri, wait_until

T0 = datetime(2026, 11, 29, 9, 24, 42, tzinfo=UTC)
E164 = "+33612345678"


@pytest.fixture
def ari_config(config_path: Path) -> Config:
    text = config_path.read_text() + f"""
[ari]
url = "http://127.0.0.1:9/ari"
user = "{USER}"
password = "{PASSWORD}"
app = "sentinelle"
refusal_dtmf = "*9"
dtmf_gap_s = 3.0
"""
    config_path.write_text(text)
    return load_config(str(config_path))


@pytest.fixture
def db(ari_config: Config) -> Store:
    s = open_store(ari_config.store, create=True)
    yield s
    s.close()


_ids = itertools.count(1)


def new_attempt(store: Store, e164: str = E164, campaign: str = "promo") -> int:
    return store.run(lambda c: c.execute(
        "INSERT INTO attempts (professional, campaign, e164, at) VALUES ('acme', ?, ?, ?)"
        " RETURNING id", (campaign, e164, ts(T0))).fetchone()[0], immediate=True)


class Call:
    """Builds the events of one call: agent channel A dials callee leg B."""

    def __init__(self, attempt: int) -> None:
        n = next(_ids)
        self.attempt = attempt
        self.a = {"id": f"1795944.{2 * n}", "name": f"PJSIP/agent1-{2 * n:08x}", "state": "Ring"}
        self.b = {"id": f"1795944.{2 * n + 1}", "name": f"PJSIP/trunk-{2 * n + 1:08x}", "state": "Down"}
        self.t = T0

    def _ev(self, kind: str, dt: float = 0.1, **fields: Any) -> dict[str, Any]:
        self.t += timedelta(seconds=dt)
        stamp = self.t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.t.microsecond // 1000:03d}+0000"
        return {"type": kind, "timestamp": stamp, "application": "sentinelle", **fields}

    def attempt_event(self) -> dict[str, Any]:
        return self._ev("ChannelUserevent", channel=dict(self.a), eventname="SentinelleAttempt",
                        userevent={"eventname": "SentinelleAttempt", "attempt": str(self.attempt),
                                   "number": "0612345678", "campaign": "promo"})

    def dial(self, status: str = "") -> dict[str, Any]:
        return self._ev("Dial", caller=dict(self.a), peer=dict(self.b), dialstatus=status,
                        dialstring="0612345678@trunk", forward="")

    def state(self, who: str, state: str) -> dict[str, Any]:
        chan = self.a if who == "a" else self.b
        chan["state"] = state
        return self._ev("ChannelStateChange", channel=dict(chan))

    def dtmf(self, digit: str, who: str = "a", dt: float = 0.2) -> dict[str, Any]:
        return self._ev("ChannelDtmfReceived", dt=dt, channel=dict(self.a if who == "a" else self.b),
                        digit=digit, duration_ms=160)

    def disposition(self, code: str, attempt: str | None = None) -> dict[str, Any]:
        return self._ev("ChannelUserevent", channel=dict(self.a), eventname="SentinelleDisposition",
                        userevent={"eventname": "SentinelleDisposition",
                                   "attempt": str(self.attempt) if attempt is None else attempt,
                                   "code": code})

    def destroyed(self, who: str, cause: int, text: str) -> dict[str, Any]:
        chan = self.a if who == "a" else self.b
        return self._ev("ChannelDestroyed", channel=dict(chan), cause=cause, cause_txt=text)

    def answered(self) -> list[dict[str, Any]]:
        return [self.attempt_event(), self.dial(), self.state("b", "Ringing"), self.dial("RINGING"),
                self.state("b", "Up"), self.dial("ANSWER"), self.state("a", "Up")]

    def hangup(self) -> list[dict[str, Any]]:
        return [self.destroyed("a", 16, "Normal Clearing"), self.destroyed("b", 16, "Normal Clearing")]

    def failed(self, status: str, cause: int, text: str) -> list[dict[str, Any]]:
        return [self.attempt_event(), self.dial(), self.state("b", "Ringing"), self.dial("RINGING"),
                self.dial(status), self.destroyed("b", cause, text), self.destroyed("a", cause, text)]


def feed(listener: Listener, events: list[dict[str, Any]]) -> None:
    async def main() -> None:
        for event in events:
            await listener.handle(event)

    asyncio.run(main())


def run(listener: Listener, coro: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await asyncio.wait_for(coro(), 20)
        finally:
            await listener.close()

    asyncio.run(main())


def when(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def refusals(store: Store) -> list[dict[str, Any]]:
    return store.timeline(E164)["refusals"]


def test_config_validation(ari_config: Config) -> None:
    import dataclasses

    validate(ari_config)
    for key, value in (("refusal_dtmf", "*9x"), ("refusal_dtmf", ""), ("dtmf_gap_s", 0.0),
                       ("url", "pbx:8088"), ("user", ""), ("app", "a b")):
        bad = dataclasses.replace(ari_config, ari=dataclasses.replace(ari_config.ari, **{key: value}))
        with pytest.raises(ConfigError) as info:
            validate(bad)
        assert info.value.key == f"ari.{key}"
    assert {"ChannelDtmfReceived", "ChannelDestroyed", "ChannelUserevent"} <= set(ALLOWED_EVENTS)
    assert "ChannelVarset" not in ALLOWED_EVENTS  # most of the stream otherwise


def test_answered_call_outcome_with_times_and_cause(ari_config: Config, db: Store) -> None:
    listener = Listener(ari_config)
    call = Call(new_attempt(db))
    events = call.answered()
    up = events[4]
    end = call.hangup()
    feed(listener, events + end)
    row = db.attempt(call.attempt)
    assert row["outcome"] == "answered"
    assert when(row["answered_at"]) == datetime.fromisoformat(up["timestamp"])
    assert when(row["ended_at"]) == datetime.fromisoformat(end[-1]["timestamp"])
    assert (row["cause"], row["cause_txt"]) == (16, "Normal Clearing")
    assert listener.watches == {} and listener.channels == {}
    # The same events again (a duplicate delivery) change nothing.
    feed(listener, end)
    assert db.attempt(call.attempt) == row
    asyncio.run(listener.close())


@pytest.mark.parametrize(("status", "cause", "text", "outcome"), [
    ("BUSY", 17, "User busy", "busy"),
    ("NOANSWER", 19, "User alerting, no answer", "no-answer"),
    ("CONGESTION", 34, "Circuit/channel congestion", "failed"),
    ("CANCEL", 16, "Normal Clearing", "no-answer"),
])
def test_unanswered_outcomes(ari_config: Config, db: Store, status: str, cause: int, text: str,
                             outcome: str) -> None:
    listener = Listener(ari_config)
    call = Call(new_attempt(db))
    feed(listener, call.failed(status, cause, text))
    row = db.attempt(call.attempt)
    assert (row["outcome"], row["cause"], row["cause_txt"], row["answered_at"]) == (
        outcome, cause, text, None)
    assert db.count("attempts") == 1  # still an attempt for R-30
    asyncio.run(listener.close())


def test_dtmf_refusal_during_answered_call(ari_config: Config, db: Store) -> None:
    listener = Listener(ari_config)
    call = Call(new_attempt(db))
    events = [call.attempt_event(), call.dial(),
              call.dtmf("*"), call.dtmf("9"),  # before the answer: nobody to refuse
              call.state("b", "Up"), call.dial("ANSWER"),
              call.dtmf("*", who="b"), call.dtmf("9", who="b"),  # callee's keys don't count
              call.dtmf("*"), call.dtmf("9", dt=3.5),  # too slow
              call.dtmf("1"), call.dtmf("*"), call.dtmf("9")]
    feed(listener, events[:-1])
    assert refusals(db) == []
    feed(listener, events[-1:])
    (refusal,) = refusals(db)
    assert (refusal["source"], refusal["attempt_id"], refusal["campaign"]) == ("dtmf", call.attempt, "promo")
    assert when(refusal["at"]) == datetime.fromisoformat(events[-1]["timestamp"])
    # Keyed again, then the agent's disposition for the same call: still one refusal.
    feed(listener, [call.dtmf("*"), call.dtmf("9"), call.disposition("refused"), *call.hangup()])
    assert len(refusals(db)) == 1
    assert db.attempt(call.attempt)["disposition"] == "refused"
    assert listener.refusals == 1
    asyncio.run(listener.close())


def test_custom_refusal_code_and_gap(ari_config: Config, db: Store) -> None:
    import dataclasses

    config = dataclasses.replace(ari_config, ari=dataclasses.replace(
        ari_config.ari, refusal_dtmf="#77", dtmf_gap_s=0.5))
    listener = Listener(config)
    call = Call(new_attempt(db))
    feed(listener, [*call.answered(), call.dtmf("#"), call.dtmf("7"), call.dtmf("7", dt=0.6)])
    assert refusals(db) == []
    feed(listener, [call.dtmf("#"), call.dtmf("7"), call.dtmf("7")])
    assert len(refusals(db)) == 1
    asyncio.run(listener.close())


def test_dispositions(ari_config: Config, db: Store) -> None:
    listener = Listener(ari_config)
    codes = {}
    for code in ("refused", "do-not-call", "callback", "wrong-number"):
        e164 = f"+3361234{len(codes):04d}"
        call = Call(new_attempt(db, e164))
        feed(listener, [*call.answered(), call.disposition(code), *call.hangup()])
        codes[code] = (e164, call.attempt)
    # Unknown code and missing attempt are ignored without harm.
    stray = Call(new_attempt(db, "+33612349999"))
    feed(listener, [stray.attempt_event(), stray.disposition("maybe"), stray.disposition("refused", "")])
    for code, (e164, attempt) in codes.items():
        timeline = db.timeline(e164)
        assert timeline["attempts"][0]["id"] == attempt
        assert timeline["attempts"][0]["disposition"] == code
        assert timeline["attempts"][0]["outcome"] == "answered"
        assert len(timeline["refusals"]) == (1 if code in ("refused", "do-not-call") else 0)
        assert len(timeline["optouts"]) == (1 if code == "do-not-call" else 0)
        if timeline["refusals"]:
            assert timeline["refusals"][0]["source"] == f"disposition:{code}"
    # "refused" with an empty attempt field falls back to the channel's attempt.
    stray_t = db.timeline("+33612349999")
    assert len(stray_t["refusals"]) == 1 and stray_t["attempts"][0]["disposition"] == "refused"
    asyncio.run(listener.close())


def test_frozen_clock_shifts_instants(ari_config: Config, db: Store) -> None:
    at = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    listener = Listener(ari_config, frozen(at))
    call = Call(new_attempt(db))
    event = call.attempt_event()
    event["timestamp"] = datetime.now(UTC).isoformat()
    assert abs(listener.when(event) - at) < timedelta(seconds=2)
    asyncio.run(listener.close())


def test_resync_closes_calls_that_ended_during_the_gap(ari_config: Config, db: Store) -> None:
    async def scenario(fake: FakeAri, listener: Listener) -> None:
        gone, stays, ringing = (Call(new_attempt(db, f"+3361234500{i}")) for i in range(3))
        for ev in (*gone.answered(), *stays.answered(), ringing.attempt_event(), ringing.dial()):
            await listener.handle(ev)
        # While we were away: `gone` ended, `stays` goes on, `ringing`'s callee
        # leg ended but its agent is still there, and a new call started whose
        # announcement we missed (its channel carries SENTINELLE_ATTEMPT).
        missed = Call(new_attempt(db, "+33612345009"))
        unseen = new_attempt(db, "+33612345010")  # recorded and finished unseen
        fake.channels = [stays.a, stays.b, ringing.a,
                         {**missed.a, "state": "Up", "dialplan": {"app_name": "Dial"}},
                         {**missed.b, "state": "Up", "dialplan": {"app_name": "AppDial"}}]
        fake.variables = {missed.a["id"]: {"SENTINELLE_ATTEMPT": str(missed.attempt)},
                          missed.b["id"]: {"SENTINELLE_ATTEMPT": str(missed.attempt)}}
        await listener.resync(listener.client)
        assert db.attempt(gone.attempt)["outcome"] == "unknown"
        assert db.attempt(gone.attempt)["answered_at"] is not None  # known before the gap
        assert db.attempt(unseen)["outcome"] == "unknown"
        for call in (stays, ringing, missed):
            assert db.attempt(call.attempt)["outcome"] is None
        assert set(listener.watches) == {stays.attempt, ringing.attempt, missed.attempt}
        # The missed call is followed from now on: its agent keys *9, then hangs up.
        for ev in (missed.dtmf("*"), missed.dtmf("9"), *missed.hangup(),
                   ringing.destroyed("a", 16, "Normal Clearing")):
            await listener.handle(ev)
        assert len(db.timeline("+33612345009")["refusals"]) == 1
        assert db.attempt(missed.attempt)["outcome"] == "answered"
        assert db.attempt(ringing.attempt)["outcome"] == "no-answer"

    fake = FakeAri()
    listener = Listener(ari_config, client=_client(fake))
    listener.last_seen = T0
    run(listener, lambda: scenario(fake, listener))


def _client(fake: FakeAri) -> Any:
    from sentinelle.pbx.ari import AriClient

    return AriClient(fake.url if fake.port else "http://127.0.0.1:9", USER, PASSWORD, "sentinelle",
                     allowed_events=ALLOWED_EVENTS, transport=fake.transport)


def test_over_a_real_websocket_with_a_dropped_connection(ari_config: Config, db: Store) -> None:
    """The whole chain: events over the websocket, a crash of the stream in
    the middle of a call, resync, and the call closed as unknown."""

    async def scenario() -> None:
        fake = await FakeAri().start()
        listener = Listener(ari_config, client=_client(fake))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.client.connected.wait(), 5)
            assert fake.filters()[0] == {"allowed": [{"type": t} for t in ALLOWED_EVENTS]}
            done, cut = Call(new_attempt(db)), Call(new_attempt(db))
            now = datetime.now(UTC)
            done.t = cut.t = now
            for ev in (*done.answered(), done.dtmf("*"), done.dtmf("9"), *done.hangup(), *cut.answered()):
                await fake.send(ev)
            await wait_until(lambda: cut.attempt in listener.watches and not listener.watches[
                cut.attempt].live ^ {cut.a["id"], cut.b["id"]} and listener.outcomes == 1)
            assert db.attempt(done.attempt)["outcome"] == "answered"
            assert len(refusals(db)) == 1
            fake.abort()  # Asterisk crashed: `cut`'s channels are gone with it
            await wait_until(lambda: listener.client.connects == 2)
            assert db.attempt(cut.attempt)["outcome"] == "unknown"
            assert len(fake.filters()) == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await listener.close()
            await fake.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_second_check_on_the_same_agent_channel(ari_config: Config, db: Store) -> None:
    """A dialplan that retries another number on the same agent channel: the
    first attempt ends when the second one is announced."""
    listener = Listener(ari_config)
    first = Call(new_attempt(db, "+33612345011"))
    second = Call(new_attempt(db, "+33612345012"))
    second.a = first.a  # same agent channel
    feed(listener, first.failed("BUSY", 17, "User busy")[:-1])  # the agent channel stays
    assert db.attempt(first.attempt)["outcome"] is None
    second.t = first.t
    feed(listener, [second.attempt_event(), second.dial(), second.state("b", "Up"), *second.hangup()])
    assert db.attempt(first.attempt)["outcome"] == "busy"
    assert db.attempt(second.attempt)["outcome"] == "answered"
    asyncio.run(listener.close())


def test_listen_command(ari_config: Config, tmp_path: Path) -> None:
    """`sentinelle listen`: exit 2 without [ari] url; otherwise it keeps
    retrying an unreachable ARI quietly and stops on SIGTERM, secrets unlogged."""
    import signal
    import subprocess
    import sys
    import time

    exe = str(Path(sys.executable).with_name("sentinelle"))
    bare = tmp_path / "bare.toml"
    bare.write_text('[store]\npath = "x.db"\n')
    res = subprocess.run([exe, "--config", str(bare), "listen"], capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode == 2 and "ari.url" in res.stderr
    config = Path(ari_config.source)
    res = subprocess.run([exe, "--config", str(config), "listen", "--check-config"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    import threading

    proc = subprocess.Popen([exe, "--config", str(config), "listen"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    # Stopped once it has said it keeps retrying (a loaded machine may take
    # seconds to start it), not after a fixed time.
    deadline = time.monotonic() + 30
    while not any("ARI unreachable" in line for line in lines) and time.monotonic() < deadline:
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0
    assert "ARI unreachable" in out and "ARI client stopped" in out
    assert PASSWORD not in out
