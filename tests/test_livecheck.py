"""`serve --check-config` asks the live PBX for what sentinelle needs (issue
#12, section 4; pbx/livecheck.py): the sentinelle contexts, the feature codes
and their DTMF, the ARI channelvars and the SENTINELLE_AGI global. One line
per missing item naming what to add where, exit 2 when any is missing, 0
when all are there; a PBX it cannot ask in full is a warning, not a failure.
The running service logs the same findings once, as WARNINGs.

The PBX here is tests/helpers/fake_ari.py, which answers as Asterisk 22 did;
tests/e2e/test_livecheck_e2e.py runs the same check on the real one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sentinelle.cli.main import main
from sentinelle.pbx import channelvars
from tests.helpers.fake_ari import PASSWORD, USER, FakePbx, running
from tests.test_metrics import _free_port

SHIPPED = FakePbx()
PROBLEM = re.compile(r"^(missing|wrong): ", re.M)


@pytest.fixture
def pbx() -> FakePbx:
    return FakePbx()


@pytest.fixture
def ari_url(pbx: FakePbx) -> Iterator[str]:
    with running(pbx) as url:
        yield url


def write_config(tmp_path: Path, url: str, extra: str = "", server: str = "") -> Path:
    path = tmp_path / "sentinelle.toml"
    path.write_text(f"""
[server]
asterisk_etc = "{tmp_path / 'no-asterisk-here'}"
{server}

[ari]
url = "{url}"
user = "{USER}"
password = "{PASSWORD}"
{extra}""")
    return path


def check(tmp_path: Path, url: str, *args: str, command: str = "serve", extra: str = "") -> Result:
    config = write_config(tmp_path, url, extra)
    return CliRunner().invoke(main, ["--config", str(config), command, "--check-config", *args])


def problems(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if PROBLEM.match(line)]


def test_all_present_passes_and_cleans_up(tmp_path, pbx, ari_url):
    r = check(tmp_path, ari_url)
    assert r.exit_code == 0, r.output
    assert "config ok" in r.stdout and r.stderr == ""
    # One probe channel, created in an app of its own (not the listener's,
    # without subscribeAll), hung up, and the app's websocket closed.
    assert pbx.requests.count("POST /ari/channels/create") == 1 and len(pbx.deleted) == 1
    assert not pbx.channels and not pbx.apps_open
    [query] = pbx.apps_seen
    assert query.startswith("app=sentinelle-livecheck-") and "subscribeAll" not in query


@pytest.mark.parametrize("context", sorted(SHIPPED.contexts))
def test_a_missing_context_is_named(tmp_path, pbx, ari_url, context):
    pbx.contexts.discard(context)
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    assert problems(r) == [
        f"missing: the dialplan context [{context}]: add it from dialplan/extensions_sentinelle.conf "
        "(`#include extensions_sentinelle.conf` in extensions.conf), then `dialplan reload`"]
    assert "error: the PBX lacks 1 item(s)" in r.stderr and "config ok" not in r.stdout


@pytest.mark.parametrize("feature", sorted(SHIPPED.features))
def test_a_missing_feature_is_named_with_its_line(tmp_path, pbx, ari_url, feature):
    line = f"{feature} => {pbx.features.pop(feature)}"
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    [problem] = problems(r)
    assert problem.startswith(f"missing: the feature {feature} (")
    # The line to add is the shipped line, and it says where it goes.
    assert f"add `{line}` to features.conf [applicationmap]" in problem
    assert "dialplan/features_sentinelle.conf" in problem and "module reload features" in problem


def test_a_feature_on_another_code_is_wrong(tmp_path, pbx, ari_url):
    pbx.features["sentinelle_refused"] = "*18,self,Gosub(sentinelle-disposition,s,1(refused))"
    pbx.features["sentinelle_callback"] = " *83 , Self , gosub(sentinelle-disposition,s,1(callback))"
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    assert problems(r) == [
        "wrong: the feature sentinelle_refused is `sentinelle_refused => *18,self,"
        "Gosub(sentinelle-disposition,s,1(refused))`: make it `sentinelle_refused => *81,self,"
        "Gosub(sentinelle-disposition,s,1(refused))` in features.conf [applicationmap] "
        "(dialplan/features_sentinelle.conf, `#include features_sentinelle.conf`), then "
        "`module reload features`"]


def test_the_refusal_feature_follows_refusal_dtmf(tmp_path, pbx, ari_url):
    """`[ari] refusal_dtmf` moved: the feature must move with it (the README
    says so; now the check does)."""
    r = check(tmp_path, ari_url, extra='refusal_dtmf = "*7"\n')
    assert r.exit_code == 2, r.output
    [problem] = problems(r)
    assert problem.startswith("wrong: the feature sentinelle_refusal is `sentinelle_refusal => *9,")
    assert "make it `sentinelle_refusal => *7,self,Gosub(sentinelle-disposition,s,1(refused))`" in problem
    pbx.features["sentinelle_refusal"] = "*7,self,Gosub(sentinelle-disposition,s,1(refused))"
    assert check(tmp_path, ari_url, extra='refusal_dtmf = "*7"\n').exit_code == 0


@pytest.mark.parametrize(("configured", "suggested"), [
    ("", "channelvars = SENTINELLE_ATTEMPT"),
    ("CAMPAIGN,AGENT_ID", "channelvars = AGENT_ID,CAMPAIGN,SENTINELLE_ATTEMPT"),
])
def test_missing_channelvars_are_named(tmp_path, pbx, ari_url, configured, suggested):
    pbx.channelvars = configured
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    [problem] = problems(r)
    assert problem.startswith(f"missing: SENTINELLE_ATTEMPT in ari.conf [general] channelvars: "
                              f"add `{suggested}`, then `module reload res_ari.so`")


def test_channelvars_among_others_pass(tmp_path, pbx, ari_url):
    pbx.channelvars = "CAMPAIGN, SENTINELLE_ATTEMPT"
    assert check(tmp_path, ari_url).exit_code == 0


def test_without_res_aris_config_view_channelvars_come_from_the_probe_channel(tmp_path, pbx,
                                                                             ari_url):
    pbx.dynamic_config = False
    assert check(tmp_path, ari_url).exit_code == 0
    pbx.channelvars = ""
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2 and problems(r)[0].startswith("missing: SENTINELLE_ATTEMPT"), r.output


def test_a_missing_agi_global_is_named(tmp_path, pbx, ari_url):
    pbx.globals.clear()
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    assert problems(r) == [
        f"missing: the dialplan global {channelvars.AGI_URL}: add "
        f"`{channelvars.AGI_URL}=agi://127.0.0.1:4573` to [globals] in extensions.conf, then "
        "`dialplan reload` (without it every guarded call is hung up)"]


def test_the_agi_line_never_suggests_a_wildcard_address():
    from sentinelle.pbx.livecheck import agi_url

    assert agi_url("127.0.0.1:4573") == "agi://127.0.0.1:4573"
    assert agi_url("0.0.0.0:4573") == agi_url("[::]:4573") == "agi://ADDRESS-OF-THIS-HOST:4573"


def test_everything_missing_is_one_line_each(tmp_path, pbx, ari_url):
    pbx.contexts.clear()
    pbx.features.clear()
    pbx.channelvars = ""
    pbx.globals.clear()
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2, r.output
    expected = 1 + len(channelvars.CONTEXTS) + len(channelvars.FEATURES) + 1
    assert len(problems(r)) == expected == 13
    assert f"error: the PBX lacks {expected} item(s)" in r.stderr


def test_listen_check_config_asks_too(tmp_path, pbx, ari_url):
    pbx.contexts.discard(channelvars.CONTEXT_DISPOSITION)
    r = check(tmp_path, ari_url, command="listen")
    assert r.exit_code == 2 and "[sentinelle-disposition]" in r.stderr, r.output


def test_a_read_only_user_gets_a_warning_not_a_failure(tmp_path, pbx, ari_url):
    """No probe channel without write access: the contexts and codes are not
    checked (said so), channelvars still are (a plain read)."""
    pbx.read_only = True
    r = check(tmp_path, ari_url)
    assert r.exit_code == 0, r.output
    assert "dialplan contexts and feature codes not checked" in r.stderr
    assert "read_only = no" in r.stderr and not problems(r)
    pbx.channelvars = ""
    r = check(tmp_path, ari_url)
    assert r.exit_code == 2 and problems(r)[0].startswith("missing: SENTINELLE_ATTEMPT"), r.output


def test_files_only_asks_nothing(tmp_path, pbx, ari_url):
    pbx.contexts.clear()
    r = check(tmp_path, ari_url, "--files-only")
    assert r.exit_code == 0, r.output
    assert pbx.requests == []


def test_a_pbx_that_does_not_answer_is_a_warning(tmp_path):
    """As for the credentials (tests/test_ari_auth.py): the service may start
    before the PBX. The warning says what went unchecked."""
    r = check(tmp_path, f"http://127.0.0.1:{_free_port()}/ari")
    assert r.exit_code == 0, r.output
    assert "not checked (nor the dialplan contexts, feature codes and channelvars)" in r.stderr


def test_the_running_service_logs_what_is_missing_once(tmp_path, pbx, ari_url):
    """The unit's pre-start check reads the files only: the running service
    says what the PBX lacks, once the listener is connected, as WARNINGs."""
    pbx.contexts.discard(channelvars.CONTEXT_OUTCOME)
    pbx.channelvars = ""
    config = write_config(tmp_path, ari_url, server=f'listen = "127.0.0.1:{_free_port()}"')
    exe = str(Path(sys.executable).with_name("sentinelle"))
    subprocess.run([exe, "--config", str(config), "init"], check=True, capture_output=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "--config", str(config), "--log-level", "INFO", "serve"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "live PBX checked" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(15)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    lacks = [line for line in lines if line.get("msg") == "the PBX lacks what sentinelle needs"]
    assert [line["level"] for line in lacks] == ["warning", "warning"], lines
    items = sorted(line["item"] for line in lacks)
    assert items[0].startswith("missing: SENTINELLE_ATTEMPT in ari.conf")
    assert items[1].startswith("missing: the dialplan context [sentinelle-outcome]")
    assert pbx.requests.count("POST /ari/channels/create") == 1 and not pbx.channels
