"""What only the PostgreSQL backend has to prove: one R-30 count across
processes and hosts (advisory lock), clocks that disagree, failing closed
when the server is gone, read-only or slow, and recovering without a restart.

The generic store behaviour runs on both backends through the `store`
fixture (tests/conftest.py); these run on PostgreSQL only.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from sentinelle.config import Config
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, StoreError, open_store
from sentinelle.store.database import key_lock_id
from sentinelle.store.pg_connection import pg_sql, redacted

pytestmark = pytest.mark.postgres_only

PARIS = ZoneInfo("Europe/Paris")
AT = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)


def _req(at: datetime = AT, number: str = "0612345678") -> Request:
    return Request(dialled=number, at=at, campaign="promo", caller_id="0162000000", record=True)


def _consent(store, e164: str = "+33612345678") -> None:
    store.add_consent("acme", e164, ConsentProof(source="web", given_at=AT - timedelta(days=10)))


def test_the_lock_key_is_the_same_in_every_process():
    # A fixed value: Python's hash() would differ per process (and per host).
    assert key_lock_id("acme", "+33612345678") == key_lock_id("acme", "+33612345678")
    assert key_lock_id("acme", "+33612345678") != key_lock_id("other", "+33612345678")
    assert -(2**63) <= key_lock_id("acme", "+33612345678") < 2**63


def test_placeholders_are_translated_and_percent_signs_kept():
    assert pg_sql("SELECT ? WHERE a LIKE '%x%'", True) == "SELECT %s WHERE a LIKE '%%x%%'"
    assert pg_sql("WHERE at >= :start AND (:c IS NULL)", True) == \
        "WHERE at >= %(start)s AND (%(c)s IS NULL)"
    assert pg_sql("SELECT '%x%'", False) == "SELECT '%x%'"


def test_password_never_shown():
    assert redacted("postgresql://u:secret@db:5432/s") == "postgresql://u:***@db:5432/s"


def test_twenty_connections_on_one_callee_record_exactly_four(config: Config, store):
    """Each thread has its own store (its own pool and connection), as each PBX's
    serve has: only the advisory lock stands between them and a fifth attempt."""
    _consent(store)
    stores = [open_store(config.store, pool_size=1) for _ in range(20)]
    barrier = threading.Barrier(len(stores))
    verdicts: list[bool] = []

    def dial(s) -> None:
        barrier.wait()
        verdicts.append(check(config, s, _req()).allowed)

    threads = [threading.Thread(target=dial, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert sorted(verdicts) == [False] * 16 + [True] * 4
    assert store.count("attempts") == 4


@pytest.mark.parametrize("skew", [timedelta(minutes=-1), timedelta(minutes=1)])
def test_a_pbx_whose_clock_is_a_minute_off_still_sees_the_four_attempts(config, store, skew):
    """The instants are the PBX hosts' own (README "Several PBXs"); a host a
    minute behind sees the other's attempts as a minute in its future, and
    R-30 counts those too."""
    _consent(store)
    for minute in range(4):
        assert check(config, store, _req(AT + timedelta(minutes=minute))).allowed
    other_host = open_store(config.store, pool_size=1)
    try:
        d = check(config, other_host, _req(AT + timedelta(minutes=3) + skew))
    finally:
        other_host.close()
    assert not d.allowed and "R-30" in d.rules


def test_unreachable_server_blocks_sys_store_in_time(config: Config):
    dead = config.store.__class__(url="postgresql://sentinelle@127.0.0.1:9/none",
                                  busy_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"unreachable|connection"):
        open_store(dead)
    assert time.monotonic() - started < 5


def test_a_read_only_server_blocks_and_records_nothing(config: Config, store):
    """A standby answers, but read-only: the check must block, not allow unrecorded."""
    _consent(store)
    assert "options=-csearch_path" in config.store.url  # the fixture's own schema
    standby = config.store.__class__(
        url=config.store.url + "%20-cdefault_transaction_read_only%3Don")
    ro = open_store(standby, pool_size=1)
    try:
        d = check(config, ro, _req())
    finally:
        ro.close()
    assert not d.allowed and d.rules == ("SYS-STORE",)
    assert "read-only" in " ".join(d.reasons)
    assert store.count("attempts") == 0


def test_a_lock_held_too_long_blocks_within_the_busy_timeout(config: Config, store):
    _consent(store)
    holder = psycopg.connect(config.store.url, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (key_lock_id("acme", "+33612345678"),))
    fast = open_store(config.store, busy_timeout_ms=200, pool_size=1)
    try:
        started = time.monotonic()
        d = check(config, fast, _req())
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")
        after = check(config, fast, _req())
    finally:
        fast.close()
        holder.close()
    assert not d.allowed and d.rules == ("SYS-STORE",)
    assert waited < 3
    assert after.allowed


def test_store_recovers_after_its_connections_are_killed(config: Config, store):
    """A server restart or failover kills every connection: the next checks
    block (SYS-STORE) or pass once the pool has reconnected, never crash,
    and no restart of the process is needed."""
    _consent(store)
    live = open_store(config.store, busy_timeout_ms=500, pool_size=2)
    try:
        assert check(config, live, _req()).allowed
        with psycopg.connect(config.store.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name = 'sentinelle' AND pid <> pg_backend_pid()")
        verdicts = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            d = check(config, live, _req(AT + timedelta(minutes=1)))
            verdicts.append(d.rules)
            if d.allowed:
                break
            assert d.rules == ("SYS-STORE",)
            time.sleep(0.1)
        assert check(config, live, _req(AT + timedelta(minutes=2))).allowed
    finally:
        live.close()
    assert store.count("attempts") == 3


def test_the_password_comes_from_its_file_and_never_shows(tmp_path, config: Config):
    secret = tmp_path / "pg.secret"
    secret.write_text("s3cret-pw\n")
    settings = config.store.__class__(url="postgresql://sentinelle@127.0.0.1:9/none",
                                      password_file=str(secret), busy_timeout_ms=200)
    with pytest.raises(StoreError) as info:
        open_store(settings)
    assert "s3cret" not in str(info.value)
    missing = config.store.__class__(url=settings.url, password_file=str(tmp_path / "none"))
    with pytest.raises(StoreError, match="password file unreadable"):
        open_store(missing)


def test_a_password_in_the_url_is_refused(tmp_path):
    from sentinelle.config import ConfigError, load_config

    path = tmp_path / "s.toml"
    path.write_text('[store]\nurl = "postgresql://u:pw@db:5432/s"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == "store.url" and "pw" not in str(info.value).replace("password", "")
