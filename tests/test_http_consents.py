"""POST /v1/consents and /v1/consents/revoke against a real `sentinelle
serve` and store: every proof field kept, Idempotency-Key, bad input named."""

from __future__ import annotations

import pytest

from tests.helpers.http_support import NPV, consent_body, http_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with http_service(tmp_path_factory.mktemp("consents")) as s:
        yield s


def _history(svc, number: str) -> dict:
    import json

    return json.loads(svc.cli("history", number, "--json").stdout)


def test_consent_with_every_proof_field_allows_the_call(svc):
    body = consent_body("0611000001", slot_from="2026-12-05T21:00:00+01:00",
                        slot_until="2026-12-05T22:00:00+01:00")
    with svc.client() as c:
        r = c.post("/v1/consents", json=body)
        assert r.status_code == 201, r.text
        data = r.json()
        assert data["e164"] == "+33611000001" and data["professional"] == "acme"
        check = c.post("/v1/check", json={"number": "0611000001", "campaign": "promo",
                                          "caller_id": NPV}).json()
    assert check["verdict"] == "allow"
    row = _history(svc, "0611000001")["consents"][0]
    assert row["id"] == data["consent_id"]
    assert (row["source"], row["channel"], row["wording"], row["evidence_ref"]) == \
        ("web form", "web", "v3", "form-42")
    assert row["given_at"] == "2026-11-01T10:00:00+01:00" and row["slot_from"]  # Paris time


def test_idempotency_key(svc):
    body = consent_body("0611000002")
    with svc.client() as c:
        first = c.post("/v1/consents", json=body, headers={"Idempotency-Key": "crm-77"})
        again = c.post("/v1/consents", json=body, headers={"Idempotency-Key": "crm-77"})
        other = c.post("/v1/consents", json={**body, "wording": "v4"},
                       headers={"Idempotency-Key": "crm-77"})
        # keys are per client: another client's same key is another request
        with svc.client("dialer") as d:
            assert d.post("/v1/consents", json=body,
                          headers={"Idempotency-Key": "crm-77"}).status_code == 403
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert len(_history(svc, "0611000002")["consents"]) == 1


def test_idempotency_survives_a_restart(tmp_path):
    body = consent_body("0611000003")
    with http_service(tmp_path) as svc:
        with svc.client() as c:
            first = c.post("/v1/consents", json=body, headers={"Idempotency-Key": "k1"})
        svc.stop()
        svc.start()
        with svc.client() as c:
            again = c.post("/v1/consents", json=body, headers={"Idempotency-Key": "k1"})
        assert again.json() == first.json() and again.headers.get("Idempotent-Replayed")
        assert len(_history(svc, "0611000003")["consents"]) == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"number": "12"}, "number"),
    ({"number": None}, "number"),
    ({"campaign": "nope"}, "campaign"),
    ({"given_at": "2027-01-01T10:00:00+01:00"}, "given_at"),  # after the frozen clock
    ({"given_at": "yesterday"}, "given_at"),
    ({"source": ""}, "source"),
    ({"source": 42}, "source"),
    ({"slot_from": "2026-12-05T21:00:00+01:00"}, "slot_until"),
    ({"givenAt": "2026-11-01T10:00:00+01:00"}, "givenAt"),
])
def test_bad_consent_is_422_naming_the_field(svc, change, field):
    body = {k: v for k, v in {**consent_body("0611000004"), **change}.items() if v is not None}
    with svc.client() as c:
        r = c.post("/v1/consents", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert _history(svc, "0611000004")["consents"] == []


def test_not_json(svc):
    with svc.client() as c:
        assert c.post("/v1/consents", content=b"number=1").status_code == 415
        r = c.post("/v1/consents", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "body"
        big = b'{"number": "' + b"1" * 70_000 + b'"}'
        assert c.post("/v1/consents", content=big,
                      headers={"Content-Type": "application/json"}).status_code == 413


def test_revoke(svc):
    with svc.client() as c:
        assert c.post("/v1/consents", json=consent_body("0611000005")).status_code == 201
        r = c.post("/v1/consents/revoke", json={"number": "0611000005", "campaign": "promo"})
        assert r.status_code == 200 and r.json()["revoked"] == 1
        assert c.post("/v1/consents/revoke", json={"number": "0611000005",
                                                   "professional": "acme"}).json()["revoked"] == 0
        check = c.post("/v1/check", json={"number": "0611000005", "campaign": "promo"}).json()
    assert check["rules"] == ["R-11"]
