"""`serve --check-config` against the real Asterisk's ARI (issue #12,
section 2): the wrong password exits 2 naming the problem, the right one
(percent-encoded in the URL, as in the issue's example) passes."""

from __future__ import annotations

from urllib.parse import quote

from tests.e2e.conftest import Service
from tests.pbx import Pbx


def ari(url: str, user: str, password: str) -> str:
    return f'\n[ari]\nurl = "{url}"\nuser = "{user}"\npassword = "{password}"\n'


def test_check_config_against_asterisk(service: Service, pbx: Pbx) -> None:
    base = service.config.read_text()
    service.config.write_text(base + ari(pbx.ari_url, pbx.ari_user, "not-" + pbx.ari_password))
    r = service.cli("serve", "--check-config", check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "refused the credentials (HTTP 401)" in r.stderr
    assert pbx.ari_password not in r.stderr

    encoded = pbx.ari_url.replace(
        "http://", f"http://{quote(pbx.ari_user, safe='')}:{quote(pbx.ari_password, safe='')}@")
    service.config.write_text(base + ari(encoded, pbx.ari_user, ""))
    r = service.cli("serve", "--check-config", check=False)
    assert r.returncode == 0, r.stderr
    assert "config ok" in r.stdout and "warning: ARI" not in r.stderr
