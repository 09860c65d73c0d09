"""`sentinelle store copy`: an install moved to another backend keeps every
fact and every count, or nothing is written at all."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from sentinelle.cli import main
from sentinelle.config import Config, StoreConfig
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, open_store
from sentinelle.store.schema import TABLES
from tests.helpers.pgserver import pg_schema_url

pytestmark = pytest.mark.sqlite_only  # the source is the fixture's SQLite store

PARIS = ZoneInfo("Europe/Paris")
AT = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)


def _req(at: datetime, number: str = "0612345678") -> Request:
    return Request(dialled=number, at=at, campaign="promo", caller_id="0162000000", record=True)


def _fill(config: Config, store) -> None:
    for n in ("+33612345678", "+33612345679"):
        store.add_consent("acme", n, ConsentProof(source="web", given_at=AT - timedelta(days=9),
                                                  wording="oui"))
    for minute in range(4):
        assert check(config, store, _req(AT + timedelta(minutes=minute))).allowed
    assert check(config, store, _req(AT, "0612345679")).allowed
    store.add_refusal("acme", "promo", "+33612345679", AT + timedelta(minutes=5), "dtmf",
                      attempt_id=5)
    store.add_contract("acme", "+33698765432", "box")
    store.set_optout("acme", "+33611111111", True)
    sid = store.begin_snapshot("acme", date(2026, 11, 30), "opposed", "bloctel.txt")
    store.load_snapshot(sid, [33622222222, 33633333333])
    store.commit_snapshot(sid)


def _copy(src: str, dst: str):
    return CliRunner().invoke(main, ["store", "copy", "--from", src, "--to", dst])


def _counts(store) -> dict[str, int]:
    return {t: store.count(t) for t in TABLES if t != "meta"}


def test_sqlite_to_postgresql_and_back_keeps_every_fact_and_count(config, store, pg_server,
                                                                    tmp_path: Path):
    _fill(config, store)
    pg_url = pg_schema_url(pg_server)
    r = _copy(f"sqlite://{config.store.path}", pg_url)
    assert r.exit_code == 0, r.output
    assert "counts verified" in r.output
    pg_cfg = StoreConfig(url=pg_url)
    with open_store(pg_cfg) as pg:
        assert _counts(pg) == _counts(store)
        for number in ("+33612345678", "+33612345679", "+33622222222"):
            assert pg.history("acme", number, AT) == store.history("acme", number, AT)
        assert pg.timeline("+33612345679") == store.timeline("+33612345679")
        # The moved store decides as the old one: the fifth call and the refused
        # callee are blocked, and new rows get new ids.
        fifth = check(config, pg, _req(AT + timedelta(minutes=10)))
        assert not fifth.allowed and "R-30" in fifth.rules
        assert "R-31" in check(config, pg, _req(AT + timedelta(minutes=10), "0612345679")).rules
        fresh = check(config, pg, _req(AT, "0612345677"))
        assert fresh.rules  # no consent: blocked, but logged with a new decision id
        assert pg.count("decisions") == store.count("decisions") + 3
    back = tmp_path / "back.db"
    r = _copy(pg_url, f"sqlite://{back}")
    assert r.exit_code == 0, r.output
    with open_store(StoreConfig(path=str(back))) as again, open_store(pg_cfg) as pg:
        assert _counts(again) == _counts(pg)
        assert again.history("acme", "+33622222222", AT).bloctel.listed


def test_a_destination_in_use_is_refused_and_left_untouched(config, store, pg_server):
    _fill(config, store)
    pg_url = pg_schema_url(pg_server)
    with open_store(StoreConfig(url=pg_url), create=True) as pg:
        pg.add_consent("acme", "+33600000000", ConsentProof(source="crm", given_at=AT))
    r = _copy(f"sqlite://{config.store.path}", pg_url)
    assert r.exit_code == 2
    assert "nothing written" in r.output and "not empty" in r.output
    with open_store(StoreConfig(url=pg_url)) as pg:
        assert _counts(pg) == {**{t: 0 for t in TABLES if t != "meta"}, "consents": 1}


def test_bad_locations_are_named():
    r = _copy("mysql://x/y", "sqlite:///tmp/x.db")
    assert r.exit_code == 2 and "--from" in r.output
    r = _copy("sqlite:///tmp/a.db", "postgresql://u:pw@h/db")
    assert r.exit_code == 2 and "--to" in r.output and "password" in r.output
    r = _copy("sqlite:///tmp/a.db", "sqlite:///tmp/a.db")
    assert r.exit_code == 2 and "same store" in r.output
