"""Export throughput/memory and report generation time on a large store.

    python bench/bench_evidence.py [--small] [--purge]

Builds (once, cached under /var/cache/sentinelle/bench/) a store of
1,000,000 decisions over 91 days (100,000 with --small) shaped like the
service's: ~60 % allowed with their attempts and ARI outcomes, blocks by
R-20/R-11/R-30/R-31, 1 % refusals, 50,000 consents, the decision `inputs`
JSON as `guard` writes it (~700 bytes). Then runs the real CLI in
subprocesses, as an admin would:

    sentinelle export decisions --from ... --to ... --format csv|jsonl --out F
    sentinelle export attempts  ... --format csv
    sentinelle report --from ... --to ... --out report.html
    retention.purge (with --purge, on a copy, as of 3 years after: every row expired)

and reports wall time, rows/s and peak RSS (getrusage of the child).
Targets: export >= 50,000 rows/s with peak RSS under 100 MB whatever the
row count; report of 1 M decisions under 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _common import CACHE, REPO, write_result

sys.path.insert(0, str(REPO / "agi"))
from sentinelle.store import Store, ts

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 9, 1, tzinfo=PARIS)
DAYS = 91
CONFIG = """
[store]
path = "{db}"
[professionals.acme]
[campaigns.promo]
professional = "acme"
[campaigns.promo2]
professional = "acme"
[campaigns.press]
professional = "acme"
purpose = "press"
"""


def build(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    pool = [f"+336{rng.randrange(10**8):08d}" for _ in range(150_000)]
    pool += [f"+262692{rng.randrange(10**6):06d}" for _ in range(5000)]
    pool += [f"+590690{rng.randrange(10**6):06d}" for _ in range(3000)]
    policy = {"regime": "auto", "consent_max_age_days": 365, "foreign": "block",
              "cautious_alsace": True, "bloctel_max_age_days": 30}
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    store = Store(tmp, create=True)

    def fill(conn: Any) -> None:
        decisions, attempts, refusals = [], [], []
        # The service appends decisions as calls happen: ids follow time.
        instants = sorted(START + timedelta(days=rng.randrange(DAYS), hours=9 + rng.random() * 12)
                          for _ in range(n))
        for i, at in enumerate(instants, start=1):
            e164 = rng.choice(pool)
            camp = rng.choices(["promo", "promo2", "press"], [6, 3, 1])[0]
            history = {"attempts": [ts(at - timedelta(days=d)) for d in range(rng.randrange(4))],
                       "refusals": [], "consents": [{"given_at": ts(at - timedelta(days=90)),
                                                     "source": "web-form", "revoked_at": None}],
                       "contract": False, "opted_out": False, "bloctel": None,
                       "department": None}
            inputs = {"dialled": "0" + e164[3:], "caller_id": "0162000000", "masked": False,
                      "campaign": camp, "context": {"agi_uniqueid": f"1700000000.{i}",
                                                    "agi_channel": f"PJSIP/agent{i % 40}-0001"},
                      "policy": policy, "notes": [], "history": history}
            hour = at.hour
            if not (10 <= hour < 13 or 14 <= hour < 20) or at.weekday() >= 5:
                verdict, rules = "block", "R-20"
                reasons = ["R-20: callee local time outside 10:00-13:00, 14:00-20:00"]
            elif rng.random() < 0.8:
                verdict, rules, reasons = "allow", "", []
            else:
                rules = rng.choice(["R-11", "R-30", "R-31", "R-30,R-31"])
                verdict, reasons = "block", [f"{r}: synthetic" for r in rules.split(",")]
            attempt_id = None
            if verdict == "allow":
                attempt_id = len(attempts) + 1
                outcome = rng.choices(["answered", "busy", "no-answer", "failed", None],
                                      [6, 1, 2, 1, 0.2])[0]
                answered = ts(at + timedelta(seconds=9)) if outcome == "answered" else None
                attempts.append(("acme", camp, e164, ts(at), i, outcome, answered,
                                 ts(at + timedelta(seconds=60)), 16 if answered else 17))
                if answered and rng.random() < 0.03:
                    refusals.append(("acme", camp, e164, ts(at + timedelta(seconds=30)), "dtmf",
                                     attempt_id, ts(at)))
            decisions.append((ts(at), "fastagi", camp, "acme", inputs["dialled"], e164,
                              "0162000000", verdict, rules, json.dumps(reasons), "fr-2026", None,
                              attempt_id, json.dumps(inputs)))
            if len(decisions) == 50_000 or i == n:
                conn.executemany(
                    "INSERT INTO decisions (at, source, campaign, professional, dialled, e164,"
                    " caller_id, verdict, rules, reasons, regime, retry_at, attempt_id, inputs)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", decisions)
                decisions.clear()
        conn.executemany(
            "INSERT INTO attempts (professional, campaign, e164, at, decision_id, outcome,"
            " answered_at, ended_at, cause) VALUES (?,?,?,?,?,?,?,?,?)", attempts)
        conn.executemany(
            "INSERT INTO refusals (professional, campaign, e164, at, source, attempt_id,"
            " recorded_at) VALUES (?,?,?,?,?,?,?)", refusals)
        conn.executemany(
            "INSERT INTO consents (professional, e164, given_at, source, channel, wording,"
            " evidence_ref, recorded_at) VALUES (?,?,?,?,?,?,?,?)",
            (("acme", e, ts(START - timedelta(days=rng.randrange(300))), "web-form", "web",
              "v3", f"form-{k}", ts(START)) for k, e in enumerate(rng.sample(pool, 50_000))))

    store.run(fill, immediate=True)
    store.close()
    tmp.rename(path)


def run_cli(config: Path, *args: str) -> tuple[float, int, str]:
    """(seconds, peak RSS in MiB, stdout) of one CLI run in its own process."""
    code = (
        "import sys\n"
        "from sentinelle.cli import main\n"
        "try:\n"
        f"    main({['--config', str(config), *args]!r})\n"
        "except SystemExit as e:\n"
        "    if e.code: raise\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('RSS', hwm.split()[1], file=sys.stderr)\n"
    )
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sentinelle {' '.join(args)} failed:\n{r.stderr}")
    rss = int(r.stderr.split("RSS")[-1].split()[0]) // 1024
    return seconds, rss, r.stdout + r.stderr.split("RSS")[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="100,000 decisions instead of 1 M")
    ap.add_argument("--purge", action="store_true", help="also time a purge of every row")
    args = ap.parse_args()
    n = 100_000 if args.small else 1_000_000
    CACHE.mkdir(parents=True, exist_ok=True)
    db = CACHE / f"evidence-{n}.db"
    if not db.exists():
        print(f"building {db} ({n:,} decisions)...", flush=True)
        t0 = time.perf_counter()
        build(db, n)
        print(f"  built in {time.perf_counter() - t0:.0f} s, {db.stat().st_size >> 20} MiB")
    results: dict[str, Any] = {"decisions": n, "store_mib": db.stat().st_size >> 20}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sentinelle.toml"
        config.write_text(CONFIG.format(db=db))
        span = ("--from", "2026-09-01", "--to", "2026-11-30")
        for table, fmt in (("decisions", "csv"), ("decisions", "jsonl"), ("attempts", "csv")):
            out = Path(tmp) / f"{table}.{fmt}"
            seconds, rss, _ = run_cli(config, "export", table, *span, "--format", fmt,
                                      "--out", str(out))
            rows = sum(1 for _ in out.open()) - (fmt == "csv")
            key = f"export_{table}_{fmt}"
            results[key] = {"rows": rows, "seconds": round(seconds, 2),
                            "rows_per_s": round(rows / seconds), "peak_rss_mib": rss,
                            "out_mib": out.stat().st_size >> 20}
            print(f"{key}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s, "
                  f"peak RSS {rss} MiB, {out.stat().st_size >> 20} MiB written")
            out.unlink()
        html = Path(tmp) / "report.html"
        seconds, rss, _ = run_cli(config, "report", *span, "--out", str(html))
        results["report"] = {"seconds": round(seconds, 2), "peak_rss_mib": rss,
                             "kib": html.stat().st_size >> 10}
        print(f"report: {seconds:.1f} s, peak RSS {rss} MiB, {html.stat().st_size >> 10} KiB")
        if args.purge:
            copy = Path(tmp) / "purge.db"
            shutil.copy(db, copy)
            # The data is recent: purge "as of" 3 years and a week after it, so
            # that every row is expired, through the same code as `sentinelle purge`.
            now = START + timedelta(days=DAYS + 1095 + 7)
            code = (
                "import sys\n"
                "from datetime import datetime, timedelta\n"
                "from sentinelle.store import Store\n"
                "from sentinelle.evidence.retention import purge, purge_bounds\n"
                f"s = Store({str(copy)!r})\n"
                f"r = purge(s, purge_bounds(datetime.fromisoformat({now.isoformat()!r}),"
                " timedelta(days=1095), 365))\n"
                "print(sum(r.deleted.values()), r.batches, r.longest_batch_s, r.seconds)\n"
                "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('RSS', hwm.split()[1], file=sys.stderr)\n"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True)
            deleted, batches, longest, seconds = proc.stdout.split()
            rss = int(proc.stderr.split("RSS")[-1].split()[0]) // 1024
            results["purge"] = {"rows": int(deleted), "batches": int(batches),
                                "longest_batch_ms": round(float(longest) * 1000, 1),
                                "seconds": round(float(seconds), 1), "peak_rss_mib": rss}
            print(f"purge: {int(deleted):,} rows in {float(seconds):.0f} s "
                  f"({int(deleted) / float(seconds):,.0f} rows/s incl. pauses), {batches} "
                  f"batches, longest {float(longest) * 1000:.0f} ms, peak RSS {rss} MiB")
    write_result("bench_evidence", args.small, results)


if __name__ == "__main__":
    main()
