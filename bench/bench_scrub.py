"""Throughput of `sentinelle scrub` on a store of 1,000,000 consents.

    python bench/bench_scrub.py [--small] [--jobs N]

Builds once (cached under /var/cache/sentinelle/bench/) a store with
1,000,000 consents for professional `acme` (mobiles +336...), one attempt for
a tenth of them, a refusal for a fiftieth and an opt-out for a hundredth,
and a lead list (CSV, VICIdial-like columns) of 200,000 leads (20,000 with
--small): half of them callees with a consent, half without.

Measured in the same run, on the same file:
- baseline: reading and parsing the CSV with the csv module, nothing else;
- `scrub` in-process, one core (the pipeline `POST /v1/scrub` runs);
- `sentinelle scrub --jobs 1` and `--jobs N` as a subprocess (the CLI, N worker
  processes);
- the same with `--sort` (external sort by retry_at);
- a breakdown of one lead's cost: number parsing, history read (batched, and
  one lead at a time), decision, and the scrub's own deciding.

Each figure is also given per CPU-second (this process's and its children's
CPU time): on a shared machine the wall clock measures the neighbours too.

Target: >= 20,000 leads/s. The script prints each figure beside the baseline
(as a ratio) and exits 1 on a miss, naming what limits it.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, REPO, Timer, write_result
from sentinelle.config import load_config
from sentinelle.core.clock import parse_instant
from sentinelle.core.numbers import parse
from sentinelle.core.rules import decide
from sentinelle.guard import Request, resolve_call
from sentinelle.scrub import Options, Scrubber, open_leads, scrub, serial
from sentinelle.scrub.run import CHUNK
from sentinelle.store import SCHEMA_VERSION, ConsentProof, Store, ts

GEN_VERSION = 1
CONSENTS = 1_000_000
LEADS = {"full": 200_000, "small": 20_000}
TARGET = 20_000
AT = "2026-12-01T11:00:00+01:00"  # a Tuesday in the legal hours, fr-2026
CONFIG = """
[store]
path = "{store}"
[professionals.acme]
[campaigns.promo]
professional = "acme"
"""


def e164(i: int) -> str:
    return f"+336{10_000_000 + i:08d}"


def build_store(path: Path) -> None:
    store = Store(path, create=True)
    rng = random.Random(1)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    store.import_rows("consents", (
        {"professional": "acme", "e164": e164(i),
         "proof": ConsentProof(source="web", given_at=base + timedelta(minutes=rng.randrange(350_000)))}
        for i in range(CONSENTS)))
    at = ts(datetime(2026, 11, 25, 10, tzinfo=UTC))

    def facts(conn):  # raw inserts: the bench builds history, it does not test the CLI
        conn.executemany("INSERT INTO attempts (professional, campaign, e164, at) VALUES"
                         " ('acme', 'promo', ?, ?)", ((e164(i), at) for i in range(0, CONSENTS, 10)))
        conn.executemany("INSERT INTO refusals (professional, campaign, e164, at, source) VALUES"
                         " ('acme', 'promo', ?, ?, 'bench')", ((e164(i), at) for i in range(0, CONSENTS, 50)))
        conn.executemany("INSERT INTO optouts VALUES ('acme', ?, ?, 'bench')",
                         ((e164(i), at) for i in range(3, CONSENTS, 100)))

    store.run(facts, immediate=True)
    store.close()


def build_leads(path: Path, n: int) -> None:
    rng = random.Random(2)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lead_id", "vendor_lead_code", "first_name", "last_name", "phone_number",
                    "postal_code"])
        for i in range(n):
            k = rng.randrange(2 * CONSENTS)  # half of them have a consent
            w.writerow([i, f"V{i:07d}", "Jeanne", "Martin", f"06{10_000_000 + k:08d}", "75011"])


def cached(name: str, build, *args) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / name
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with Timer() as t:
            build(tmp, *args)
        tmp.rename(path)
        print(f"built {path} in {t.seconds:.1f} s")
    return path


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the CLI and,
    through it, its workers): on a shared machine the wall clock measures
    the neighbours too, the CPU time measures the scrub."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Run:
    """One measured run: leads, wall seconds, CPU seconds."""

    def __init__(self, leads: int, wall: float, cpu: float) -> None:
        self.leads, self.wall, self.cpu = leads, wall, cpu

    @property
    def rate(self) -> float:
        return self.leads / self.wall

    @property
    def per_cpu_s(self) -> float:
        return self.leads / self.cpu

    def to_dict(self) -> dict[str, float]:
        return {"leads": self.leads, "wall_s": self.wall, "cpu_s": self.cpu,
                "per_s": self.rate, "per_cpu_s": self.per_cpu_s}


def measured(fn, *args) -> tuple[Run, object]:
    c0 = cpu_seconds()
    with Timer() as t:
        n, extra = fn(*args)
    return Run(n, t.seconds, cpu_seconds() - c0), extra


def baseline(leads: Path) -> tuple[int, None]:
    with leads.open(newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1, None


def in_process(config, store: Store, leads: Path) -> tuple[int, dict]:
    at = parse_instant(AT)
    options = Options(at=at)
    with leads.open(newline="") as fh, open(os.devnull, "w") as out:
        summary = scrub(open_leads(fh, options),
                        serial(Scrubber(config, store, "promo", at).verdicts), options, out.write)
    return summary.leads, summary.to_dict()


def cli(cfg: Path, leads: Path, jobs: int, *extra: str) -> tuple[int, None]:
    out = Path(tempfile.mkdtemp()) / "out.csv"
    exe = Path(sys.executable).parent / "sentinelle"
    subprocess.run([str(exe), "--config", str(cfg), "scrub", str(leads), "--campaign", "promo",
                    "--at", AT, "--out", str(out), "--jobs", str(jobs), *extra],
                   check=True, capture_output=True)
    n = sum(1 for _ in out.open()) - 1
    shutil.rmtree(out.parent)
    return n, None


def breakdown(config, store: Store, leads: Path, n: int = 20_000) -> dict[str, float]:
    """Microseconds per lead for each step, the rest of the path excluded:
    number parsing, the history read (batched as the scrub reads it, and one
    lead at a time as `check` does), `rules.decide` for every lead, and the
    scrub's own deciding (`Scrubber.verdicts`: the three steps, with the
    decisions shared by leads with the same inputs)."""
    at = parse_instant(AT)
    with leads.open(newline="") as fh:
        rows = list(csv.reader(fh))[1: n + 1]
    raws = [r[4] for r in rows]
    call = resolve_call(config, Request(dialled="", at=at, campaign="promo"))
    with Timer() as t1:
        numbers = [parse(r) for r in raws]
    keys = [x.e164 for x in numbers]
    with Timer() as t2:
        histories: dict = {}
        for i in range(0, n, CHUNK):
            histories.update(store.histories("acme", keys[i: i + CHUNK], at))
    with Timer() as t3:
        for x in numbers:
            store.history("acme", x.e164, at)
    with Timer() as t4:
        for x in numbers:
            decide(call, x, histories[x.e164], config.policy)
    scrubber = Scrubber(config, store, "promo", at)
    with Timer() as t5:
        for i in range(0, n, CHUNK):
            scrubber.verdicts(raws[i: i + CHUNK])
    return {"parse_us": t1.seconds / n * 1e6, "history_us": t2.seconds / n * 1e6,
            "decide_us": t4.seconds / n * 1e6, "history_per_lead_us": t3.seconds / n * 1e6,
            "verdicts_us": t5.seconds / n * 1e6, "shared_decisions": scrubber.memo_hits / n}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    mode = "small" if args.small else "full"
    db = cached(f"scrub-store-{CONSENTS}-v{SCHEMA_VERSION}-g{GEN_VERSION}.db", build_store)
    leads = cached(f"scrub-leads-{LEADS[mode]}-g{GEN_VERSION}.csv", build_leads, LEADS[mode])
    work = Path(tempfile.mkdtemp(prefix="bench-scrub-"))
    try:
        shutil.copy(db, work / "s.db")
        with (work / "s.db").open("rb") as fh:  # a live store is in the page cache
            while fh.read(1 << 24):
                pass
        cfg = work / "sentinelle.toml"
        cfg.write_text(CONFIG.format(store=work / "s.db"))
        config = load_config(str(cfg))
        store = Store(work / "s.db")
        base, _ = measured(baseline, leads)
        one, summary = measured(in_process, config, store, leads)
        single, _ = measured(cli, cfg, leads, 1)
        many, _ = measured(cli, cfg, leads, args.jobs)
        ordered, _ = measured(cli, cfg, leads, args.jobs, "--sort")
        costs = breakdown(config, store, leads)
        store.close()
    finally:
        shutil.rmtree(work)
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"\nscrub of {LEADS[mode]:,} leads, store of {CONSENTS:,} consents, {cores} "
          f"cores (load average {load:.1f} at the end)")
    print(f"  baseline: CSV read+parse        {base.rate:>10,.0f} leads/s")
    runs = (("in-process, 1 core", one), ("CLI --jobs 1", single), (f"CLI --jobs {args.jobs}", many),
            (f"CLI --jobs {args.jobs} --sort", ordered))
    for name, run in runs:
        print(f"  scrub {name:<24} {run.rate:>10,.0f} leads/s  (1/{base.rate / run.rate:,.0f} of "
              f"the baseline); {run.per_cpu_s:,.0f} leads per CPU-second, "
              f"{run.cpu / run.wall:.2f} cores used")
    steps = ("parse_us", "history_us", "decide_us")
    total = sum(costs[k] for k in steps)
    print("  one lead, 1 core: " + ", ".join(f"{k[:-3]} {costs[k]:.1f} us" for k in steps)
          + f" = {total:.0f} us ({1e6 / total:,.0f} leads/s at best)")
    print(f"  history read one lead at a time (as check): {costs['history_per_lead_us']:.1f} us; "
          f"the scrub's deciding (Scrubber.verdicts) {costs['verdicts_us']:.1f} us a lead, "
          f"{costs['shared_decisions']:.0%} of the leads sharing a decision "
          f"({1e6 / costs['verdicts_us']:,.0f} leads/s at best)")
    print(f"  verdicts: {summary}")
    best = max(one.rate, many.rate, ordered.rate)
    ok = best >= TARGET
    print(f"target >= {TARGET:,} leads/s: {'met' if ok else 'MISSED'} ({best:,.0f})")
    if not ok:
        print(f"  what limits it: the scrub's deciding ({costs['verdicts_us']:.0f} us a lead: "
              f"rules.decide {costs['decide_us']:.0f} us for a lead decided alone) in pure "
              f"Python, on {cores} cores shared with load {load:.1f}: CLI --jobs {args.jobs} "
              f"does {many.per_cpu_s:,.0f} leads per CPU-second, "
              f"{many.per_cpu_s * min(args.jobs, cores):,.0f} leads/s on {min(args.jobs, cores)} "
              "idle cores")
    write_result("bench_scrub", args.small, {
        "leads": LEADS[mode], "consents": CONSENTS, "jobs": args.jobs, "baseline_per_s": base.rate,
        "in_process_per_s": one.rate, "cli_jobs1_per_s": single.rate, "cli_per_s": many.rate,
        "cli_sorted_per_s": ordered.rate, "runs": {name: run.to_dict() for name, run in runs},
        "baseline": base.to_dict(), "per_lead_us": costs, "summary": summary,
        "load_average": load, "target": TARGET, "met": ok, "repo": str(REPO)})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
