"""Prometheus metrics, scraped from a real `sentinelle serve` process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sentinelle.service.metrics import METRIC_NAMES
from tests.helpers.fakeasterisk import call, headers_for

README = Path(__file__).parent.parent / "README.md"
EXE = str(Path(sys.executable).parent / "sentinelle")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(config: Path, *args: str) -> None:
    subprocess.run([EXE, "--config", str(config), *args], check=True, capture_output=True)


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        assert proc.poll() is None, "serve exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def _value(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in metrics:\n{text}")


def test_metrics_scraped_from_serve(config_path, tmp_path, backend):
    agi_port, metrics_port = _free_port(), _free_port()
    text = config_path.read_text().replace("[campaigns.promo]", "[metrics]\nlisten = "
                                           f'"127.0.0.1:{metrics_port}"\n\n[campaigns.promo]')
    config_path.write_text(text + f'\n[server]\nlisten = "127.0.0.1:{agi_port}"\n')
    _cli(config_path, "init")
    # A consent given 350 days before the frozen clock expires within 30 days.
    _cli(config_path, "consent", "add", "0612345678", "--campaign", "promo", "--source", "web",
         "--at", "2025-12-16T10:00")
    bloctel = tmp_path / "b.txt"
    bloctel.write_text("0699999999\n")
    _cli(config_path, "import", "bloctel", str(bloctel), "--campaign", "promo",
         "--date", "2026-11-20")
    proc = subprocess.Popen([EXE, "--config", str(config_path), "serve", "--at",
                             "2026-12-01T10:30:00+01:00"], stderr=subprocess.DEVNULL)
    try:
        _wait_port(agi_port, proc)
        _wait_port(metrics_port, proc)
        allowed = asyncio.run(call(agi_port, headers_for("0612345678")))
        blocked = asyncio.run(call(agi_port, headers_for("0687654321")))
        assert (allowed.verdict, blocked.verdict) == ("ALLOW", "BLOCK")
        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(10)
    # A SQLite file's own (disk, WAL): a PostgreSQL server is monitored as one.
    file_only = {"sentinelle_store_disk_free_bytes", "sentinelle_store_wal_bytes",
                 "sentinelle_store_disk_refusals_total"}
    for name in METRIC_NAMES:
        assert (f"\n{name}" in body) == (backend == "sqlite" or name not in file_only), name
    assert _value(body, 'sentinelle_decisions_total{rule="",verdict="allow"}') == 1
    assert _value(body, 'sentinelle_decisions_total{rule="R-11",verdict="block"}') == 1
    assert _value(body, "sentinelle_check_seconds_count") == 2
    assert _value(body, 'sentinelle_bloctel_snapshot_age_days{professional="acme"}') == 11
    assert _value(body, 'sentinelle_consents_expiring{professional="acme"}') == 1
    assert _value(body, 'sentinelle_consents_expiring{professional="other"}') == 0
    assert _value(body, "sentinelle_store_up") == 1
    if backend == "sqlite":
        assert _value(body, "sentinelle_store_disk_refusals_total") == 0
    assert _value(body, "sentinelle_ari_connected") == 0


def test_every_metric_is_documented():
    text = README.read_text()
    assert [m for m in METRIC_NAMES if f"`{m}`" not in text] == []
