"""`sentinelle explain`: the timeline and the decision in words, citing rule ids,
computed as a dry run (the store is not touched)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from sentinelle.store import ConsentProof
from tests.helpers.evidence_helpers import NPV, PARIS, call, invoker

NUMBER = "0612345678"


@pytest.fixture
def history(config, store):
    """Four calls, a fifth blocked by R-30, a refusal, then an opt-out elsewhere."""
    store.add_consent("acme", "+33612345678", ConsentProof(
        source="web-form", given_at=datetime(2026, 11, 2, 9, tzinfo=PARIS), wording="v3",
        evidence_ref="form-77"))
    for day in (2, 3, 4, 7):
        d = call(config, store, NUMBER, datetime(2026, 12, day, 10, 30, tzinfo=PARIS))
        assert d.allowed
    store.record_outcome(4, outcome="answered",
                         answered_at=datetime(2026, 12, 7, 10, 30, 9, tzinfo=PARIS),
                         ended_at=datetime(2026, 12, 7, 10, 32, tzinfo=PARIS), cause=16,
                         cause_txt="Normal Clearing")
    blocked = call(config, store, NUMBER, datetime(2026, 12, 8, 10, 30, tzinfo=PARIS))
    assert blocked.rules == ("R-30",)
    store.add_refusal("acme", "promo", "+33612345678",
                      datetime(2026, 12, 7, 10, 31, tzinfo=PARIS), "dtmf", 4)
    store.set_optout("other", "+33612345678", True, "dtmf")
    return store


def test_timeline_in_order_on_the_callees_clock(config_path, history):
    r = invoker(config_path)("explain", NUMBER, "--at", "2026-12-09T11:00",
                             "--campaign", "promo", "--caller-id", NPV)
    assert r.exit_code == 0, r.output
    out = r.output
    timeline = out.split("Timeline")[1].split("Rules for")[0]
    kinds = [line.split()[2] for line in timeline.splitlines()[1:] if line.strip()]
    assert "optout" in kinds  # stamped with the real clock: its place varies
    assert [k for k in kinds if k != "optout"] == [
        "consent", "attempt", "attempt", "attempt", "attempt", "refusal", "revocation",
        "blocked"]
    assert "evidence_ref form-77" in out and "outcome answered" in out
    assert "R-31 silence until 2027-02-05 10:31:00+01:00" in out  # 60 calendar days
    assert "R-30 blocks: 4 attempts in the last 30 days (max 4); next possible 2027-01-01 10:30+01:00" in out
    assert "R-12 passes: not on the internal opposition list" in out
    assert "R-31 blocks: refusal on 2026-12-07 10:31+01:00: silent until 2027-02-05 10:31+01:00" in out
    decision = out.split("Decision that would be taken")[1]
    assert "would be BLOCKED because" in decision
    for rule in ("R-11", "R-30", "R-31"):
        assert f"{rule}:" in decision
    assert "[R-31: 60 days of silence after a refusal" in decision  # the rule in words
    assert "R-40" not in decision  # the caller ID was given and is an NPV


def test_dry_run_records_nothing(config_path, history):
    counts = {t: history.count(t) for t in ("decisions", "attempts", "refusals", "consents")}
    invoker(config_path)("explain", NUMBER, "--at", "2027-03-01T10:30")
    assert counts == {t: history.count(t) for t in counts}


def test_json_and_every_campaign(config_path, history):
    r = invoker(config_path)("explain", "+33 6 12 34 56 78", "--at", "2027-03-01T10:30",
                             "--json")
    data = json.loads(r.output)
    assert data["e164"] == "+33612345678" and data["timezone"] == "Europe/Paris"
    by_campaign = {d["campaign"]: d for d in data["decisions"]}
    assert set(by_campaign) == {"promo", "promo2", "manual", "press", "service", "elsewhere"}
    # acme, 3 months later: the refusal revoked the consent (R-11 under fr-2026).
    assert by_campaign["promo"]["rules"] == ["R-11"]
    assert "R-11" in by_campaign["promo"]["explanation"]
    assert by_campaign["press"]["verdict"] == "allow"  # press is exempt from R-11
    assert by_campaign["elsewhere"]["rules"] == ["R-12", "R-11"]  # "other": never again
    assert "R-12 blocks: callee asked this professional never to call again" in data["facts"]["other"]
    states = {st["rule"]: st["status"] for st in by_campaign["elsewhere"]["states"]}
    assert states["R-12"] == "blocks" and states["R-11"] == "blocks" and states["R-10"] == "not applicable"
    assert data["timeline"][0]["kind"] == "consent"
    assert {e["kind"] for e in data["timeline"]} >= {"attempt", "refusal", "blocked", "optout"}
    note = by_campaign["promo"]["notes"]
    assert any("R-40..R-43 not evaluated" in n for n in note)


def test_allowed_in_words_and_overseas_clock(config_path, config, store):
    store.add_consent("acme", "+262692123456", ConsentProof(
        source="web", given_at=datetime(2026, 11, 2, 9, tzinfo=PARIS)))
    at = datetime(2026, 12, 2, 8, 30, tzinfo=PARIS)  # 11:30 in Réunion
    call(config, store, "0692123456", at - timedelta(days=1))
    r = invoker(config_path)("explain", "0692123456", "--at", at.isoformat(),
                             "--campaign", "promo", "--caller-id", NPV)
    assert r.exit_code == 0
    assert "times on the callee's clock (Indian/Reunion)" in r.output
    assert "2026-12-01 11:30:00+04:00  attempt" in r.output
    assert "would be ALLOWED: no rule blocks this call. It would count as an attempt (R-30)." \
        in r.output
    assert "R-20 passes: callee local time 2026-12-02 11:30:00 +04 (RE) is inside" in r.output
    assert "R-21 passes: Wednesday 2026-12-02 (RE) is a working day" in r.output


def test_nothing_recorded_and_usage_errors(config_path, store):
    cli = invoker(config_path)
    r = cli("explain", "0612345678", "--campaign", "promo", "--at", "2026-12-02T10:30")
    assert r.exit_code == 0 and "nothing recorded for this number" in r.output
    assert "R-11: no prior consent recorded" in r.output
    assert cli("explain", "not-a-number").exit_code == 2
    assert cli("explain", "112").exit_code == 2
    assert cli("explain", "0612345678", "--campaign", "nope").exit_code == 2
