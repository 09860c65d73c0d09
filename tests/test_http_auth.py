"""Who may use the HTTP API: loopback or `[http] allow`, a bearer token per
client from `[http] tokens_file`, scopes per route, tokens never logged."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers.hardening_support import sentinelle_exe
from tests.helpers.http_support import TOKENS, HttpServe, consent_body, http_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with http_service(tmp_path_factory.mktemp("auth")) as s:
        yield s


ROUTES = [("post", "/v1/consents", "consents:write"), ("post", "/v1/consents/revoke",
          "consents:write"), ("post", "/v1/refusals", "refusals:write"),
          ("post", "/v1/dispositions", "refusals:write"), ("post", "/v1/check", "check:read"),
          ("get", "/v1/explain", "check:read"), ("post", "/v1/scrub", "scrub"),
          ("get", "/v1/vicidial/dispo", "refusals:write")]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_token_and_scope_per_route(svc, method, path, scope):
    with svc.client(None) as c:
        r = c.request(method, path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        r = c.request(method, path, headers={"Authorization": "Bearer " + "z" * 44})
        assert r.status_code == 401
        r = c.request(method, path, headers={"Authorization": "Basic abc"})
        assert r.status_code == 401
    for name, (scopes, _) in TOKENS.items():
        with svc.client(name) as c:
            status = c.request(method, path).status_code
        assert (status == 403) == (scope not in scopes.split(",")), (name, status)


def test_openapi_is_public_on_the_allowed_network(svc):
    with svc.client(None) as c:
        assert c.get("/openapi.json").json()["openapi"] == "3.1.0"


def test_tokens_never_reach_the_log(svc):
    with svc.client("crm") as c:
        c.post("/v1/consents", json=consent_body("0633000001"))
    with svc.client(None) as c:
        c.get("/v1/vicidial/dispo", params={"token": TOKENS["dialer"][1], "dispo": "X"})
        c.get("/v1/vicidial/dispo", params={"token": "s3cret-" + "q" * 40, "dispo": "X"})
    text = svc.log.read_text()
    assert "http request" in text
    for _, token in TOKENS.values():
        assert token not in text
    assert "s3cret-" not in text


def test_peer_outside_allow_is_refused(tmp_path):
    with http_service(tmp_path, http_extra='allow = ["192.0.2.0/24"]') as svc:
        with svc.client() as c:
            r = c.post("/v1/check", json={"number": "0611111111"})
        assert r.status_code == 403 and "http.allow" in r.json()["error"]["message"]


def _check_config(tmp_path, http: str, tokens: str | None = None, mode: int = 0o600):
    if tokens is not None:
        path = tmp_path / "tokens"
        path.write_text(tokens)
        os.chmod(path, mode)
        http += f'\ntokens_file = "{path}"'
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "s.db"}"\n[http]\n{http}\n')
    return subprocess.run([sentinelle_exe(), "--config", str(cfg), "serve", "--check-config"],
                          capture_output=True, text=True, timeout=60)


GOOD = "crm scrub,check:read " + "t" * 40 + "\n"


@pytest.mark.parametrize(("http", "tokens", "expect"), [
    ('listen = "0.0.0.0:4580"', GOOD, "http.allow"),
    ('listen = "127.0.0.1:4580"', None, "http.tokens_file"),
    ('listen = "127.0.0.1:4580"', "crm scrub short\n", "32-256"),
    ('listen = "127.0.0.1:4580"', "crm admin " + "t" * 40 + "\n", "unknown scope"),
    ('listen = "127.0.0.1:4580"', GOOD + GOOD, "listed twice"),
    ('listen = "127.0.0.1:4580"', "# nobody\n", "no client"),
    ('listen = "127.0.0.1:4580"\nallow = ["nope"]', GOOD, "http.allow"),
    ('listen = "4580"', GOOD, "http.listen"),
    ('listen = "127.0.0.1:4580"\n[http.dispo_map]\nDNC = "dnc"', GOOD, "http.dispo_map.DNC"),
])
def test_serve_refuses_a_bad_http_config(tmp_path, http, tokens, expect):
    r = _check_config(tmp_path, http, tokens)
    assert r.returncode == 2 and expect in r.stderr, r.stderr
    assert "t" * 40 not in r.stderr


def test_non_loopback_with_allow_and_good_tokens_is_accepted(tmp_path):
    r = _check_config(tmp_path, 'listen = "0.0.0.0:4580"\nallow = ["10.0.0.0/8"]', GOOD)
    assert r.returncode == 0, r.stderr


def test_world_readable_tokens_file_is_warned_about(tmp_path):
    svc = HttpServe(tmp_path)
    os.chmod(tmp_path / "tokens", 0o644)
    assert svc.cli("init").returncode == 0
    with svc.start():
        pass
    warnings = [d["msg"] for d in svc.log_lines() if d.get("level") == "warning"]
    assert any("tokens file" in w and "world-readable" in w for w in warnings), warnings
