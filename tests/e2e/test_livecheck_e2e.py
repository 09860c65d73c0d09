"""`serve --check-config` asks the real Asterisk 22 what sentinelle needs of
it (issue #12, section 4; pbx/livecheck.py): with the shipped dialplan,
features and `channelvars` it passes; with a sentinelle context, a feature
code or the channelvars taken out, it exits 2 with one line naming each, and
what to add where, and the running service logs the same lines as WARNINGs.
The check leaves no channel behind and does not take the running listener's
ARI app over."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from sentinelle.logs import read_events
from tests.e2e.conftest import Service
from tests.e2e.test_outcome_handler_e2e import listener_connected, wait_until
from tests.pbx import Pbx

ATTEMPT_VAR = "channelvars = SENTINELLE_ATTEMPT\n"


class InstalledPbx(Pbx):
    """The harness's Asterisk as README "Install in your PBX" has it (the
    harness itself leaves `channelvars` out), minus what `drop` names:
    `context` ([sentinelle-outcome] cut from extensions_sentinelle.conf),
    `feature` (sentinelle_refusal removed, sentinelle_refused moved to *18),
    `channelvars` (ari.conf without it), `read-only` (the ARI user may not write)."""

    def __init__(self, *args: object, drop: str = "", **kwargs: object) -> None:
        self.drop = drop
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _configs(self) -> dict[str, str]:
        configs = super()._configs()
        general = "[general]\nenabled = yes\n"
        assert general in configs["ari.conf"]
        if self.drop != "channelvars":
            configs["ari.conf"] = configs["ari.conf"].replace(general, general + ATTEMPT_VAR)
        if self.drop == "read-only":
            assert "read_only = no\n" in configs["ari.conf"]
            configs["ari.conf"] = configs["ari.conf"].replace("read_only = no\n", "read_only = yes\n")
        return configs

    def write_config(self) -> None:
        super().write_config()
        if self.drop == "context":
            path = self.etc_dir / "extensions_sentinelle.conf"
            text, cut = re.subn(r"^\[sentinelle-outcome\]\n(?:(?!\[).*\n?)*", "", path.read_text(),
                                flags=re.M)
            assert cut == 1
            path.write_text(text)
        if self.drop == "feature":
            path = self.etc_dir / "features_sentinelle.conf"
            text, cut = re.subn(r"^sentinelle_refusal => .*\n", "", path.read_text(), flags=re.M)
            assert cut == 1
            path.write_text(text.replace("sentinelle_refused => *81,", "sentinelle_refused => *18,"))


def install(service: Service, pbx: Pbx) -> None:
    service.config.write_text(service.config.read_text() + f"""
[ari]
url = "{pbx.ari_url}"
user = "{pbx.ari_user}"
password = "{pbx.ari_password}"
""")


def check_config(service: Service) -> tuple[int, str]:
    r = service.cli("serve", "--check-config", check=False, timeout=60)
    return r.returncode, r.stderr


def channels(pbx: Pbx) -> str:
    return pbx.cli("core show channels count")


def service_report(service: Service) -> list[dict]:
    """The running service's start-up report: its WARNING lines, once done."""
    wait_until(lambda: read_events(service.log.read_text().splitlines(), "live PBX checked"), 60,
               "the service's live PBX check")
    return read_events(service.log.read_text().splitlines(), "the PBX lacks what sentinelle needs")


@pytest.fixture
def installed(service: Service, request: pytest.FixtureRequest) -> Iterator[InstalledPbx]:
    with InstalledPbx(agi_url=service.agi_url, campaign="promo", agents=2,
                      drop=getattr(request, "param", "")) as pbx:
        install(service, pbx)
        yield pbx


def test_the_shipped_install_passes_beside_a_running_listener(service: Service,
                                                              installed: InstalledPbx) -> None:
    service.start()
    wait_until(lambda: listener_connected(installed), 30, "the listener connected")
    assert service_report(service) == []
    code, err = check_config(service)
    assert code == 0, err
    assert "missing" not in err and "wrong" not in err and "warning" not in err, err
    assert "0 active channels" in channels(installed)
    # The probe's app was its own: the listener's is still set up, and soon
    # alone (Asterisk drops an app a moment after its websocket closes).
    assert listener_connected(installed)
    wait_until(lambda: apps(installed) == ["sentinelle"], 15, "the probe's app gone")
    assert listener_connected(installed)


def apps(pbx: Pbx) -> list[str]:
    found = httpx.get(f"{pbx.ari_url}/applications", timeout=5, trust_env=False,
                      auth=(pbx.ari_user, pbx.ari_password)).json()
    return [app["name"] for app in found]


@pytest.mark.parametrize(("installed", "expected"), [
    ("context", [r"^missing: the dialplan context \[sentinelle-outcome\]: add it from "
                 r"dialplan/extensions_sentinelle.conf"]),
    ("feature", [r"^missing: the feature sentinelle_refusal \(\*9\): add "
                 r"`sentinelle_refusal => \*9,self,Gosub\(sentinelle-disposition,s,1\(refused\)\)` "
                 r"to features.conf \[applicationmap\]",
                 r"^wrong: the feature sentinelle_refused is `sentinelle_refused => \*18,.*`: make "
                 r"it `sentinelle_refused => \*81,"]),
    ("channelvars", [r"^missing: SENTINELLE_ATTEMPT in ari.conf \[general\] channelvars: add "
                     r"`channelvars = SENTINELLE_ATTEMPT`, then `module reload res_ari.so`"]),
], indirect=["installed"])
def test_each_missing_piece_is_named(service: Service, installed: InstalledPbx,
                                     expected: list[str]) -> None:
    code, err = check_config(service)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith(("missing:", "wrong:"))]
    assert len(lines) == len(expected), err
    for pattern in expected:
        assert any(re.search(pattern, line) for line in lines), (pattern, err)
    assert "error: the PBX lacks" in err and "warning" not in err, err
    assert "0 active channels" in channels(installed)
    service.start()
    report = service_report(service)
    assert [line["level"] for line in report] == ["warning"] * len(lines), report
    assert sorted(line["item"] for line in report) == sorted(lines)


@pytest.mark.parametrize("installed", ["read-only"], indirect=True)
def test_a_read_only_ari_user_gets_what_it_can(service: Service, installed: InstalledPbx) -> None:
    """No probe channel for a read-only user: the contexts and codes are not
    checked (a warning, not a failure), channelvars still are."""
    code, err = check_config(service)
    assert code == 0, err
    assert "dialplan contexts and feature codes not checked" in err and "read_only" in err, err
    assert "missing" not in err and "channelvars not checked" not in err, err


@pytest.mark.parametrize("installed", ["channelvars"], indirect=True)
def test_the_fix_it_prints_is_the_fix(service: Service, installed: InstalledPbx) -> None:
    """The printed line, applied as printed (and reloaded as printed), passes."""
    code, err = check_config(service)
    assert code == 2, err
    fix = re.search(r"add `(channelvars = [^`]+)`, then `([^`]+)`", err)
    assert fix, err
    path = installed.etc_dir / "ari.conf"
    path.write_text(path.read_text().replace("[general]\n", f"[general]\n{fix.group(1)}\n", 1))
    installed.cli(fix.group(2))
    code, err = check_config(service)
    assert code == 0, err
