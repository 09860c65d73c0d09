"""The setup scripts install quietly: no debconf noise in the demo or test
output, real apt errors still shown (tested with a stand-in apt-get on PATH)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_APT = """#!/bin/sh
echo "debconf: delaying package configuration, since apt-utils is not installed" >&2
[ "$1" = install ] && echo "E: Unable to locate package nosuchpkg" >&2
exit 0
"""


def test_apt_install_drops_debconf_noise_and_keeps_errors(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    r = subprocess.run(
        ["bash", "-c", f'. {ROOT}/scripts/lib/apt.sh; apt_install nosuchpkg; wait'],
        capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)
    assert "debconf" not in r.stderr
    assert "E: Unable to locate package" in r.stderr


def test_no_setup_script_calls_apt_get_by_itself():
    for path in (ROOT / "scripts" / "bootstrap", ROOT / "scripts" / "test",
                 ROOT / "tests" / "pbx" / "build-root.sh"):
        host_lines = [line for line in path.read_text().splitlines()
                      if "apt-get install" in line and "chroot" not in line
                      and not line.lstrip().startswith(("#", "sh -c", "log "))]
        assert not host_lines, (path, host_lines)


def test_production_install_is_apart_from_the_developer_setup():
    """scripts/install puts runtime dependencies only on a PBX host: none of
    the test tools scripts/bootstrap brings (debootstrap, sipp, pytest...)."""
    text = (ROOT / "scripts" / "install").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "install")]).returncode == 0
    for tool in ("debootstrap", "sip-tester", "pytest", "ruff", "[test]", "chromium", "install -e"):
        assert tool not in text.split("set -euo pipefail", 1)[1], tool
    for unit in ("sentinelle.service", "sentinelle-purge.service", "sentinelle-purge.timer",
                 "sentinelle.toml"):
        assert (ROOT / "deploy" / unit).exists() and unit in text


def test_purge_units_verify(tmp_path):
    import shutil

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed to check the units (package systemd)"
    exe = ROOT / ".venv" / "bin" / "sentinelle"
    for name in ("sentinelle-purge.service", "sentinelle-purge.timer"):
        text = (ROOT / "deploy" / name).read_text().replace("/opt/sentinelle/venv/bin/sentinelle",
                                                           str(exe))
        (tmp_path / name).write_text(text)
    r = subprocess.run([analyze, "verify", str(tmp_path / "sentinelle-purge.timer"),
                        str(tmp_path / "sentinelle-purge.service")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_shipped_production_config_loads():
    from sentinelle.config import load_config

    config = load_config(str(ROOT / "deploy" / "sentinelle.toml"))
    assert config.store.path == "/var/lib/sentinelle/sentinelle.db"
    assert config.campaign(None).professional == "default"
