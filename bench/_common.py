"""Shared helpers for the sentinelle benchmarks (not a test suite: plain scripts)."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
CACHE = Path(os.environ.get("SENTINELLE_BENCH_CACHE", "/var/cache/sentinelle/bench"))


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds (nearest-rank)."""
    s = sorted(samples_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, max(0, round(p / 100 * n + 0.5) - 1))] / 1e6

    return {
        "n": n,
        "p50_ms": round(pct(50), 4),
        "p90_ms": round(pct(90), 4),
        "p99_ms": round(pct(99), 4),
        "p999_ms": round(pct(99.9), 4),
        "max_ms": round(s[-1] / 1e6, 4),
        "mean_ms": round(sum(s) / n / 1e6, 4),
    }


def fmt(p: dict[str, float]) -> str:
    return (f"p50 {p['p50_ms']:.3f}  p90 {p['p90_ms']:.3f}  p99 {p['p99_ms']:.3f}  "
            f"p99.9 {p['p999_ms']:.3f}  max {p['max_ms']:.3f} ms  (n={p['n']})")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
    }


def write_result(name: str, small: bool, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = "small" if small else "full"
    payload = {"bench": name, "mode": mode, "when": stamp, "machine": machine(), **data}
    path = RESULTS / f"{name}-{mode}-{stamp}.json"
    text = json.dumps(payload, indent=2, default=str)
    path.write_text(text)
    (RESULTS / f"{name}-{mode}-latest.json").write_text(text)
    print(f"\nresult written to {path.relative_to(REPO)}")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
