"""The FastAGI service against a fake Asterisk (fast); tests/e2e repeats the
important paths on a real Asterisk."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from sentinelle.config import Config
from sentinelle.core.clock import frozen
from sentinelle.pbx.agi import ascii_safe, is_masked
from sentinelle.pbx.server import FastAgiServer
from sentinelle.store import ConsentProof, Store, open_store
from sentinelle.store.hot import HotPath
from tests.helpers.fakeasterisk import call, classic_stdin, headers_for

PARIS = ZoneInfo("Europe/Paris")
TUESDAY = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)


def _serve(config: Config, at: datetime = TUESDAY, **server: object) -> FastAgiServer:
    sc = dataclasses.replace(config.server, listen="127.0.0.1:0", **server)
    return FastAgiServer(dataclasses.replace(config, server=sc), frozen(at))


def _consent(store: Store, e164: str) -> None:
    store.add_consent("acme", e164, ConsentProof(source="web", given_at=datetime(2026, 11, 1,
                                                                                   tzinfo=PARIS)))


def _one_call(config: Config, headers: dict[str, str], **kwargs: object):
    """Start a server, run one fake-Asterisk session, stop the server."""
    async def scenario():
        srv = _serve(config)
        _, port = await srv.start()
        try:
            return await call(port, headers, **kwargs)
        finally:
            await srv.stop()

    return asyncio.run(scenario())


def run(coro):
    return asyncio.run(coro)


def test_allowed_call_is_recorded_and_verdict_set_last(config, store):
    _consent(store, "+33612345678")

    res = _one_call(config, headers_for("0612345678"))
    assert res.verdict == "ALLOW"
    assert res.variables.get("SENTINELLE_RULES", "") == ""
    attempt = int(res.variables.get("SENTINELLE_ATTEMPT", ""))
    assert store.attempt(attempt)["e164"] == "+33612345678"
    assert res.commands[-1].startswith("SET VARIABLE SENTINELLE_VERDICT")
    assert store.count("decisions") == 1
    # issue #10 item 6: the service's decisions say they came through FastAGI
    (decision,) = store.timeline("+33612345678")["decisions"]
    assert decision["source"] == "fastagi"


def test_blocked_without_consent_sets_rule_and_no_attempt(config, store):
    res = _one_call(config, headers_for("0612345678"))
    assert res.verdict == "BLOCK"
    assert res.variables.get("SENTINELLE_RULES", "") == "R-11"
    assert res.variables.get("SENTINELLE_ATTEMPT", "") == ""
    assert store.count("attempts") == 0


def test_campaign_from_channel_variable_when_no_argument(config, store):
    _consent(store, "+33612345678")

    async def scenario():
        srv = _serve(config)
        _, port = await srv.start()
        try:
            return await call(port, headers_for("0612345678", campaign=None),
                              variables={"SENTINELLE_CAMPAIGN": "promo"})
        finally:
            await srv.stop()

    res = run(scenario())
    assert "GET VARIABLE SENTINELLE_CAMPAIGN" in res.commands
    assert res.verdict == "ALLOW"


def test_masked_presentation_is_R40(config, store):
    _consent(store, "+33612345678")

    res = _one_call(config, headers_for("0612345678", callingpres=0x21))
    assert res.verdict == "BLOCK"
    assert "R-40" in res.variables.get("SENTINELLE_RULES", "").split(",")


@pytest.mark.sqlite_only
def test_missing_store_fails_closed_then_recovers(config, tmp_path):
    """No store file: BLOCK with SYS-STORE; once created, the same server allows."""
    async def scenario():
        srv = _serve(config)
        _, port = await srv.start()
        try:
            first = await call(port, headers_for("0612345678"))
            s = open_store(config.store, create=True)
            _consent(s, "+33612345678")
            s.close()
            second = await call(port, headers_for("0612345678"))
            return first, second
        finally:
            await srv.stop()

    first, second = run(scenario())
    assert first.verdict == "BLOCK" and first.variables.get("SENTINELLE_RULES", "") == "SYS-STORE"
    assert second.verdict == "ALLOW"


def test_connect_close_and_silent_clients_do_not_hurt_others(config, store):
    """A TCP health check (connect + close) and idle clients past the header
    deadline leave the service answering promptly."""
    _consent(store, "+33612345678")

    async def scenario():
        srv = _serve(config, header_timeout_s=0.3)
        _, port = await srv.start()
        try:
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", port)):
                    pass
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            res = await call(port, headers_for("0612345678"))
            elapsed = loop.time() - t0
            await asyncio.sleep(0.5)  # idle ones hit the header deadline and are closed
            closed = [await r.read() == b"" for r, _ in idle]
            for _, w in idle:
                w.close()
            return res, elapsed, closed, srv.stats
        finally:
            await srv.stop()

    res, elapsed, closed, stats = run(scenario())
    assert res.verdict == "ALLOW"
    assert elapsed < 0.25
    assert all(closed)
    assert stats.bad_headers >= 20


def test_unknown_route_and_garbage_are_dropped_without_verdict(config, store):
    async def scenario():
        srv = _serve(config)
        _, port = await srv.start()
        try:
            wrong = await call(port, headers_for("0612345678", script="other"))
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"\x00\xff" * 5000 + b"\n\n")
            await w.drain()
            garbage = await asyncio.wait_for(r.read(), 3)
            w.close()
            ok = await call(port, headers_for("112"))
            return wrong, garbage, ok
        finally:
            await srv.stop()

    wrong, garbage, ok = run(scenario())
    assert wrong.verdict is None and wrong.closed_by_server
    assert garbage == b""
    assert ok.verdict == "ALLOW"  # R-00 still answered after the bad clients


def test_routes_are_dispatched_by_name(config, store, monkeypatch):
    """A new route is a module and a line in pbx.routes.ROUTES: the server
    hands it the request's headers and channel, bounded by the deadline."""
    from sentinelle.pbx.routes import ROUTES

    async def hello(session):
        late = await session.bounded(asyncio.sleep(10))  # past server.request_timeout_s
        await session.agi.set_variable("SENTINELLE_REASON", f"hello {session.headers['agi_arg_1']}")
        assert late is None

    monkeypatch.setitem(ROUTES, "hello", hello)

    async def scenario():
        srv = _serve(config, request_timeout_s=0.2)
        _, port = await srv.start()
        try:
            return await call(port, headers_for("0612345678", script="hello")), srv.stats
        finally:
            await srv.stop()

    res, stats = run(scenario())
    assert res.commands == ['SET VARIABLE SENTINELLE_REASON "hello 0612345678"']
    assert res.verdict is None and stats.timeouts == 1 and store.count("decisions") == 0


def test_peer_outside_allow_list_is_refused(config, store):
    async def scenario():
        srv = _serve(config, allow=("192.0.2.0/24",))
        _, port = await srv.start()
        try:
            return await call(port, headers_for("112")), srv.stats.refused
        finally:
            await srv.stop()

    res, refused = run(scenario())
    assert res.verdict is None and refused == 1


def test_agi_error_replies_end_the_request_without_allow(config, store):
    """Asterisk answering 520/HANGUP/-1 to SET VARIABLE: the service stops
    talking; the dialplan sees no ALLOW and hangs up."""
    _consent(store, "+33612345678")

    async def scenario(reply):
        srv = _serve(config)
        _, port = await srv.start()
        try:
            return await call(port, headers_for("0612345678"), reply=reply)
        finally:
            await srv.stop()

    for reply in ("200 result=-1", "HANGUP", "511 Command Not Permitted on a dead channel",
                  "520 End of proper usage.", "garbage"):
        res = run(scenario(reply))
        assert len(res.commands) == 1, reply
        assert res.verdict is None


@pytest.mark.parametrize("value", ['a"b', "x\nHANGUP", "é\\\r\n", "\x00\x1b[31m"])
def test_values_written_back_cannot_inject(value):
    safe = ascii_safe(value)
    assert "\n" not in safe and "\r" not in safe and '"' not in safe and "\\" not in safe
    assert all(32 <= ord(c) < 127 for c in safe)


def test_injected_caller_id_and_campaign_never_produce_extra_commands(config, store):
    async def scenario():
        srv = _serve(config)
        _, port = await srv.start()
        try:
            h = headers_for("0612345678", callerid='016200"0000 HANGUP', campaign='promo" EXEC')
            return await call(port, h)
        finally:
            await srv.stop()

    res = run(scenario())
    assert all(c.startswith("SET VARIABLE SENTINELLE_") for c in res.commands)
    names = [c.split()[2] for c in res.commands]
    # Only non-empty values are sent (the dialplan cleared them), each once, VERDICT last.
    assert len(names) == len(set(names)) <= 5 and names[-1] == "SENTINELLE_VERDICT"
    assert "SENTINELLE_RULES" in names and "SENTINELLE_REASON" in names
    assert res.verdict == "BLOCK"


@pytest.mark.parametrize(("pres", "callerid", "masked"), [
    ("0", "0162000000", False), ("1", "0162000000", False), ("32", "0162000000", True),
    ("35", "0162000000", True), ("67", "0162000000", True), ("0", "", True),
    ("prohib", "0162000000", True), ("allowed", "0162000000", False), ("0", "anonymous", True),
    ("0", "private", True), ("0", "Restricted", True), ("0", "unknown", True),
])
def test_masked_detection(pres, callerid, masked):
    assert is_masked({"agi_callingpres": pres, "agi_callerid": callerid}) is masked


def test_masked_words_are_the_rules_words():
    """One list for the AGI header check and R-40: every word the rules call
    masked is masked on the PBX path too."""
    from sentinelle.core.model import MASKED_CALLER_IDS

    assert "private" in MASKED_CALLER_IDS
    for word in MASKED_CALLER_IDS:
        assert is_masked({"agi_callingpres": "0", "agi_callerid": word.upper()})


def test_private_caller_id_is_masked_on_the_pbx_path(config, store):
    """`agi_callerid: private` is a withheld number: R-40, and the decision log
    records the call as masked (no caller ID), not as a caller ID "private"."""
    _consent(store, "+33612345678")

    res = _one_call(config, headers_for("0612345678", callerid="private"))
    assert res.verdict == "BLOCK"
    assert "R-40" in res.variables.get("SENTINELLE_RULES", "").split(",")
    (decision,) = store.timeline("+33612345678")["decisions"]
    assert decision["caller_id"] is None
    assert json.loads(decision["inputs"])["masked"] is True


def test_classic_agi_on_stdin_stdout(config_path, store, tmp_path):
    """`sentinelle agi`: one process per call, same answer as the FastAGI route."""
    import subprocess
    import sys
    from pathlib import Path

    _consent(store, "+33612345678")
    stdin = classic_stdin("0612345678")
    exe = Path(sys.executable).parent / "sentinelle"
    r = subprocess.run([str(exe), "--config", str(config_path), "agi", "--at",
                        TUESDAY.isoformat()], input=stdin, capture_output=True, text=True,
                       timeout=60)
    lines = r.stdout.splitlines()
    assert lines[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"', r.stderr
    assert lines[-2] == 'SET VARIABLE SENTINELLE_ATTEMPT "1"'
    assert store.count("attempts") == 1
    (decision,) = store.timeline("+33612345678")["decisions"]
    assert decision["source"] == "agi"


def test_fail_open_campaign_allows_on_store_fault_but_not_on_law(config, tmp_path):
    """`fail_open` is the admin's explicit choice for sentinelle's own faults
    (SYS-STORE...), never for a legal finding."""
    campaigns = dict(config.campaigns)
    campaigns["promo"] = dataclasses.replace(campaigns["promo"], fail_open=True)
    cfg = dataclasses.replace(config, campaigns=campaigns)

    async def scenario(number, callerid="0162000000"):
        srv = _serve(cfg)
        _, port = await srv.start()
        try:
            return await call(port, headers_for(number, callerid=callerid))
        finally:
            await srv.stop()

    res = run(scenario("0612345678"))  # no store file at all
    assert res.verdict == "ALLOW" and res.variables.get("SENTINELLE_RULES", "") == ""
    assert "SYS-STORE fail-open" in res.variables.get("SENTINELLE_REASON", "")
    res = run(scenario("06ABC"))  # R-01 is the law's, not a fault: still blocked
    assert res.verdict == "BLOCK"


def test_sentinelle_agi_entry_point_as_asterisk_runs_it(config_path, store, tmp_path):
    """AGI(/path/sentinelle-agi,NUMBER,CAMPAIGN): argv carries the call's
    arguments (ignored, the headers count) and the config comes from the
    environment. A `service` campaign keeps the answer independent of today's
    date (no hours rules)."""
    import subprocess
    import sys
    from pathlib import Path

    stdin = classic_stdin("0612345678", campaign="service")
    exe = Path(sys.executable).parent / "sentinelle-agi"
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([str(exe), "0612345678", "service"], input=stdin, capture_output=True,
                       text=True, timeout=60, env=env, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'
    assert store.count("decisions") == 1


@pytest.mark.sqlite_only
def test_serve_checkpoints_the_wal_off_the_check_path(config, tmp_path, monkeypatch):
    """Under `serve`, the check connection never checkpoints (wal_autocheckpoint=0)
    and a background checkpointer keeps the WAL bounded; SIGTERM stops it."""
    import os
    import signal

    from sentinelle.service import serve as service
    from sentinelle.store import Checkpointer

    made: list[Checkpointer] = []

    class Recording(Checkpointer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(service, "Checkpointer", Recording)
    monkeypatch.setattr(service, "CHECKPOINT_INTERVAL_S", 0.05)
    monkeypatch.setattr(service, "WAL_TRUNCATE_BYTES", 256 * 1024)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = dataclasses.replace(config, server=dataclasses.replace(
        config.server, listen=f"127.0.0.1:{port}"))
    wal = tmp_path / "wal-test.db-wal"
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store,
                                                             path=str(tmp_path / "wal-test.db")))
    sizes: list[int] = []

    async def scenario():
        ready = asyncio.Event()
        serving = asyncio.create_task(service.run(cfg, at=TUESDAY, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        n = 0
        for _batch in range(6):
            for _ in range(60):
                n += 1
                res = await call(port, headers_for(f"06{12000000 + n:08d}", campaign="service"))
                assert res.verdict == "ALLOW"
            sizes.append(wal.stat().st_size)
            await asyncio.sleep(0.15)
        os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler: a clean stop
        await asyncio.wait_for(serving, 10)

    run(scenario())
    (ckpt,) = made
    assert ckpt.runs >= 6 and ckpt.errors == 0 and ckpt.truncations >= 1, vars(ckpt)
    assert ckpt._thread is None  # stopped and joined
    # Without the checkpointer the WAL would only grow: 360 checks of about
    # 8 pages each, 12 MB. With it, it is truncated back between batches,
    # so it never holds much more than one batch: 60 checks, 2 MB if no
    # checkpoint ran during the batch (a fast machine may make all 60 within
    # one interval). 0.9 MB at most in three runs here.
    assert max(sizes) < 4 * 1024 * 1024, sizes
    assert wal.stat().st_size < 256 * 1024 if wal.exists() else True
    with open_store(cfg.store) as st:
        assert st.count("decisions") == 360


def test_timeout_honours_a_fail_open_campaign_given_by_channel_variable(config, store,
                                                                       monkeypatch):
    """The campaign named by SENTINELLE_CAMPAIGN (AGI argument 2 empty) is the
    call's campaign on every path: a check that misses its deadline answers
    for that campaign too, so its fail_open choice is honoured (it used to be
    dropped on the timeout path, which then answered for no campaign)."""
    import threading

    campaigns = dict(config.campaigns)
    campaigns["promo"] = dataclasses.replace(campaigns["promo"], fail_open=True)
    cfg = dataclasses.replace(config, campaigns=campaigns)
    _consent(store, "+33612345678")
    released = threading.Event()
    slow_check = HotPath.check_and_record

    def stuck(self, *args, **kwargs):  # a store that hangs past the request's deadline
        released.wait(5)
        return slow_check(self, *args, **kwargs)

    monkeypatch.setattr(HotPath, "check_and_record", stuck)

    async def scenario():
        srv = _serve(cfg, request_timeout_s=0.3)
        _, port = await srv.start()
        try:
            return await call(port, headers_for("0612345678", campaign=None),
                              variables={"SENTINELLE_CAMPAIGN": "promo"}), srv.stats
        finally:
            released.set()
            await srv.stop()

    res, stats = run(scenario())
    assert "GET VARIABLE SENTINELLE_CAMPAIGN" in res.commands
    assert stats.timeouts == 1
    assert res.verdict == "ALLOW" and res.variables.get("SENTINELLE_RULES", "") == ""
    assert "SYS-TIMEOUT fail-open" in res.variables.get("SENTINELLE_REASON", "")


def test_the_service_settles_the_gc_for_its_life_and_restores_it():
    """What start-up built is frozen out of the collector's sight and young
    objects are collected less often while the service runs (see
    `serve.settled_gc`); the process gets its GC back when it stops."""
    import gc

    from sentinelle.service import serve as service

    before = gc.get_threshold()
    with service.settled_gc():
        assert gc.get_threshold() == service.GC_THRESHOLD != before
        assert gc.get_freeze_count() > 1000
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
