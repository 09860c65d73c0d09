"""The FastAGI `disposition` route records an agent's refusal before it
answers, so no refusal depends on the ARI listener (fake Asterisk here; the
real one in tests/e2e)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinelle.config import Config
from sentinelle.core.clock import frozen
from sentinelle.pbx.server import FastAgiServer
from sentinelle.store import ConsentProof, Store
from tests.helpers.fakeasterisk import call, headers_for

PARIS = ZoneInfo("Europe/Paris")
TUESDAY = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)
NUMBER = "0612345678"


def session(config: Config, *calls: dict[str, str]):
    """Run fake-Asterisk sessions one after another against one server."""
    async def scenario():
        sc = dataclasses.replace(config.server, listen="127.0.0.1:0")
        srv = FastAgiServer(dataclasses.replace(config, server=sc), frozen(TUESDAY))
        _, port = await srv.start()
        try:
            return [await call(port, headers) for headers in calls]
        finally:
            await srv.stop()

    return asyncio.run(scenario())


def disposition(code: str, attempt: str) -> dict[str, str]:
    return headers_for(code, campaign=attempt, script="disposition")


def allowed_attempt(config: Config, store: Store) -> str:
    store.add_consent("acme", "+33612345678", ConsentProof(
        source="web", given_at=datetime(2026, 11, 1, tzinfo=PARIS)))
    (check,) = session(config, headers_for(NUMBER))
    assert check.verdict == "ALLOW"
    return check.variables["SENTINELLE_ATTEMPT"]


def test_a_refusal_is_in_the_store_when_the_route_answers(config, store):
    attempt = allowed_attempt(config, store)
    first, again = session(config, disposition("refused", attempt), disposition("refused", attempt))
    assert first.variables["SENTINELLE_DISPOSITION"] == "OK"
    assert list(first.variables)[-1] == "SENTINELLE_DISPOSITION"  # the status goes last
    assert again.variables["SENTINELLE_DISPOSITION"] == "OK"  # keyed twice: one refusal
    timeline = store.timeline("+33612345678")
    (refusal,) = timeline["refusals"]
    assert refusal["attempt_id"] == int(attempt) and "fastagi" in refusal["source"]
    assert timeline["attempts"][0]["disposition"] == "refused"
    (blocked,) = session(config, headers_for(NUMBER))
    assert blocked.verdict == "BLOCK" and "R-31" in blocked.variables["SENTINELLE_RULES"]


def test_do_not_call_also_goes_on_the_opposition_list(config, store):
    attempt = allowed_attempt(config, store)
    (r,) = session(config, disposition("do-not-call", attempt))
    assert r.variables["SENTINELLE_DISPOSITION"] == "OK"
    assert store.timeline("+33612345678")["optouts"]


def test_errors_are_said_so_the_agent_hears_them(config, store, tmp_path):
    attempt = allowed_attempt(config, store)
    no_attempt, unknown, bad_code = session(
        config, disposition("refused", ""), disposition("refused", "999999"),
        disposition("maybe", attempt))
    for r in (no_attempt, unknown, bad_code):
        assert r.variables["SENTINELLE_DISPOSITION"] == "ERROR", r.variables
    assert "no attempt id" in no_attempt.variables["SENTINELLE_REASON"]
    assert not store.timeline("+33612345678")["refusals"]
    gone = dataclasses.replace(config, store=dataclasses.replace(
        config.store, path=str(Path(tmp_path) / "missing" / "sentinelle.db"),
        url="postgresql://sentinelle@127.0.0.1:9/none" if config.store.url else ""))
    (down,) = session(gone, disposition("refused", attempt))
    assert down.variables["SENTINELLE_DISPOSITION"] == "ERROR"
    assert "store" in down.variables["SENTINELLE_REASON"]


@pytest.mark.sqlite_only
def test_a_refusal_waits_for_a_store_locked_by_another_writer(config, store):
    """The server first tries store work inline without waiting; a refusal
    that meets another writer's lock there (the ARI listener filing an
    outcome, an import) must wait its turn in the store thread, not be
    answered ERROR and lost."""
    import sqlite3
    import threading

    attempt = allowed_attempt(config, store)

    async def scenario():
        sc = dataclasses.replace(config.server, listen="127.0.0.1:0")
        srv = FastAgiServer(dataclasses.replace(config, server=sc), frozen(TUESDAY))
        _, port = await srv.start()
        try:
            await call(port, headers_for("0699999999"))  # the store is open: inline next
            holder = sqlite3.connect(config.store.path, isolation_level=None,
                                     check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
            result = await call(port, disposition("refused", attempt))
            holder.close()
            return result, srv.worker_checks
        finally:
            await srv.stop()

    result, worker = asyncio.run(scenario())
    assert result.variables["SENTINELLE_DISPOSITION"] == "OK", result.variables
    assert store.timeline("+33612345678")["refusals"]
    assert worker >= 1  # it went through the store thread
