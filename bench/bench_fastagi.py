"""FastAGI service throughput and latency, against the classic per-call AGI.

    .venv/bin/python bench/bench_fastagi.py [--small] [--duration S] [--concurrency 1,20,64]

Starts a real `sentinelle serve` subprocess (frozen clock 2026-12-01T10:30
Europe/Paris, a Tuesday inside legal hours; fr-2026 regime, so a consent is
the gate) on a store holding consents for a pool of 5,000 callees x 8
campaigns of 8 distinct professionals (R-30 counts per professional and
callee: 160,000 ALLOW before any R-30 block). Each concurrency level gets a
fresh copy of that store and a fresh service.

The load generator is an asyncio Protocol speaking what Asterisk speaks:
connect, `agi_*` headers and a blank line, `200 result=1` to each
`SET VARIABLE`, read until the service closes. N connections are kept in
flight for a fixed duration; latency is client side (connect -> close),
throughput is completed checks / wall time. Server and client CPU time are
read from /proc so one can tell which side saturates the 2 cores.

Side by side, the same check through the classic AGI (`sentinelle agi`: one
process per call, headers on stdin, commands on stdout), at concurrency 1
and 2 (= cores).

Target: >= 2,000 checks/s on 2 cores.

Also a helper for bench_pbx.py: `--serve-instrumented` runs the exact
`serve` code path (sentinelle.service.run) with a timing hook around
FastAgiServer._serve and _run_in_worker, and dumps service-side times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fmt, percentiles, write_result

VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
SENTINELLE = str(VENV_BIN / "sentinelle")
FROZEN = "2026-12-01T10:30:00+01:00"  # a Tuesday, 10:30 in Paris, fr-2026 regime
NPV = "0162000000"  # Arcep NPV range: R-42 passes for automated dialing
TARGET_CPS = 2000

SIZES = {
    "full": {"pool": 5000, "campaigns": 8, "duration": 20.0, "concurrency": [1, 20, 64],
             "classic": 100, "classic_concurrency": [1, 2]},
    "small": {"pool": 1000, "campaigns": 2, "duration": 4.0, "concurrency": [1, 20],
              "classic": 10, "classic_concurrency": [2]},
}

CONFIG = """
[store]
path = "{store}"

[policy]
regime = "auto"

{pros}
[server]
listen = "127.0.0.1:{port}"
request_timeout_s = 2.0
max_connections = 512
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provenance() -> dict[str, Any]:
    """Which code was measured: HEAD plus a digest of the working-tree diff of agi/."""
    import hashlib

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "agi/")
    return {"head": git("rev-parse", "HEAD").strip(),
            "agi_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
            "agi_diff_stat": git("diff", "HEAD", "--stat", "--", "agi/").strip()}


def callee_pool(n: int, seed: int = 7) -> list[str]:
    """n distinct metropolitan mobile numbers (061..068 without 063: no 0639
    overseas block, so every callee is on Paris time and holidays)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"06{rng.choice('1245678')}{rng.randrange(10**7):07d}")
    return sorted(out)


def campaigns_of(k: int) -> list[str]:
    return [f"c{i}" for i in range(1, k + 1)]


class Setup:
    """A work dir with a config (K professionals/campaigns), a template store
    with consents for pool x campaigns, and fresh copies of it on demand."""

    def __init__(self, workdir: Path, pool: int, k: int) -> None:
        self.workdir = workdir
        self.numbers = callee_pool(pool)
        self.campaigns = campaigns_of(k)
        self.template = workdir / "template.db"
        self.store = workdir / "sentinelle.db"
        self.port = free_port()
        self.config = workdir / "sentinelle.toml"
        self.write_config(self.template)
        t0 = time.perf_counter()
        self.cli("init")
        csv = workdir / "consents.csv"
        with csv.open("w") as f:
            f.write("number,campaign,given_at,source\n")
            for c in self.campaigns:
                for n in self.numbers:
                    f.write(f"{n},{c},2026-11-01T10:00:00+01:00,bench-web-form\n")
        r = self.cli("import", "consents", str(csv))
        self.build_s = time.perf_counter() - t0
        print(f"template store: {len(self.numbers)} callees x {len(self.campaigns)} campaigns "
              f"({r.stdout.strip()}) in {self.build_s:.1f} s")
        self.write_config(self.store)

    def write_config(self, store: Path) -> None:
        pros = "".join(
            f'[professionals.p{c}]\ncaller_ids = ["0142000000"]\n\n'
            f'[campaigns.{c}]\nprofessional = "p{c}"\npurpose = "prospecting"\n'
            f'dialing = "automated"\n\n' for c in self.campaigns)
        self.config.write_text(CONFIG.format(store=store, port=self.port, pros=pros))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([SENTINELLE, "--config", str(self.config), *args],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"sentinelle {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r

    def fresh_store(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.store) + suffix).unlink(missing_ok=True)
        shutil.copy(self.template, self.store)

    def pairs(self) -> list[tuple[str, str]]:
        """(number, campaign) in an order that uses every pair once per cycle."""
        return [(n, c) for n in self.numbers for c in self.campaigns]


class Service:
    """`sentinelle serve` (or the instrumented equivalent) as a subprocess."""

    def __init__(self, setup: Setup, log: Path, instrumented: Path | None = None,
                 profile: Path | None = None, variant: str = "") -> None:
        self.setup = setup
        self.log = log
        self.instrumented = instrumented
        if instrumented is not None:
            cmd = [PYTHON, __file__, "--serve-instrumented", str(setup.config), FROZEN,
                   str(instrumented)]
        elif variant:
            cmd = [PYTHON, __file__, "--serve-variant", str(setup.config), FROZEN]
        elif profile is not None:
            cmd = [PYTHON, "-m", "cProfile", "-o", str(profile), "-m", "sentinelle.cli",
                   "--config", str(setup.config), "serve", "--at", FROZEN]
        else:
            cmd = [SENTINELLE, "--config", str(setup.config), "serve", "--at", FROZEN]
        self.cmd = cmd
        env = dict(os.environ, BENCH_SERVE_VARIANT=variant)
        self.proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     cwd=setup.workdir, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"sentinelle serve exited: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", setup.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("sentinelle serve did not listen")

    def cpu_s(self) -> float:
        """utime+stime of the service process (all threads), seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def decisions(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                d = json.loads(line)
                if d.get("msg") == "decision":
                    out[f"{d.get('verdict')}:{','.join(d.get('rules') or [])}"] += 1
        return out


# -- the FastAGI client (what Asterisk does) ---------------------------------------

def agi_headers(number: str, campaign: str, seq: int, network: bool = True) -> bytes:
    h = {
        "agi_network": "yes" if network else "no",
        "agi_network_script": "check",
        "agi_request": "agi://127.0.0.1/check" if network else "/usr/local/bin/sentinelle-agi",
        "agi_channel": f"PJSIP/agent1-{seq:08x}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": f"1764581400.{seq}",
        "agi_version": "22.0.0",
        "agi_callerid": NPV,
        "agi_calleridname": "Agent",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": number,
        "agi_rdnis": "unknown",
        "agi_context": "sentinelle-check",
        "agi_extension": "s",
        "agi_priority": "7",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
        "agi_arg_1": number,
        "agi_arg_2": campaign,
    }
    if not network:
        del h["agi_network_script"]
    return ("".join(f"{k}: {v}\n" for k, v in h.items()) + "\n").encode()


class AgiClient(asyncio.Protocol):
    __slots__ = ("buf", "commands", "done", "headers", "transport", "verdict")

    def __init__(self, headers: bytes, done: asyncio.Future[str]) -> None:
        self.headers = headers
        self.done = done
        self.buf = b""
        self.verdict = ""
        self.commands = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.headers)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.commands += 1
            if line.startswith(b"SET VARIABLE SENTINELLE_VERDICT"):
                self.verdict = line.split(b'"')[1].decode()
            if line.startswith(b"GET VARIABLE"):
                self.transport.write(b"200 result=0\n")  # type: ignore[attr-defined]
            else:
                self.transport.write(b"200 result=1\n")  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.verdict or "NONE")


async def fastagi_load(port: int, pairs: list[tuple[str, str]], concurrency: int,
                       duration: float, start_index: int = 0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    lat: list[int] = []
    verdicts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    counter = iter(range(start_index, 1 << 62))
    stop_at = 0.0

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            i = next(counter)
            number, campaign = pairs[i % len(pairs)]
            done: asyncio.Future[str] = loop.create_future()
            t0 = time.perf_counter_ns()
            try:
                proto = AgiClient(agi_headers(number, campaign, i), done)
                await loop.create_connection(lambda p=proto: p, "127.0.0.1", port)
                verdict = await asyncio.wait_for(done, 10)
            except (OSError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                continue
            lat.append(time.perf_counter_ns() - t0)
            verdicts[verdict] += 1

    t_start = time.perf_counter()
    stop_at = t_start + duration
    cpu0 = os.times()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t_start
    cpu1 = os.times()
    client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"concurrency": concurrency, "duration_s": round(wall, 3), "checks": len(lat),
            "checks_per_s": round(len(lat) / wall, 1), "latency": percentiles(lat) if lat else None,
            "verdicts": dict(verdicts), "errors": dict(errors), "next_index": next(counter),
            "client_cpu_s": round(client_cpu, 2)}


# -- the classic AGI (a process per call) ----------------------------------------

async def classic_one(setup: Setup, number: str, campaign: str, seq: int) -> tuple[int, str]:
    t0 = time.perf_counter_ns()
    proc = await asyncio.create_subprocess_exec(
        SENTINELLE, "--config", str(setup.config), "agi", "--at", FROZEN,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=setup.workdir)
    assert proc.stdin and proc.stdout
    proc.stdin.write(agi_headers(number, campaign, seq, network=False))
    await proc.stdin.drain()
    verdict = "NONE"
    while line := await proc.stdout.readline():
        if line.startswith(b"SET VARIABLE SENTINELLE_VERDICT"):
            verdict = line.split(b'"')[1].decode()
        proc.stdin.write(b"200 result=0\n" if line.startswith(b"GET VARIABLE")
                         else b"200 result=1\n")
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
    await proc.wait()
    return time.perf_counter_ns() - t0, verdict


async def classic_load(setup: Setup, pairs: list[tuple[str, str]], concurrency: int,
                       count: int, start_index: int) -> dict[str, Any]:
    lat: list[int] = []
    verdicts: Counter[str] = Counter()
    counter = iter(range(start_index, start_index + count))

    async def worker() -> None:
        for i in counter:
            number, campaign = pairs[i % len(pairs)]
            ns, verdict = await classic_one(setup, number, campaign, i)
            lat.append(ns)
            verdicts[verdict] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "duration_s": round(wall, 3), "checks": len(lat),
            "checks_per_s": round(len(lat) / wall, 2), "latency": percentiles(lat),
            "verdicts": dict(verdicts)}


# -- instrumented serve (used by bench_pbx.py) --------------------------------------

VARIANTS = {
    "": "as shipped",
    "skip-empty": "the check route's answer sends only non-empty variables (+ VERDICT last); "
                  "the dialplan cleared them before the AGI",
    "inline": "the check runs on the event loop thread (no executor hop)",
    "switch": "sys.setswitchinterval(0.0005) (GIL hand-over 10x sooner)",
    "nolog": "no INFO decision line on stderr (sizing only: the store keeps the evidence)",
}


def apply_variant(names: str) -> None:
    """Experimental monkeypatches, to size a suggested patch (never shipped)."""
    from sentinelle.pbx import channelvars as agivars
    from sentinelle.pbx.routes import check as check_route
    from sentinelle.pbx.server import FastAgiServer

    for name in filter(None, names.split("+")):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: {', '.join(VARIANTS)}")
        if name == "switch":
            sys.setswitchinterval(0.0005)
        elif name == "nolog":
            import sentinelle.guard as guard
            guard._emit = lambda d, req: None
        elif name == "inline":
            async def _run_store_inline(self: Any, *args: Any,
                                        _orig: Any = FastAgiServer.run_store) -> Any:
                loop = asyncio.get_running_loop()

                def run_now(executor: Any, fn: Any, *args: Any) -> asyncio.Future[Any]:
                    fut = loop.create_future()
                    try:
                        fut.set_result(fn(*args))
                    except Exception as exc:
                        fut.set_exception(exc)
                    return fut

                loop.run_in_executor = run_now  # type: ignore[method-assign]
                return await _orig(self, *args)
            FastAgiServer.run_store = _run_store_inline  # type: ignore[method-assign]
        elif name == "skip-empty":
            async def _answer(agi: Any, d: Any) -> None:
                reason = d.reasons[0] if d.reasons else (d.notes[0] if d.notes else "")
                for var, value in ((agivars.RULES, ",".join(d.rules)), (agivars.REASON, reason),
                                   (agivars.RETRY_AT, d.retry_at.isoformat() if d.retry_at else ""),
                                   (agivars.ATTEMPT, str(d.attempt_id or ""))):
                    if value:
                        await agi.set_variable(var, value)
                await agi.set_variable(agivars.VERDICT,
                                       agivars.ALLOW if d.allowed else agivars.BLOCK)
            check_route.answer = _answer


def serve_variant(config_path: str, at: str) -> None:
    """`sentinelle serve` with the experimental patches of $BENCH_SERVE_VARIANT."""
    from sentinelle import logs
    from sentinelle.config import load_config
    from sentinelle.core.clock import parse_instant
    from sentinelle.service.serve import run

    apply_variant(os.environ.get("BENCH_SERVE_VARIANT", ""))
    logs.setup("INFO")
    asyncio.run(run(load_config(config_path), parse_instant(at)))


def serve_instrumented(config_path: str, at: str, out: str) -> None:
    """The `sentinelle serve` code path plus per-phase timing of each FastAGI
    connection; times go to `out` (JSON) at shutdown. Phases:
    serve (FastAgiServer._serve: headers -> last SET VARIABLE answered),
    headers (read_headers), decide_loop (run_store as the event loop sees it:
    executor queue + hand-overs + decision), decide (_run_in_worker in the
    store thread), queue (submit -> store thread starts), answer (the check
    route's answer: the SET VARIABLE round trips), command (one AGI command
    round trip).
    $BENCH_SERVE_VARIANT applies experimental patches (see VARIANTS)."""
    import sentinelle.pbx.server as fastagi
    from sentinelle import logs
    from sentinelle.config import load_config
    from sentinelle.core.clock import parse_instant
    from sentinelle.pbx.agi import AgiChannel
    from sentinelle.pbx.routes import check as check_route
    from sentinelle.pbx.server import FastAgiServer
    from sentinelle.service.serve import run

    variant = os.environ.get("BENCH_SERVE_VARIANT", "")
    apply_variant(variant)
    t: dict[str, list[int]] = {k: [] for k in (
        "serve_ns", "headers_ns", "decide_loop_ns", "decide_ns", "queue_ns", "answer_ns",
        "command_ns")}
    now = time.perf_counter_ns

    def timed_async(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = now()
            try:
                return await fn(*args, **kw)
            finally:
                t[name].append(now() - t0)
        return wrapper

    orig_check = FastAgiServer._run_in_worker
    orig_decide = FastAgiServer.run_store

    def timed_check(self: Any, *args: Any, **kw: Any) -> Any:
        t0 = now()
        d = orig_check(self, *args, **kw)
        t["decide_ns"].append(now() - t0)
        return d

    async def decide(self: Any, *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        orig_rie = loop.run_in_executor

        def rie(executor: Any, fn: Any, *fargs: Any) -> Any:  # stamp the submit time
            if getattr(fn, "__func__", None) is timed_check:
                submitted = now()

                def job() -> Any:
                    t["queue_ns"].append(now() - submitted)
                    return fn(*fargs)
                return orig_rie(executor, job)
            return orig_rie(executor, fn, *fargs)

        loop.run_in_executor = rie  # type: ignore[method-assign]
        t0 = now()
        try:
            return await orig_decide(self, *args, **kw)
        finally:
            t["decide_loop_ns"].append(now() - t0)
            loop.run_in_executor = orig_rie  # type: ignore[method-assign]

    FastAgiServer._run_in_worker = timed_check  # type: ignore[method-assign]
    FastAgiServer.run_store = decide  # type: ignore[method-assign]
    FastAgiServer._serve = timed_async("serve_ns", FastAgiServer._serve)  # type: ignore[method-assign]
    check_route.answer = timed_async("answer_ns", check_route.answer)
    AgiChannel.command = timed_async("command_ns", AgiChannel.command)  # type: ignore[method-assign]
    fastagi.read_headers = timed_async("headers_ns", fastagi.read_headers)
    logs.setup("INFO")
    config = load_config(config_path)
    try:
        asyncio.run(run(config, parse_instant(at)))
    finally:
        Path(out).write_text(json.dumps({"variant": variant, **t}))


# -- main ------------------------------------------------------------------------

def system_busy_s() -> float:
    """CPU seconds used by the whole machine (all cores) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_line(r: dict[str, Any]) -> str:
    return (f"server CPU {r['server_cpu_s']:.1f} s ({r['server_cpu_us_per_check']:.0f} us/check, "
            f"{r['server_cpu_share']:.0%} of one core), client CPU {r['client_cpu_s']:.1f} s, "
            f"other processes {r['other_cpu_share']:.0%} of one core")


def run_fastagi(setup: Setup, args: argparse.Namespace, size: dict[str, Any],
                tmp: Path) -> list[dict[str, Any]]:
    pairs = setup.pairs()
    results = []
    for conc in size["concurrency"]:
        setup.fresh_store()
        log = tmp / f"serve-c{conc}.log"
        svc = Service(setup, log, variant=args.variant)
        try:
            # warm-up: imports, calendars, SQLite page cache (not counted)
            asyncio.run(fastagi_load(setup.port, pairs, 8, 1.0, start_index=len(pairs) // 2))
            cpu0, sys0 = svc.cpu_s(), system_busy_s()
            r = asyncio.run(fastagi_load(setup.port, pairs, conc, size["duration"]))
            cpu, sys_cpu = svc.cpu_s() - cpu0, system_busy_s() - sys0
        finally:
            svc.stop()
        r["server_cpu_s"] = round(cpu, 2)
        r["server_cpu_us_per_check"] = round(cpu / max(1, r["checks"]) * 1e6, 1)
        r["server_cpu_share"] = round(cpu / r["duration_s"], 3)
        r["machine_cpu_share"] = round(sys_cpu / r["duration_s"], 3)  # of one core; max = cores
        # what neither side used: other jobs on the box (and kernel time not billed to us)
        r["other_cpu_share"] = round((sys_cpu - cpu - r["client_cpu_s"]) / r["duration_s"], 3)
        r["server_decisions"] = dict(svc.decisions().most_common(6))
        results.append(r)
        r["variant"] = args.variant
        tag = f"[{args.variant}]" if args.variant else ""
        print(f"FastAGI{tag}  c={conc:<3} {r['checks_per_s']:>8.1f} checks/s  "
              f"{fmt(r['latency'])}  verdicts {r['verdicts']} errors {r['errors']}")
        print(f"         {cpu_line(r)}")
    return results


def run_classic(setup: Setup, size: dict[str, Any]) -> list[dict[str, Any]]:
    pairs = setup.pairs()
    results = []
    setup.fresh_store()
    asyncio.run(classic_load(setup, pairs, 1, 2, start_index=len(pairs) // 2))  # warm-up
    start = 0
    for conc in size["classic_concurrency"]:
        r = asyncio.run(classic_load(setup, pairs, conc, size["classic"], start))
        start += size["classic"]
        results.append(r)
        print(f"classic  c={conc:<3} {r['checks_per_s']:>8.2f} checks/s  {fmt(r['latency'])}  "
              f"verdicts {r['verdicts']}")
    return results


def profile_run(setup: Setup, size: dict[str, Any], tmp: Path, conc: int) -> dict[str, Any]:
    """cProfile of a `serve` run under load (main thread = event loop only;
    the store thread is timed by the instrumented run)."""
    import pstats

    prof = tmp / "serve.prof"
    setup.fresh_store()
    svc = Service(setup, tmp / "serve-prof.log", profile=prof)
    try:
        r = asyncio.run(fastagi_load(setup.port, setup.pairs(), conc, min(10.0, size["duration"])))
    finally:
        svc.stop()
    out = Path(__file__).resolve().parent / "results" / "bench_fastagi-serve.prof"
    out.parent.mkdir(exist_ok=True)
    shutil.copy(prof, out)
    st = pstats.Stats(str(prof))
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"func": f"{Path(file).name}:{line}({fn})", "calls": nc,
                     "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)})
    rows.sort(key=lambda x: -x["tottime_s"])
    print(f"\ncProfile of serve (event-loop thread) at c={conc}, {r['checks_per_s']} checks/s "
          f"under the profiler; top self time:")
    for row in rows[:15]:
        print(f"  {row['tottime_s']:>7.3f} s  {row['calls']:>8}  {row['func']}")
    return {"checks_per_s_under_profiler": r["checks_per_s"], "top_tottime": rows[:25],
            "prof_file": str(out.relative_to(REPO))}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-instrumented":
        serve_instrumented(*sys.argv[2:5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-variant":
        serve_variant(*sys.argv[2:4])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="quick run (< 60 s)")
    ap.add_argument("--duration", type=float, help="seconds per FastAGI concurrency level")
    ap.add_argument("--concurrency", help="comma-separated FastAGI concurrency levels")
    ap.add_argument("--classic", type=int, help="classic AGI calls per concurrency level")
    ap.add_argument("--profile", action="store_true", help="also cProfile a serve run")
    ap.add_argument("--variant", default="",
                    help="run the FastAGI part against an experimentally patched service, "
                         "'+'-joined: " + ", ".join(k for k in VARIANTS if k))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    mode = "small" if args.small else "full"
    size = dict(SIZES[mode])
    if args.duration:
        size["duration"] = args.duration
    if args.concurrency:
        size["concurrency"] = [int(x) for x in args.concurrency.split(",")]
    if args.classic is not None:
        size["classic"] = args.classic
    tmp = Path(tempfile.mkdtemp(prefix="sentinelle-bench-fastagi-"))
    try:
        setup = Setup(tmp, size["pool"], size["campaigns"])
        fast = run_fastagi(setup, args, size, tmp)
        classic = run_classic(setup, size) if size["classic"] and not args.variant else []
        best = max(fast, key=lambda r: r["checks_per_s"])
        best_classic = max(classic, key=lambda r: r["checks_per_s"]) if classic else None
        summary = {
            "target_checks_per_s": TARGET_CPS, "variant": args.variant,
            "fastagi_best_checks_per_s": best["checks_per_s"],
            "fastagi_best_concurrency": best["concurrency"],
            "target_met": best["checks_per_s"] >= TARGET_CPS,
        }
        if best_classic:
            summary["classic_best_checks_per_s"] = best_classic["checks_per_s"]
            summary["throughput_ratio_fastagi_over_classic"] = round(
                best["checks_per_s"] / best_classic["checks_per_s"], 1)
            c1 = next((r for r in fast if r["concurrency"] == 1), None)
            k1 = next((r for r in classic if r["concurrency"] == 1), None)
            if c1 and k1:
                summary["latency_ratio_p50_classic_over_fastagi_c1"] = round(
                    k1["latency"]["p50_ms"] / c1["latency"]["p50_ms"], 1)
        prof = profile_run(setup, size, tmp, best["concurrency"]) if args.profile else None
        print("\nsummary:", json.dumps(summary))
        name = "bench_fastagi" + (f"-variant-{args.variant}" if args.variant else "")
        write_result(name, args.small, {
            "code": provenance(), "frozen_at": FROZEN, "pool": size["pool"],
            "campaigns": size["campaigns"],
            "store_build_s": round(setup.build_s, 1), "serve_cmd": " ".join(
                [SENTINELLE, "--config", "<tmp>/sentinelle.toml", "serve", "--at", FROZEN]),
            "fastagi": fast, "classic": classic, "summary": summary, "profile": prof})
    finally:
        if args.keep:
            print(f"work dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
