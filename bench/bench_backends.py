"""SQLite beside PostgreSQL, in the same run: check-and-record, Bloctel import,
and FastAGI throughput with 1, 2 and 4 workers.

    python bench/bench_backends.py [--small] [--seconds S]

Starts a throwaway PostgreSQL cluster of its own (scripts/lib/pgcluster.py:
fsync on, the server's default synchronous commit), builds the same store on
both backends (N opposed numbers in a Bloctel snapshot, M attempts over the
90 days before the bench instant, a consent per callee), then measures:

1. in-process `guard.check` with record (check-and-record): p50/p99 per
   backend, and their ratio (PostgreSQL / SQLite);
2. the import of the N Bloctel numbers through the store's snapshot API
   (COPY on PostgreSQL): numbers/s per backend;
3. `sentinelle serve` through FastAGI at 20 and 100 calls in flight:
   SQLite with 1 worker, PostgreSQL with 1, 2 and 4 workers (checks/s, p50,
   p99), beside a no-op FastAGI responder measured in the same run, with
   the CPU each check cost the service (all its workers), PostgreSQL (every
   process of the cluster) and the load generator: their sum bounds what
   the machine's cores can do whatever the number of workers
   (`ceiling_checks_per_s` = cores / CPU-seconds per check).

Sizes: --small 200,000 numbers / 100,000 attempts; full 10,000,000 /
5,000,000 (the issue's). The machine is shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, Timer, fmt, percentiles, write_result
from bench_fastagi import fastagi_load
from sentinelle.config import load_config
from sentinelle.guard import Request, check
from sentinelle.store import BLOCTEL_BATCH, open_store, ts

AT = datetime.fromisoformat("2026-12-01T11:00:00+01:00")
SIZES = {"small": (200_000, 100_000, 20_000), "full": (10_000_000, 5_000_000, 1_000_000)}
CONFIG = """
[store]
path = "{path}"
{url}
[professionals.acme]
[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"
[server]
listen = "127.0.0.1:{port}"
request_timeout_s = 5.0
{workers}
"""


def pgcluster() -> Any:
    spec = importlib.util.spec_from_file_location("pgcluster", REPO / "scripts/lib/pgcluster.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def callee(i: int) -> str:
    return f"+336{10_000_000 + i:08d}"


def write_config(d: Path, name: str, url: str, workers: int = 1) -> tuple[Path, int]:
    port = free_port()
    path = d / f"{name}.toml"
    path.write_text(CONFIG.format(path=d / "sentinelle.db", url=f'url = "{url}"' if url else "",
                                  port=port, workers=f"workers = {workers}" if workers > 1 else ""))
    return path, port


def build(config_path: Path, numbers: int, attempts: int, callees: int) -> dict[str, float]:
    """The store: consents, attempts (bulk), and the Bloctel import, timed."""
    config = load_config(str(config_path))
    rnd = random.Random(7)
    with open_store(config.store, create=True, busy_timeout_ms=60_000) as store:
        def fill(conn: Any) -> None:
            store.copy_rows(conn, "consents", ("professional", "e164", "given_at", "source"),
                            (("acme", callee(i), ts(AT - timedelta(days=100)), "bench")
                             for i in range(callees)))
            store.copy_rows(conn, "attempts", ("professional", "campaign", "e164", "at"),
                            (("acme", "promo", callee(rnd.randrange(callees)),
                              ts(AT - timedelta(seconds=rnd.randrange(90 * 86400))))
                             for _ in range(attempts)))
        store.run(fill, immediate=True)
        with Timer() as t:
            sid = store.begin_snapshot("acme", AT.date(), "opposed", "bench")
            batch: list[int] = []
            for i in range(numbers):
                batch.append(33700000000 + i * 3)
                if len(batch) == BLOCTEL_BATCH:
                    store.load_snapshot(sid, batch)
                    batch = []
            if batch:
                store.load_snapshot(sid, batch)
            store.commit_snapshot(sid)
    return {"import_s": round(t.seconds, 2), "import_numbers_per_s": round(numbers / t.seconds)}


def in_process(config_path: Path, checks: int, callees: int) -> dict[str, Any]:
    config = load_config(str(config_path))
    rnd = random.Random(11)
    lat: list[int] = []
    with open_store(config.store) as store:
        for i in range(checks):
            number = "0" + callee(rnd.randrange(callees))[3:]
            req = Request(dialled=number, at=AT + timedelta(seconds=i), campaign="promo",
                          caller_id="0162000000", record=True, source="bench")
            t0 = time.perf_counter_ns()
            check(config, store, req)
            lat.append(time.perf_counter_ns() - t0)
    return percentiles(lat)


def _cpu(pids: list[int]) -> dict[int, float]:
    """pid -> user + system CPU seconds, with the CPU of the children each
    has reaped (a PostgreSQL backend that ended), for the processes alive."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return out


def _processes(*, session: int | None = None, under: str | None = None) -> list[int]:
    """Pids in a session (the serve and its workers), or a PostgreSQL
    cluster's: the postmaster (its command line names the data directory)
    and its children (backends, checkpointer, WAL writer...)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if session is not None and os.getsid(pid) == session:
                out.append(pid)
            elif under is not None and under in (entry / "cmdline").read_bytes().decode(
                    errors="replace"):
                out.append(pid)
                out += [int(c) for c in (entry / "task" / entry.name / "children").read_text()
                        .split()]
        except OSError:
            continue
    return sorted(set(out))


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two samples; a process born in between
    counts from zero."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Serve:
    def __init__(self, config_path: Path, port: int, noop: bool = False) -> None:
        self.port = port
        if noop:
            # bench_pbx's stub responder: the AGI exchange of an ALLOW, no decision
            cmd = [sys.executable, str(Path(__file__).with_name("bench_pbx.py")), "--stub",
                   str(port), "stub5"]
        else:
            cmd = [str(REPO / ".venv/bin/sentinelle"), "--config", str(config_path), "serve",
                   "--at", AT.isoformat()]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                time.sleep(0.5)  # every worker listening
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"serve on {port} did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def fastagi(config_path: Path, port: int, callees: int, seconds: float,
            noop: bool = False, pg_data: str | None = None) -> dict[int, dict[str, Any]]:
    rnd = random.Random(5)
    pairs = [("0" + callee(rnd.randrange(callees))[3:], "promo") for _ in range(5000)]
    out = {}
    serve = Serve(config_path, port, noop)
    cores = os.cpu_count() or 1
    try:
        for conc in (20, 100):
            def sample() -> tuple[dict[int, float], dict[int, float]]:
                return (_cpu(_processes(session=serve.proc.pid)),
                        _cpu(_processes(under=pg_data)) if pg_data else {})

            before = sample()
            r = asyncio.run(fastagi_load(port, pairs, conc, seconds))
            after = sample()
            checks = max(r["checks"], 1)
            cpu_ms = {"service": 1000 * _cpu_spent(before[0], after[0]) / checks,
                      "postgresql": 1000 * _cpu_spent(before[1], after[1]) / checks,
                      "client": 1000 * r["client_cpu_s"] / checks}
            total = sum(cpu_ms.values())
            out[conc] = {"checks_per_s": r["checks_per_s"], "latency": r["latency"],
                         "errors": r["errors"],
                         "cpu_ms_per_check": {k: round(v, 3) for k, v in cpu_ms.items()},
                         "ceiling_checks_per_s": round(cores * 1000 / total) if total else None,
                         "ceiling_without_client": round(
                             cores * 1000 / (total - cpu_ms["client"]))
                         if total > cpu_ms["client"] else None}
    finally:
        serve.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    numbers, attempts, callees = SIZES["small" if args.small else "full"]
    cluster = pgcluster()
    work = Path(tempfile.mkdtemp(prefix="sentinelle-bench-"))
    pg_base = Path(tempfile.mkdtemp(prefix="sentinelle-pg-bench-"))
    url = cluster.start(pg_base)
    results: dict[str, Any] = {"numbers": numbers, "attempts": attempts, "callees": callees}
    try:
        sqlite_cfg, _ = write_config(work, "sqlite", "")
        pg_cfg, _ = write_config(work, "pg", url)
        for name, cfg in (("sqlite", sqlite_cfg), ("postgresql", pg_cfg)):
            results[name] = {"build": build(cfg, numbers, attempts, callees)}
            print(f"{name}: import {results[name]['build']['import_numbers_per_s']:,} numbers/s")
        for name, cfg in (("sqlite", sqlite_cfg), ("postgresql", pg_cfg)):
            p = in_process(cfg, 2000, callees)
            results[name]["check_and_record"] = p
            print(f"{name}: check-and-record {fmt(p)}")
        ratio = (results["postgresql"]["check_and_record"]["p99_ms"]
                 / results["sqlite"]["check_and_record"]["p99_ms"])
        print(f"p99 PostgreSQL / SQLite: {ratio:.2f}x")
        runs: dict[str, Any] = {}
        cfg, port = write_config(work, "noop", "")
        runs["noop"] = fastagi(cfg, port, callees, args.seconds, noop=True)
        cfg, port = write_config(work, "sqlite-1", "")
        runs["sqlite-1"] = fastagi(cfg, port, callees, args.seconds)
        for workers in (1, 2, 4):
            cfg, port = write_config(work, f"pg-{workers}", url, workers)
            runs[f"postgresql-{workers}"] = fastagi(cfg, port, callees, args.seconds,
                                                    pg_data=str(pg_base / "data"))
        results["fastagi"] = runs
        for name, by_conc in runs.items():
            for conc, r in by_conc.items():
                lat = r["latency"] or {"p50_ms": 0, "p99_ms": 0}
                cpu = r["cpu_ms_per_check"]
                print(f"fastagi {name:>14} @{conc:>3}: {r['checks_per_s']:>8.1f} checks/s"
                      f"  p50 {lat['p50_ms']:.2f}  p99 {lat['p99_ms']:.2f} ms  {r['errors']}"
                      f"  CPU/check: service {cpu['service']:.2f} + PostgreSQL "
                      f"{cpu['postgresql']:.2f} + client {cpu['client']:.2f} ms"
                      f" -> ceiling {r['ceiling_checks_per_s']}/s"
                      f" ({r['ceiling_without_client']}/s without the client)")
    finally:
        cluster.stop(pg_base)
        shutil.rmtree(work, ignore_errors=True)
    write_result("backends", args.small, results)


if __name__ == "__main__":
    main()
