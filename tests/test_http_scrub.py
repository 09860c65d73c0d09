"""POST /v1/scrub against a real `sentinelle serve`: the same verdicts as the
CLI, streamed (the first lines arrive before the list is all sent), CSV or
NDJSON, filters and sort, 422 before any output for a list it cannot read."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.helpers.http_support import FROZEN, NPV, TOKENS, consent_body, http_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with http_service(tmp_path_factory.mktemp("scrub")) as s:
        with s.client() as c:
            for n in ("0644000001", "0644000002"):
                assert c.post("/v1/consents", json=consent_body(n)).status_code == 201
            c.post("/v1/refusals", json={"number": "0644000002", "campaign": "promo",
                                         "at": "2026-11-30T11:00:00+01:00"})
        yield s


LEADS = "id;phone_number;note\n1;0644000001;a\n2;0644000002;b\n3;0644000003;c\n4;12;d\n"


def test_same_answer_as_the_cli(svc, tmp_path):
    with svc.client() as c:
        r = c.post("/v1/scrub", params={"campaign": "promo", "caller_id": NPV},
                   content=LEADS.encode(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    leads = tmp_path / "leads.csv"
    leads.write_text(LEADS)
    cli = svc.cli("scrub", str(leads), "--campaign", "promo", "--at", FROZEN, "--caller-id", NPV,
                  "--jobs", "1")
    assert cli.returncode == 0, cli.stderr
    assert r.text == cli.stdout
    lines = r.text.splitlines()
    assert lines[0] == "id;phone_number;note;e164;verdict;rules;retry_at;needs;reasons"
    assert lines[1].startswith("1;0644000001;a;+33644000001;allow;")
    assert ";block;R-11,R-31;;consent;" in lines[2]


def test_ndjson_filters_and_sort(svc):
    with svc.client() as c:
        r = c.post("/v1/scrub", params={"campaign": "promo", "format": "ndjson",
                                        "callable_within": "24h", "sort": "retry_at",
                                        "at": "2026-12-01T21:00:00+01:00"},
                   content=LEADS.encode())
    rows = [json.loads(x) for x in r.text.splitlines()]
    assert rows[-1]["summary"]["leads"] == 4 and rows[-1]["summary"]["written"] == 1
    assert rows[0]["lead"]["phone_number"] == "0644000001"
    assert rows[0]["retry_at"] == "2026-12-02T10:00:00+01:00"


def test_output_is_streamed(svc):
    """The first verdicts arrive while the list is still being sent: the
    list is never held whole, neither going in nor coming out. A raw
    socket sends the first 20,000 leads (chunked), waits for verdicts, and
    only then sends the rest: a server that read the whole list first would
    answer nothing and the wait would run out."""
    first = "number\n" + "".join(f"06{45_000_000 + k:08d}\n" for k in range(20_000))
    rest = "".join(f"06{45_100_000 + k:08d}\n" for k in range(1_000))

    def chunk(text: str) -> bytes:
        data = text.encode()
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    with socket.create_connection(("127.0.0.1", svc.http_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/scrub?campaign=promo HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + TOKENS["crm"][1].encode() + b"\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunk(first))
        early = b""
        deadline = time.monotonic() + 60
        while early.count(b"+3364") < 10 and time.monotonic() < deadline:
            early += sock.recv(65536)
        assert b" 200 " in early.split(b"\r\n", 1)[0] and b"chunked" in early.lower()
        assert early.count(b"+3364") >= 10  # verdicts before the list is all sent
        sock.sendall(chunk(rest) + b"0\r\n\r\n")
        body = early
        while data := sock.recv(65536):
            body += data
    assert body.count(b"+3364") == 21_000


@pytest.mark.parametrize(("params", "body", "field"), [
    ({"campaign": "promo"}, "id,name\n1,x\n", "column"),
    ({"campaign": "promo"}, "", "leads"),
    ({"campaign": "nope"}, LEADS, "campaign"),
    ({}, LEADS, "campaign"),
    ({"campaign": "promo", "format": "xml"}, LEADS, "format"),
    ({"campaign": "promo", "callable_within": "soon"}, LEADS, "callable_within"),
    ({"campaign": "promo", "sort": "name"}, LEADS, "sort"),
    ({"campaign": "promo", "at": "never"}, LEADS, "at"),
])
def test_bad_scrub_is_422_before_any_output(svc, params, body, field):
    with svc.client() as c:
        r = c.post("/v1/scrub", params=params, content=body.encode())
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
