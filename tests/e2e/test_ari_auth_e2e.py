"""`serve --check-config` against the real Asterisk's ARI (issue #12,
section 2): the wrong password exits 2 naming the problem, the right one
(percent-encoded in the URL, as in the issue's example) passes."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.e2e.conftest import Service
from tests.e2e.test_livecheck_e2e import InstalledPbx
from tests.pbx import Pbx


@pytest.fixture
def pbx(service: Service) -> Iterator[Pbx]:
    """Installed as the README says (with `channelvars`): once the credentials
    pass, the check asks the live PBX for what sentinelle needs
    (tests/e2e/test_livecheck_e2e.py)."""
    with InstalledPbx(agi_url=service.agi_url, campaign="promo") as p:
        yield p


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
