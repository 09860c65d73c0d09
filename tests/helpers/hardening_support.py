"""Helpers shared by the tests/test_hardening_*.py files: a real
`sentinelle serve` subprocess, a timed FastAGI probe, figures for the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.fakeasterisk import call, headers_for
from tests.helpers.testconfig import ACME_PROMO

REPO = Path(__file__).resolve().parents[2]
FROZEN = "2026-12-01T10:30:00+01:00"  # a Tuesday inside the legal hours (fr-2026)
NPV = "0162000000"


def sentinelle_exe() -> str:
    exe = Path(sys.executable).parent / "sentinelle"
    return str(exe) if exe.exists() else "sentinelle"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """
[store]
path = "{store}"
busy_timeout_ms = {busy_timeout_ms}
{store_extra}

[policy]
regime = "{regime}"
""" + ACME_PROMO.replace("{", "{{").replace("}", "}}") + """
[server]
listen = "127.0.0.1:{port}"
request_timeout_s = {request_timeout_s}
{server_extra}
{extra}
"""


class Serve:
    """`sentinelle serve` in a subprocess, with its own config, store and log."""

    def __init__(self, workdir: Path, *, at: str | None = FROZEN, regime: str = "auto",
                 busy_timeout_ms: int = 1500, request_timeout_s: float = 2.0,
                 server_extra: str = "", extra: str = "", store: Path | None = None,
                 env: dict[str, str] | None = None, store_extra: str = "",
                 wrap: tuple[str, ...] = ()) -> None:
        """`store_extra`: more [store] keys (e.g. `url = "postgresql://..."`).
        `wrap` prefixes the serve command (e.g. `setpriv` dropping the
        capabilities that let root ignore permission bits)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.store = store or workdir / "sentinelle.db"
        self.config = workdir / "sentinelle.toml"
        self.config.write_text(CONFIG.format(
            store=self.store, port=self.port, regime=regime, busy_timeout_ms=busy_timeout_ms,
            request_timeout_s=request_timeout_s, server_extra=server_extra, extra=extra,
            store_extra=store_extra))
        self.at = at
        self.env = env
        self.wrap = wrap
        self.log = workdir / "serve.log"
        self.host = "127.0.0.1"  # where start() waits for the listener
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sentinelle_exe(), "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=self.env)

    def start(self, *args: str) -> Serve:
        cmd = [*self.wrap, sentinelle_exe(), "--config", str(self.config), "--log-level", "INFO", "serve",
               *args]
        if self.at:
            cmd += ["--at", self.at]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sentinelle serve exited: {self.log.read_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop(signal.SIGKILL)  # never leave a stray service behind
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

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Probe:
    number: str
    started: float
    ended: float
    verdict: str | None
    rules: str
    reason: str
    attempt: int | None

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000


async def probe(port: int, number: str, campaign: str = "promo", timeout: float = 10.0,
                host: str = "127.0.0.1") -> Probe:
    """One FastAGI check as Asterisk runs it, timed (monotonic clock)."""
    t0 = time.monotonic()
    try:
        res = await call(port, headers_for(number, campaign=campaign), host=host,
                         timeout=timeout)
        v = res.variables
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        v = {}
    attempt = v.get("SENTINELLE_ATTEMPT") or None
    return Probe(number, t0, time.monotonic(), v.get("SENTINELLE_VERDICT"),
                 v.get("SENTINELLE_RULES", ""), v.get("SENTINELLE_REASON", ""),
                 int(attempt) if attempt else None)


def report(request, line: str) -> None:
    """A figure for the run's output, shown even when pytest captures output."""
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(line)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return (s[n // 2] + s[(n - 1) // 2]) / 2 if n else float("nan")


def scaled(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))
