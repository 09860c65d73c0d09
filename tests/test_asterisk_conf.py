"""`serve --check-config` warns when Asterisk's disconnect feature shadows the
disposition codes (the built-in `*` is a prefix of `*81`..`*84`)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sentinelle.cli.main import main
from sentinelle.pbx.asterisk_conf import disconnect_conflicts, featuremap_disconnect

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplan"
SHIPPED = (DIALPLAN / "features_sentinelle.conf").read_text()


def test_builtin_disconnect_with_dial_h_shadows_every_code():
    warnings = disconnect_conflicts(SHIPPED, ["exten => _0X.,1,Dial(PJSIP/${EXTEN}@trunk,45,tH)"])
    assert len(warnings) == 5  # *81..*84 and the refusal code *9
    assert any("'*81'" in w and "disconnect => *0" in w for w in warnings)


def test_no_warning_without_h_or_with_another_disconnect_code():
    assert disconnect_conflicts(SHIPPED, ["exten => _0X.,1,Dial(PJSIP/${EXTEN}@trunk,45,tT)"]) == []
    assert disconnect_conflicts(SHIPPED, ["same => n,Dial(PJSIP/a,30,U(sub^h))"]) == []
    moved = "[featuremap]\ndisconnect => *0\n" + SHIPPED
    assert featuremap_disconnect(moved) == "*0"
    assert disconnect_conflicts(moved, ["same => n,Dial(PJSIP/a,30,h)"]) == []
    assert featuremap_disconnect(";disconnect => #\n") == "*"


def test_check_config_prints_the_warning(tmp_path):
    etc = tmp_path / "asterisk"
    etc.mkdir()
    (etc / "features.conf").write_text("[general]\n#include features_sentinelle.conf\n")
    (etc / "features_sentinelle.conf").write_text(SHIPPED)
    (etc / "extensions.conf").write_text("[out]\nexten => _0X.,1,Dial(PJSIP/${EXTEN}@t,45,h)\n")
    config = tmp_path / "sentinelle.toml"
    config.write_text(f'[server]\nasterisk_etc = "{etc}"\n')
    r = CliRunner().invoke(main, ["--config", str(config), "serve", "--check-config"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning: features.conf: the disconnect feature '*'") == 5
    (etc / "extensions.conf").write_text("[out]\nexten => _0X.,1,Dial(PJSIP/${EXTEN}@t,45)\n")
    r = CliRunner().invoke(main, ["--config", str(config), "serve", "--check-config"])
    assert "warning" not in r.output
