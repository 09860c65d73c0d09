"""How long does a live check wait while a Bloctel import is loading?

    python bench/bench_concurrency.py [--small] [--seconds S] [--batch N]

Uses the store built by bench_decision.py (cached). A second process plays a
Bloctel import for another professional: begin_snapshot, then load_snapshot
batches back to back (each batch is one write transaction), either in random
order (what the current import does with a shuffled file) or in ascending
order (what a sorted load does). Meanwhile this process times
guard.check(record=True) (fr-2023, BEGIN IMMEDIATE: it must wait for the
batch's write lock) and record=False (WAL readers never wait) in a loop.

It reports the batch transaction durations and the check latencies with and
without the import running. Plain SQLite figure; nothing to pass or fail.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, fmt, percentiles, write_result
from bench_decision import SIZES, cached_store, callee_pool, config_for, instants, national
from sentinelle.guard import Request, check
from sentinelle.store import BLOCTEL_BATCH, Store

CAMPAIGN, CALLER_ID = "c1", "0948123456"


def importer(db: str, order: str, batch: int, seconds: float, gap_ms: float, ready: Any,
             out: Any) -> None:
    store = Store(db)
    sid = store.begin_snapshot("other", date(2026, 11, 25), "opposed", "bench")
    rng = random.Random(11)
    durations, nbatches = [], 0
    base = 33_600_000_000
    nxt = 0
    ready.set()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if order == "sorted":
            nums = list(range(base + nxt, base + nxt + batch * 7, 7))
            nxt += batch * 7
        else:
            nums = [base + rng.randrange(200_000_000) for _ in range(batch)]
        t0 = time.perf_counter_ns()
        store.load_snapshot(sid, nums)
        durations.append(time.perf_counter_ns() - t0)
        nbatches += 1
        if gap_ms:
            time.sleep(gap_ms / 1000)  # let waiting writers (checks) in
    rows = store.run(lambda c: c.execute(
        f"SELECT count(*) FROM bloctel_{int(sid)}").fetchone()[0])  # noqa: S608 - int id
    store.abort_snapshot(sid)
    store.close()
    out.put({"batches": nbatches, "rows": rows, "tx": percentiles(durations)})


def checks_for(store: Store, config: Any, pool: list[int], seconds: float, record: bool,
               rng: random.Random) -> tuple[list[int], int]:
    samples: list[int] = []
    blocked_sys = 0
    ats = instants(4000, rng)
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        req = Request(dialled=national(pool[rng.randrange(len(pool))]), at=ats[i % len(ats)],
                      campaign=CAMPAIGN, caller_id=CALLER_ID, record=record, source="agi")
        t0 = time.perf_counter_ns()
        d = check(config, store, req)
        samples.append(time.perf_counter_ns() - t0)
        if any(r.startswith("SYS-") for r in d.rules):
            blocked_sys += 1
        i += 1
    return samples, blocked_sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--batch", type=int, default=BLOCTEL_BATCH)
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="importer sleeps this long after each batch commit")
    args = ap.parse_args()
    size = SIZES["small" if args.small else "full"]
    seconds = args.seconds or (3.0 if args.small else 15.0)
    cached, info = cached_store(size, rebuild=False)
    workdir = Path(tempfile.mkdtemp(prefix="sentinelle-conc-"))
    db = workdir / "store.db"
    with Timer() as t:
        shutil.copyfile(cached, db)
        fd = os.open(db, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    print(f"store copied in {t.seconds:.1f} s")
    pool = callee_pool(size["callees"])
    rng = random.Random(5)
    config = config_for(str(db), "fr-2023")
    store = Store(db, busy_timeout_ms=config.store.busy_timeout_ms)
    result: dict[str, Any] = {"store": info, "seconds": seconds, "batch": args.batch,
                              "gap_ms": args.gap_ms,
                              "busy_timeout_ms": config.store.busy_timeout_ms, "runs": {}}
    ctx = mp.get_context("spawn")
    try:
        checks_for(store, config, pool, 1.0, True, rng)  # warm-up
        for label, order in (("idle", None), ("import_random", "random"),
                             ("import_sorted", "sorted")):
            run: dict[str, Any] = {}
            proc = None
            if order:
                ready, out = ctx.Event(), ctx.Queue()
                proc = ctx.Process(target=importer,
                                   args=(str(db), order, args.batch, seconds + 1, args.gap_ms,
                                         ready, out))
                proc.start()
                ready.wait()
            for record in (True, False):
                samples, sys_blocks = checks_for(store, config, pool, seconds / 2, record, rng)
                key = "record" if record else "dry"
                run[key] = {"latency": percentiles(samples), "sys_blocks": sys_blocks,
                            "checks_per_s": round(len(samples) / (seconds / 2))}
            if proc:
                imp = out.get()
                proc.join()
                run["import"] = imp
            result["runs"][label] = run
            print(f"\n{label}" + (f" (batches of {args.batch}, {order} order, gap {args.gap_ms} ms)"
                                   if order else ""))
            if proc:
                tx = run["import"]["tx"]
                rate = run["import"]["rows"] / (seconds + 1)
                print(f"  import batch tx: p50 {tx['p50_ms']:.1f}  p99 {tx['p99_ms']:.1f}  "
                      f"max {tx['max_ms']:.1f} ms over {run['import']['batches']} batches "
                      f"({run['import']['rows']:,} rows, {rate:,.0f} rows/s while checks run)")
                run["import"]["rows_per_s"] = round(rate)
            for key in ("record", "dry"):
                r = run[key]
                print(f"  check {key:6}: {fmt(r['latency'])}  {r['checks_per_s']:,}/s"
                      f"  SYS-STORE blocks: {r['sys_blocks']}")
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    write_result("bench_concurrency", args.small, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
