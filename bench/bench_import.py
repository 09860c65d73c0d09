"""Throughput and memory of `sentinelle import bloctel` on a 10 M-line file.

    python bench/bench_import.py [--small] [--profile] [--order random|sorted]

Generates (once, cached under /var/cache/sentinelle/bench/) a Bloctel answer
file of 10,000,000 ten-digit national numbers: 06 / 073-079 mobiles, 01-05
and 09 fixed lines, ~1 % overseas (0262, 0692, 0596, 0690, 0594...), a few
duplicates, LF line ends, in random order (or sorted with --order sorted).

Then runs the real CLI as a subprocess, as an admin would:

    sentinelle --config T/sentinelle.toml import bloctel FILE --campaign c1 --date D

twice: into an empty store, then again into the same store (the replace case,
which also drops the previous 10 M snapshot). It reports wall time,
numbers/s and peak RSS (from /usr/bin/time -v, else getrusage), and checks
the imported count.

Targets: >= 500,000 numbers/s and peak RSS <= 300 MB.

--profile also runs the import once under cProfile (in a subprocess) and
prints the top functions by own time; with py-spy on PATH it records a
sampling profile too (flamegraph SVG under bench/results/).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, RESULTS, Timer, write_result

GEN_VERSION = 1
TARGET_RATE = 500_000
TARGET_RSS_MB = 300
SIZES = {"full": 10_000_000, "small": 300_000}
SNAPSHOT_DATE = "2026-11-25"

# (national prefix as an int without the leading 0, number of trailing digits, share).
# Shares are of the whole file; overseas ~1 %.
BLOCKS: list[tuple[str, float]] = [
    ("6", 0.47),  # 06 mobiles (overseas 0639/069x removed below)
    ("7", 0.14),  # 073..079 mobiles
    ("1", 0.08), ("2", 0.06), ("3", 0.06), ("4", 0.07), ("5", 0.06),
    ("9", 0.05),
]
OVERSEAS: list[str] = ["262", "263", "269", "590", "594", "596", "639", "690", "691", "692",
                       "693", "694", "696", "697"]
OVERSEAS_SHARE = 0.01
DUPLICATES = 1_000  # repeated lines (a few per 10 M)
NOT_METRO = (*OVERSEAS, "70", "71", "72", "508")


def generate(path: Path, n: int, order: str, seed: int = 2026) -> None:
    """Unique numbers per block via random.sample, then shuffled (or sorted)."""
    rng = random.Random(seed)
    nums: list[int] = []  # 9-digit national significant numbers
    metro = n - int(n * OVERSEAS_SHARE) - DUPLICATES
    for first, share in BLOCKS:
        k = int(metro * share / sum(s for _, s in BLOCKS))
        base = int(first) * 100_000_000
        got = 0
        for x in rng.sample(range(100_000_000), int(k * 1.15) + 10):
            v = base + x
            if str(v).startswith(NOT_METRO):
                continue
            nums.append(v)
            got += 1
            if got == k:
                break
    per = int(n * OVERSEAS_SHARE) // len(OVERSEAS) + 1
    for pre in OVERSEAS:
        base = int(pre) * 1_000_000
        nums.extend(base + x for x in rng.sample(range(1_000_000), per))
    nums = nums[: n - DUPLICATES] if len(nums) > n - DUPLICATES else nums
    while len(nums) < n - DUPLICATES:  # rounding: top up with 06 numbers
        v = 600_000_000 + rng.randrange(100_000_000)
        if not str(v).startswith(NOT_METRO):
            nums.append(v)
    nums.extend(rng.sample(nums, DUPLICATES))
    if order == "sorted":
        nums.sort()
    else:
        rng.shuffle(nums)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="ascii", newline="\n") as fh:
        for start in range(0, len(nums), 1_000_000):
            fh.write("".join(f"0{v:09d}\n" for v in nums[start:start + 1_000_000]))
    tmp.rename(path)


def cached_file(n: int, order: str) -> tuple[Path, dict[str, Any]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bloctel-v{GEN_VERSION}-{n}-{order}.txt"
    info: dict[str, Any] = {"file": str(path)}
    if path.exists():
        info["generated"] = "cached"
    else:
        print(f"generating {path} ...", flush=True)
        with Timer() as t:
            generate(path, n, order)
        info["generated"] = "now"
        info["generate_s"] = round(t.seconds, 1)
        print(f"  generated in {t.seconds:.1f} s")
    info["bytes"] = path.stat().st_size
    info["lines"] = n
    return path, info


def sentinelle_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("sentinelle")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sentinelle.cli"]


def write_config(workdir: Path) -> Path:
    cfg = workdir / "sentinelle.toml"
    cfg.write_text(
        '[store]\npath = "store.db"\n\n[professionals.acme]\n\n'
        '[campaigns.c1]\nprofessional = "acme"\n', encoding="utf-8")
    return cfg


_TIME_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
_TIME_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)")


def run_import(cfg: Path, path: Path, snapshot_date: str, prefix: list[str] | None = None,
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [*sentinelle_cmd(), "--config", str(cfg), "import", "bloctel", str(path),
           "--campaign", "c1", "--date", snapshot_date]
    cmd = [*(prefix or []), *cmd]
    use_time = Path("/usr/bin/time").exists() and not prefix
    if use_time:
        cmd = ["/usr/bin/time", "-v", *cmd]
    env = {**os.environ, **(extra_env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = {"wall_s": round(wall, 2), "rc": proc.returncode,
                           "stdout": proc.stdout.strip()[-400:],
                           "cpu_user_s": round(after.ru_utime - before.ru_utime, 2),
                           "cpu_sys_s": round(after.ru_stime - before.ru_stime, 2)}
    m = _TIME_RSS.search(proc.stderr) if use_time else None
    # ru_maxrss of RUSAGE_CHILDREN is the max over all children so far: only a
    # fallback, exact for the first child.
    out["peak_rss_mb"] = round((int(m.group(1)) if m else after.ru_maxrss) / 1024, 1)
    out["rss_source"] = "/usr/bin/time -v" if m else "getrusage(RUSAGE_CHILDREN)"
    if proc.returncode != 0:
        out["stderr"] = proc.stderr[-2000:]
    return out


def snapshot_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT count FROM bloctel_snapshots WHERE state='current'").fetchone()
        return row[0] if row else -1
    finally:
        conn.close()


def profile(cfg: Path, path: Path, top: int = 25) -> dict[str, Any]:
    prof = RESULTS / "bench_import.prof"
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "sentinelle.cli",
           "--config", str(cfg), "import", "bloctel", str(path), "--campaign", "c1",
           "--date", SNAPSHOT_DATE]
    with Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    print(f"\ncProfile (wall {t.seconds:.1f} s under the profiler, rc {proc.returncode}):")
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    print("\n".join(lines[start:start + top + 1]))
    result: dict[str, Any] = {"cprofile_wall_s": round(t.seconds, 1),
                              "cprofile_top": lines[start:start + top + 1]}
    pyspy = shutil.which("py-spy") or shutil.which("py-spy", path="/tmp/pyspy/bin")
    if pyspy:
        raw = RESULTS / "bench_import-pyspy.txt"
        subprocess.run([pyspy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--",
                        *sentinelle_cmd(), "--config", str(cfg), "import", "bloctel",
                        str(path), "--campaign", "c1", "--date", SNAPSHOT_DATE],
                       capture_output=True, check=False)
        result["pyspy"] = {"raw": str(raw), **pyspy_summary(raw)}
    return result


def pyspy_summary(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self time per leaf frame and inclusive time per frame, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    pick = lambda d: [f"{100 * v / total:5.1f}%  {k}" for k, v in  # noqa: E731
                      sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    print(f"\npy-spy ({total} samples), self time:")
    print("\n".join(pick(own)))
    print("py-spy inclusive time:")
    print("\n".join(pick(incl)))
    return {"samples": total, "self": pick(own), "inclusive": pick(incl)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="300 k lines, < 60 s (CI smoke test)")
    ap.add_argument("--order", choices=["random", "sorted"], default="random")
    ap.add_argument("--profile", action="store_true", help="also profile one import")
    ap.add_argument("--file", type=Path, help="import this file instead of the generated one")
    args = ap.parse_args()
    n = SIZES["small" if args.small else "full"]
    if args.file:
        path, info = args.file, {"file": str(args.file), "bytes": args.file.stat().st_size}
        n = sum(1 for _ in args.file.open("rb"))
        info["lines"] = n
    else:
        path, info = cached_file(n, args.order)
    where = subprocess.run([sys.executable, "-c", "import sentinelle; print(sentinelle.__file__)"],
                           capture_output=True, text=True, check=False).stdout.strip()
    print(f"sentinelle under test: {where}")
    result: dict[str, Any] = {"input": info, "order": args.order, "sentinelle": where,
                              "targets": {"numbers_per_s": TARGET_RATE, "peak_rss_mb": TARGET_RSS_MB}}
    workdir = Path(tempfile.mkdtemp(prefix="sentinelle-import-"))
    try:
        cfg = write_config(workdir)
        db = workdir / "store.db"
        runs = {}
        for name, day in (("first_import", SNAPSHOT_DATE), ("replace_import", "2026-11-26")):
            r = run_import(cfg, path, day)
            if r["rc"] != 0:
                print(f"{name}: FAILED rc={r['rc']}\n{r.get('stderr', '')}")
                runs[name] = r
                continue
            r["count"] = snapshot_count(db)
            r["numbers_per_s"] = round(n / r["wall_s"])
            r["store_mb"] = round(db.stat().st_size / 1e6, 1)
            runs[name] = r
            rate_ok = r["numbers_per_s"] >= TARGET_RATE
            rss_ok = r["peak_rss_mb"] <= TARGET_RSS_MB
            print(f"{name}: {n:,} lines -> {r['count']:,} numbers in {r['wall_s']:.1f} s = "
                  f"{r['numbers_per_s']:,} lines/s [{'PASS' if rate_ok else 'MISS'}], "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB [{'PASS' if rss_ok else 'MISS'}] "
                  f"(cpu user {r['cpu_user_s']} s, sys {r['cpu_sys_s']} s)", flush=True)
            r["meets_target"] = rate_ok and rss_ok
        result["runs"] = runs
        if args.profile:
            result["profile"] = profile(cfg, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_result("bench_import", args.small, result)
    return 0 if all(r.get("meets_target") for r in result["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
