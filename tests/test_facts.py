"""`sentinelle.facts`: the one path for consents, revocations, refusals and
dispositions (CLI, HTTP API, FastAGI). Bad input names its field and writes
nothing; refusals and dispositions are idempotent per call."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from sentinelle import facts
from sentinelle.cli.main import main
from sentinelle.core.clock import parse_instant
from sentinelle.core.model import Disposition
from sentinelle.guard import Request, check

NOW = parse_instant("2026-12-01T10:30:00+01:00")
NPV = "0162000000"
NUMBER = "0612345678"
E164 = "+33612345678"


def _consent(store, config, **kw):
    args = {"number": NUMBER, "campaign": "promo", "given_at": NOW - timedelta(days=10),
            "source": "web form", "now": NOW, **kw}
    return facts.record_consent(store, config, **args)


def _attempt(store, config, number: str = NUMBER, at: datetime = NOW) -> int:
    d = check(config, store, Request(dialled=number, at=at, campaign="promo", caller_id=NPV,
                                     record=True))
    assert d.attempt_id, d
    return d.attempt_id


def _count(store, table: str) -> int:
    return store.count(table)


def test_consent_with_its_proof_allows_the_call(store, config):
    r = _consent(store, config, channel="web", wording="v3", evidence_ref="form-1",
                 slot_from=NOW + timedelta(days=1), slot_until=NOW + timedelta(days=1, hours=1))
    assert (r.e164, r.professional) == (E164, "acme")
    row = store.timeline(E164)["consents"][0]
    assert (row["source"], row["channel"], row["wording"], row["evidence_ref"]) == \
        ("web form", "web", "v3", "form-1")
    assert check(config, store, Request(dialled=NUMBER, at=NOW, campaign="promo")).allowed


@pytest.mark.parametrize(("kw", "field"), [
    ({"number": "12"}, "number"),
    ({"number": "112"}, "number"),
    ({"number": ""}, "number"),
    ({"campaign": "nope"}, "campaign"),
    ({"campaign": None}, "campaign"),
    ({"campaign": "elsewhere", "professional": "acme"}, "professional"),
    ({"campaign": None, "professional": "nope"}, "professional"),
    ({"source": "  "}, "source"),
    ({"source": "x" * 201}, "source"),
    ({"wording": "a\x00b"}, "wording"),
    ({"given_at": NOW + timedelta(minutes=6)}, "given_at"),
    ({"given_at": datetime(2026, 11, 1, 10, 0)}, "given_at"),
    ({"slot_from": NOW}, "slot_until"),
    ({"slot_until": NOW}, "slot_from"),
    ({"slot_from": NOW, "slot_until": NOW}, "slot_until"),
])
def test_bad_consent_names_the_field_and_writes_nothing(store, config, kw, field):
    with pytest.raises(facts.FactError) as err:
        _consent(store, config, **kw)
    assert err.value.field == field
    assert _count(store, "consents") == 0


def test_a_little_clock_skew_is_tolerated(store, config):
    assert _consent(store, config, given_at=NOW + timedelta(minutes=4)).consent_id


def test_professional_instead_of_campaign(store, config):
    assert _consent(store, config, campaign=None, professional="other").professional == "other"


def test_revocation(store, config):
    _consent(store, config)
    r = facts.revoke_consents(store, config, number=NUMBER, campaign="promo", now=NOW)
    assert r.revoked == 1
    assert facts.revoke_consents(store, config, number=NUMBER, campaign="promo",
                                 now=NOW).revoked == 0
    assert not check(config, store, Request(dialled=NUMBER, at=NOW, campaign="promo")).allowed


def test_refusal_by_number_is_idempotent_per_instant(store, config):
    _consent(store, config)
    at = NOW - timedelta(hours=1)
    first = facts.record_refusal(store, config, number=NUMBER, campaign="promo", at=at,
                                 source="http:crm", now=NOW)
    again = facts.record_refusal(store, config, number="+33 6 12 34 56 78", campaign="promo2",
                                 at=at, source="http:crm", now=NOW)
    assert first.new and not again.new
    assert _count(store, "refusals") == 1
    d = check(config, store, Request(dialled=NUMBER, at=NOW, campaign="promo"))
    assert set(d.rules) == {"R-11", "R-31"}  # the refusal revoked the consent
    later = facts.record_refusal(store, config, number=NUMBER, campaign="promo",
                                 at=at + timedelta(minutes=1), source="http:crm", now=NOW)
    assert later.new


def test_refusal_by_attempt(store, config):
    _consent(store, config)
    aid = _attempt(store, config, at=NOW - timedelta(minutes=3))
    r = facts.record_refusal(store, config, attempt_id=aid, source="http:dialer", now=NOW)
    assert r.new and r.attempt_id == aid and r.campaign == "promo" and r.at == NOW
    assert not facts.record_refusal(store, config, attempt_id=aid, source="x", now=NOW).new
    assert _count(store, "refusals") == 1


@pytest.mark.parametrize(("kw", "field"), [
    ({"attempt_id": 999}, "attempt_id"),
    ({"attempt_id": 0}, "attempt_id"),
    ({"attempt_id": "1"}, "attempt_id"),
    ({"attempt_id": True}, "attempt_id"),
    ({}, "number"),
    ({"number": NUMBER}, "campaign"),
    ({"number": NUMBER, "campaign": "nope"}, "campaign"),
    ({"number": NUMBER, "campaign": "promo", "at": NOW + timedelta(hours=1)}, "at"),
])
def test_bad_refusal_names_the_field_and_writes_nothing(store, config, kw, field):
    with pytest.raises(facts.FactError) as err:
        facts.record_refusal(store, config, source="t", now=NOW, **kw)
    assert err.value.field == field
    assert _count(store, "refusals") == 0


def test_refusal_must_agree_with_its_attempt(store, config):
    _consent(store, config)
    aid = _attempt(store, config)
    with pytest.raises(facts.FactError, match="does not match") as err:
        facts.record_refusal(store, config, attempt_id=aid, number="0698765432", source="t",
                             now=NOW)
    assert err.value.field == "number"
    with pytest.raises(facts.FactError) as err:
        facts.record_refusal(store, config, attempt_id=aid, campaign="elsewhere", source="t",
                             now=NOW)
    assert err.value.field == "campaign"
    with pytest.raises(facts.FactError) as err:
        facts.record_refusal(store, config, attempt_id=aid, at=NOW - timedelta(hours=1),
                             source="t", now=NOW)
    assert err.value.field == "at"
    assert _count(store, "refusals") == 0


def test_do_not_call_by_number_finds_its_call(store, config):
    """A dialer's disposition by number lands on the last call of that
    callee: a DTMF refusal of the same call and the disposition are one."""
    _consent(store, config)
    aid = _attempt(store, config, at=NOW - timedelta(minutes=2))
    assert facts.record_refusal(store, config, attempt_id=aid, source="dtmf", now=NOW).new
    r = facts.record_disposition(store, config, code="do-not-call", number=NUMBER,
                                 campaign="promo", source="http:vicidial", now=NOW)
    assert r.attempt_id == aid and r.recorded and r.optout_added is True
    assert r.refusal is not None and not r.refusal.new
    assert store.attempt(aid)["disposition"] == "do-not-call"
    assert _count(store, "refusals") == 1
    d = check(config, store, Request(dialled=NUMBER, at=NOW + timedelta(days=90),
                                     campaign="service"))
    assert d.rules == ("R-12",)
    again = facts.record_disposition(store, config, code=Disposition.DO_NOT_CALL,
                                     attempt_id=aid, source="http:vicidial", now=NOW)
    assert again.optout_added is False and not again.refusal.new


def test_disposition_without_a_call(store, config):
    """No call within 12 hours: a refusal still counts, a callback has
    nowhere to go."""
    _consent(store, config, number="0698765432")
    _attempt(store, config, number="0698765432")  # another callee's call is never picked
    _consent(store, config)
    old = _attempt(store, config, at=NOW - timedelta(days=1))
    r = facts.record_disposition(store, config, code="callback", number=NUMBER, campaign="promo",
                                 source="t", now=NOW)
    assert not r.recorded and r.attempt_id is None
    r = facts.record_disposition(store, config, code="refused", number=NUMBER, campaign="promo",
                                 source="t", now=NOW)
    assert r.recorded and r.attempt_id is None and r.refusal.new
    assert store.attempt(old)["disposition"] is None


def test_unknown_disposition_code(store, config):
    with pytest.raises(facts.FactError) as err:
        facts.record_disposition(store, config, code="SALE", number=NUMBER, campaign="promo",
                                 source="t", now=NOW)
    assert err.value.field == "code"


def test_cli_reports_the_option(config_path):
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(main, ["--config", str(config_path), *args])

    cli("init")
    r = cli("consent", "add", NUMBER, "--campaign", "promo", "--source", "web",
            "--at", "2099-01-01T10:00")
    assert r.exit_code == 2 and "--at" in r.output and "future" in r.output
    r = cli("refusal", "add", NUMBER, "--campaign", "promo", "--attempt", "42")
    assert r.exit_code == 2 and "--attempt" in r.output and "unknown attempt" in r.output
    r = cli("consent", "add", NUMBER, "--campaign", "promo", "--source", "web",
            "--slot-from", "2026-11-20T21:00")
    assert r.exit_code == 2 and "--slot" in r.output
    r = cli("consent", "add", "12", "--campaign", "promo", "--source", "web")
    assert r.exit_code == 2 and "NUMBER" in r.output
