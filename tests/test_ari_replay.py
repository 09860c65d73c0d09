"""ARI traffic recorded from Asterisk 22, replayed through the listener.

tests/fixtures/ari/*.jsonl are the events a real Asterisk sent for one call
each, recorded by `sentinelle serve` during the end-to-end run
(tests/e2e/test_ari_e2e.py; SENTINELLE_WRITE_ARI_FIXTURES=1 rewrites them).
Here they go, line by line as recorded, over a real websocket into the
real AriClient and Listener, against a real SQLite store: what the listener
records must be what the real call was (panoramisk tests its AMI parsing
the same way). No Asterisk needed, a few milliseconds per call.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sentinelle.config import Config, load_config
from sentinelle.pbx import recording
from sentinelle.pbx.ari import AriClient
from sentinelle.pbx.listener import ALLOWED_EVENTS, Listener
from sentinelle.store import Store, open_store, ts
from tests.test_ari_client import PASSWORD, USER, FakeAri, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "ari"

# What each recorded call was (tests/e2e/test_ari_e2e.py made them so).
EXPECTED: dict[str, dict[str, Any]] = {
    "answered": {"outcome": "answered", "cause": 16, "refusal": None, "disposition": None},
    "answered-dtmf-refusal": {"outcome": "answered", "cause": 16, "refusal": "dtmf",
                              "disposition": None},
    "disposition-refused": {"outcome": "answered", "cause": 16, "refusal": "disposition:refused",
                            "disposition": "refused"},
    "disposition-do-not-call": {"outcome": "answered", "cause": 16,
                                "refusal": "disposition:do-not-call", "disposition": "do-not-call",
                                "optout": True},
    "busy": {"outcome": "busy", "cause": 17, "refusal": None, "disposition": None},
    "no-answer": {"outcome": "no-answer", "cause": 19, "refusal": None, "disposition": None},
}


@pytest.fixture
def ari_config(config_path: Path) -> Config:
    config_path.write_text(config_path.read_text() + f"""
[ari]
url = "http://127.0.0.1:9/ari"
user = "{USER}"
password = "{PASSWORD}"
app = "sentinelle"
refusal_dtmf = "*9"
dtmf_gap_s = 3.0
""")
    return load_config(str(config_path))


@pytest.fixture
def db(ari_config: Config) -> Iterator[Store]:
    s = open_store(ari_config.store, create=True)
    yield s
    s.close()


def instant(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def the_attempt(events: list[dict[str, Any]]) -> tuple[int, str, dict[str, Any]]:
    """The attempt the recorded call announced: id, callee, and the event."""
    (announce,) = [e for e in events if e.get("eventname") == "SentinelleAttempt"]
    fields = announce["userevent"]
    return int(fields["attempt"]), "+33" + fields["number"][1:], announce


def replay(config: Config, lines: list[str], done: int) -> Listener:
    """Send `lines` as Asterisk did, until the listener recorded `done` outcomes."""
    async def scenario() -> Listener:
        fake = await FakeAri().start()
        client = AriClient(fake.url, USER, PASSWORD, "sentinelle", allowed_events=ALLOWED_EVENTS,
                           transport=fake.transport)
        listener = Listener(config, client=client)
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(client.connected.wait(), 5)
            for line in lines:
                await fake.live.send(line)
            await wait_until(lambda: listener.outcomes == done)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await listener.close()
            await fake.stop()
        return listener

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_every_fixture_has_its_expectations_and_stays_small() -> None:
    names = {p.stem for p in FIXTURES.glob("*.jsonl")}
    assert names == set(EXPECTED)
    for path in FIXTURES.glob("*.jsonl"):
        assert path.stat().st_size < 50_000, path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_call_replayed(name: str, ari_config: Config, db: Store) -> None:
    want = EXPECTED[name]
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    attempt_id, e164, announce = the_attempt(events)
    db.run(lambda c: c.execute(
        "INSERT INTO attempts (id, professional, campaign, e164, at) VALUES (?, 'acme', ?, ?, ?)",
        (attempt_id, announce["userevent"]["campaign"], e164, ts(instant(announce)))),
        immediate=True)

    listener = replay(ari_config, lines, done=1)

    timeline = db.timeline(e164)
    (attempt,) = timeline["attempts"]
    assert (attempt["outcome"], attempt["cause"]) == (want["outcome"], want["cause"])
    assert attempt["disposition"] == want["disposition"]
    ended = datetime.fromisoformat(attempt["ended_at"])
    assert ended == max(instant(e) for e in events if e["type"] == "ChannelDestroyed")
    if want["outcome"] == "answered":
        answered = datetime.fromisoformat(attempt["answered_at"])
        assert instant(announce) <= answered < ended
    else:
        assert attempt["answered_at"] is None
    refusals = timeline["refusals"]
    assert [r["source"] for r in refusals] == ([want["refusal"]] if want["refusal"] else [])
    assert all(r["attempt_id"] == attempt_id for r in refusals)
    assert listener.refusals == len(refusals)
    assert len(timeline["optouts"]) == (1 if want.get("optout") else 0)


def test_dtmf_refusal_is_dated_by_its_last_key(ari_config: Config, db: Store) -> None:
    lines = (FIXTURES / "answered-dtmf-refusal.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    attempt_id, e164, announce = the_attempt(events)
    db.run(lambda c: c.execute(
        "INSERT INTO attempts (id, professional, campaign, e164, at) VALUES (?, 'acme', 'promo', ?, ?)",
        (attempt_id, e164, ts(instant(announce)))), immediate=True)
    replay(ari_config, lines, done=1)
    keys = [e for e in events if e["type"] == "ChannelDtmfReceived"]
    assert "".join(e["digit"] for e in keys) == "*9"
    (refusal,) = db.timeline(e164)["refusals"]
    assert datetime.fromisoformat(refusal["at"]) == instant(keys[-1])


# -- the recorder ----------------------------------------------------------------

def test_recorder_writes_every_event_received(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$SENTINELLE_ARI_RECORD: each event the client receives is appended as
    one JSON line before the handler sees it, in a private file; non-JSON
    messages are not events and are not recorded."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"Earlier"}\n')  # appended to, never truncated
    monkeypatch.setenv(recording.RECORD_ENV, str(path))
    events = [{"type": "Dial", "dialstatus": "ANSWER", "caller": {"id": "1.2", "name": "é"}},
              {"type": "ChannelDestroyed", "cause": 16}]
    seen: list[dict[str, Any]] = []

    async def scenario() -> None:
        fake = await FakeAri().start()
        recorder = recording.from_env()
        assert recorder is not None
        client = AriClient(fake.url, USER, PASSWORD, "sentinelle", transport=fake.transport,
                           recorder=recorder)

        async def on_event(event: dict[str, Any]) -> None:
            seen.append(event)

        task = asyncio.create_task(client.run(on_event))
        try:
            await asyncio.wait_for(client.connected.wait(), 5)
            await fake.live.send("not json")
            for event in events:
                await fake.send(event)
            await wait_until(lambda: len(seen) == 2)
        finally:
            await client.aclose()
            await asyncio.gather(task, return_exceptions=True)
            await fake.stop()
        assert recorder.events == 2

    asyncio.run(asyncio.wait_for(scenario(), 20))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"type": "Earlier"}, *events]


def test_recorder_off_by_default_and_never_fatal(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(recording.RECORD_ENV, raising=False)
    assert recording.from_env() is None
    monkeypatch.setenv(recording.RECORD_ENV, str(tmp_path / "no-such-dir" / "events.jsonl"))
    assert recording.from_env() is None  # logged; the listener runs without it
    recorder = recording.EventRecorder(str(tmp_path / "r.jsonl"))
    assert stat.S_IMODE(os.stat(tmp_path / "r.jsonl").st_mode) == 0o600  # numbers inside
    recorder.write({"type": "X", "bad": object()})  # not JSON: recording stops, no exception
    recorder.write({"type": "Y"})
    assert recorder.events == 0
