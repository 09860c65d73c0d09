"""Refusals, dispositions and VICIdial's Dispo Call URL against a real
`sentinelle serve`: keyed by attempt or by number, idempotent per call,
do-not-call also on the opposition list; check and explain are dry runs
whose log lines name the API client."""

from __future__ import annotations

import json

import pytest

from sentinelle import logs
from tests.helpers.http_support import FROZEN, NPV, TOKENS, consent_body, http_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with http_service(tmp_path_factory.mktemp("dispo"),
                      http_extra='[http.dispo_map]\nDNC = "do-not-call"\nNI = "refused"\n'
                                 'CALLBK = "callback"\n') as s:
        yield s


def _attempt(svc, number: str) -> int:
    with svc.client() as c:
        assert c.post("/v1/consents", json=consent_body(number)).status_code == 201
    r = svc.cli("check", number, "--campaign", "promo", "--caller-id", NPV, "--at", FROZEN,
                "--record", "--json")
    return json.loads(r.stdout)["attempt_id"]


def _history(svc, number: str) -> dict:
    return json.loads(svc.cli("history", number, "--json").stdout)


def _check(svc, number: str, campaign: str = "promo") -> dict:
    with svc.client("reader") as c:
        return c.post("/v1/check", json={"number": number, "campaign": campaign,
                                         "caller_id": NPV}).json()


def test_refusal_by_attempt_is_idempotent(svc):
    aid = _attempt(svc, "0622000001")
    with svc.client("dialer") as c:
        first = c.post("/v1/refusals", json={"attempt_id": aid})
        again = c.post("/v1/refusals", json={"attempt_id": aid})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["recorded"] and not again.json()["recorded"]
    assert first.json()["attempt_id"] == aid
    refusals = _history(svc, "0622000001")["refusals"]
    assert len(refusals) == 1 and refusals[0]["source"] == "http:dialer"
    assert set(_check(svc, "0622000001")["rules"]) == {"R-11", "R-31"}


def test_refusal_by_number_campaign_instant(svc):
    body = {"number": "06 22 00 00 02", "campaign": "promo", "at": "2026-11-30T15:00:00+01:00"}
    with svc.client("dialer") as c:
        assert c.post("/v1/refusals", json=body).status_code == 201
        assert c.post("/v1/refusals", json=body).json()["recorded"] is False
    assert len(_history(svc, "0622000002")["refusals"]) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"attempt_id": 999999}, "attempt_id"),
    ({"attempt_id": "3"}, "attempt_id"),
    ({"number": "0622000003"}, "campaign"),
    ({"number": "not a number", "campaign": "promo"}, "number"),
    ({"number": "0622000003", "campaign": "promo", "at": "2026-12-02T10:00:00+01:00"}, "at"),
    ({}, "number"),
])
def test_bad_refusal_is_422(svc, body, field):
    with svc.client("dialer") as c:
        r = c.post("/v1/refusals", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_do_not_call_disposition(svc):
    aid = _attempt(svc, "0622000004")
    with svc.client("dialer") as c:
        r = c.post("/v1/dispositions", json={"attempt_id": aid, "code": "do-not-call"})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["recorded"] and data["optout_added"] and data["refusal"]["recorded"]
        again = c.post("/v1/dispositions", json={"attempt_id": aid, "code": "do-not-call"}).json()
        assert again["optout_added"] is False and again["refusal"]["recorded"] is False
        bad = c.post("/v1/dispositions", json={"attempt_id": aid, "code": "SALE"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "code"
    h = _history(svc, "0622000004")
    assert h["attempts"][0]["disposition"] == "do-not-call" and len(h["optouts"]) == 1
    assert {"R-12", "R-31"} <= set(_check(svc, "0622000004")["rules"])


def test_callback_by_number_lands_on_the_call(svc):
    aid = _attempt(svc, "0622000005")
    with svc.client("dialer") as c:
        data = c.post("/v1/dispositions", json={"number": "0622000005", "campaign": "promo",
                                                "code": "callback"}).json()
    assert data["attempt_id"] == aid and data["refusal"] is None
    assert _history(svc, "0622000005")["attempts"][0]["disposition"] == "callback"


def test_vicidial_dispo_url(svc):
    aid = _attempt(svc, "0622000006")
    token = TOKENS["dialer"][1]
    with svc.client(None) as c:
        url = "/v1/vicidial/dispo"
        q = {"phone_number": "622000006", "phone_code": "33", "dispo": "NI",
             "campaign": "promo", "token": token}
        r = c.get(url, params=q)
        assert r.status_code == 200, r.text
        assert r.json()["recorded"] and r.json()["attempt_id"] == aid
        assert r.json()["refusal"]["recorded"]
        assert c.get(url, params=q).json()["refusal"]["recorded"] is False
        ignored = c.get(url, params={**q, "dispo": "SALE"}).json()
        assert ignored == {"recorded": False, "dispo": "SALE",
                           "reason": "dispo code not in http.dispo_map: ignored"}
        assert c.get(url, params={**q, "token": "x" * 40}).status_code == 401
        assert c.get(url, params={**q, "campaign": "nope"}).json()["error"]["field"] == \
            "campaign"
        # the query token is for the dispo URL only
        assert c.post("/v1/refusals", params={"token": token},
                      json={"attempt_id": aid}).status_code == 401
    h = _history(svc, "0622000006")
    assert len(h["refusals"]) == 1 and h["attempts"][0]["disposition"] == "refused"
    assert token not in svc.log.read_text()


def test_check_and_explain_are_dry_runs_that_name_the_client(svc):
    with svc.client("reader") as c:
        d = c.post("/v1/check", json={"number": "0622000007", "campaign": "promo"}).json()
        x = c.get("/v1/explain", params={"number": "0622000007", "campaign": "promo",
                                        "at": FROZEN})
        assert c.post("/v1/check", json={"number": "1", "campaign": "nope"}).status_code == 422
        assert c.get("/v1/explain", params={"number": "abc"}).json()["error"]["field"] == \
            "number"
    assert d["verdict"] == "block" and d["rules"] == ["R-11"] and d["attempt_id"] is None
    assert d["at"].startswith("2026-12-01T10:30:00")  # the service's (frozen) clock
    assert x.status_code == 200
    assert x.json()["decisions"][0]["rules"] == ["R-11"]
    assert _history(svc, "0622000007")["decisions"] == []
    lines = logs.read_events(svc.log.read_text().splitlines(), "decision")
    mine = [e for e in lines if e.get("dialled") == "0622000007" and e["source"] != "explain"]
    assert mine and mine[0]["source"] == "http:reader" and mine[0]["client"] == "reader"
