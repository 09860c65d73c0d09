"""End-to-end fixtures: a real Asterisk (tests/pbx), a real `sentinelle serve`
process, real sipp. Nothing here is skipped: if the PBX root cannot be built
or Asterisk cannot start, the tests fail with the harness's message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: `pbx`, `fakeasterisk`

from pbx import Pbx, free_ports
from sentinelle.logs import read_events

REPO = Path(__file__).parent.parent.parent
VENV_BIN = REPO / ".venv" / "bin"
# A Tuesday inside the legal hours: today's real date may be a Sunday.
FROZEN = "2026-12-01T10:30:00+01:00"
NPV = "0162000000"

E2E_CONFIG = """
[store]
path = "{store}"

[policy]
regime = "auto"

[professionals.acme]
caller_ids = ["0142000000"]

[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"

[campaigns.manual]
professional = "acme"
dialing = "manual"

[server]
listen = "127.0.0.1:{port}"
request_timeout_s = 2.0
{extra}
"""


def sentinelle_exe() -> str:
    exe = VENV_BIN / "sentinelle"
    return str(exe) if exe.exists() else "sentinelle"


class Service:
    """A `sentinelle serve` subprocess with its own config and store."""

    def __init__(self, workdir: Path, at: str | None = FROZEN, extra: str = "",
                 store: Path | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.store = store or workdir / "sentinelle.db"
        self.config = workdir / "sentinelle.toml"
        self.config.write_text(E2E_CONFIG.format(port=self.port, extra=extra, store=self.store))
        self.at = at
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sentinelle_exe(), "--config", str(self.config), *args],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode not in (0, 1):
            raise AssertionError(f"sentinelle {' '.join(args)} failed: {r.stderr}")
        return r

    def check_json(self, number: str, at: str = FROZEN) -> dict:
        r = self.cli("check", number, "--campaign", "promo", "--caller-id", NPV, "--at", at,
                     "--json")
        return json.loads(r.stdout)

    def consent(self, number: str) -> None:
        self.cli("consent", "add", number, "--campaign", "promo", "--source", "e2e-web-form",
                 "--at", "2026-11-01T10:00:00+01:00")

    def start(self) -> Service:
        cmd = [sentinelle_exe(), "--config", str(self.config), "--log-level", "INFO", "serve"]
        if self.at:
            cmd += ["--at", self.at]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sentinelle serve exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"sentinelle serve did not listen: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code, self.proc = self.proc.returncode, None
        return code

    def decisions(self) -> list[dict]:
        """Structured decision log lines written by the service."""
        return read_events(self.log.read_text().splitlines(), "decision")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    svc.cli("init")
    yield svc
    svc.stop()


@pytest.fixture
def pbx(service: Service) -> Iterator[Pbx]:
    with Pbx(agi_url=service.agi_url, campaign="promo") as p:
        yield p


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (debootstrap, chroot, namespaces)")
