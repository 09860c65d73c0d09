"""The AGI round trip through a real Asterisk 22 (tests/pbx harness).

    .venv/bin/python bench/bench_pbx.py [--small] [--duration S] [--concurrency 20]

Needs root (the harness runs Asterisk in a chroot). Starts the sentinelle
service (the `serve` code path, frozen clock 2026-12-01T10:30 Paris, with a
timing hook: see bench_fastagi.py --serve-instrumented) on a store with
consents for 5,000 callees x 8 campaigns, then an Asterisk whose dialplan is
the repository's, and keeps N (default 20) AMI-originated Local calls in
flight for a fixed duration. The originate's caller ID is 0162000000 (Arcep
NPV), so the checks ALLOW (a mobile caller ID would be an R-41 block).

Scenarios (each on a fresh copy of the store and a fresh service):

- `check-only`: Local/<n>@bench-check, a context that only runs the guard:
  t0 = ${STRFTIME(,,%s.%6q)}, GoSub(sentinelle-check,...), t1, Hangup. The
  carrier is not involved; t1 - t0 is the AGI round trip seen by Asterisk
  (GoSub + Set()s + connect + headers + 5 SET VARIABLE round trips + close).
- `classic`: as `check-only`, but the check is the classic per-call AGI:
  Asterisk starts `sentinelle-agi`'s code (pbx/stdio.py, clock frozen as
  the service's) for every call. Asterisk runs in a chroot without Python,
  so the AGI is a two-line sh script that chroots back into the host's root
  (bind-mounted by the harness, `Pbx(host_root=True)`) and runs the venv's
  Python: that hop (sh + chroot exec, ~2 ms) is counted in the round trip.
  CPU: the AGI processes' time is Asterisk's children's (reaped by it).
- `classic-check`: as `classic` without the hangup handler's outcome
  process (its script ends at once): the check's own cost.
- `outbound`: Local/<n>@bench-outbound, which only pushes a hangup handler
  and takes t0, then Goto(outbound,${EXTEN},1): the unchanged guarded
  [outbound] context of the harness (GoSub(sentinelle-check), then
  Dial(PJSIP/${EXTEN}@trunk) to a SIPp carrier answering 486 at once).
  A call's time is t0 -> hangup handler.

Each call ends with a UserEvent (hangup handler) read over AMI; a worker
originates its next call when its previous one has hung up, so exactly N
calls are in flight. Service-side times: `serve` = one FastAGI connection
(headers read -> last SET VARIABLE answered), `decide` = the check in the
store thread.

Targets: AGI round trip p50 <= 3 ms, p99 <= 10 ms; >= 300 checks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))  # tests.pbx
from tests.pbx import Pbx  # noqa: E402

from _common import fmt, percentiles, write_result  # noqa: E402
from bench_fastagi import FROZEN, NPV, PYTHON, Service, Setup, provenance, system_busy_s  # noqa: E402

TARGET_P50_MS, TARGET_P99_MS, TARGET_CPS = 3.0, 10.0, 300

SIZES = {
    "full": {"pool": 5000, "campaigns": 8, "duration": 20.0, "concurrency": 20,
             "scenarios": "check-only,outbound,stub5,stub2", "rates": "0,300"},
    "small": {"pool": 1000, "campaigns": 2, "duration": 5.0, "concurrency": 20,
              "scenarios": "check-only,stub5", "rates": "0,300"},
}

NOW = "${STRFTIME(,,%s.%6q)}"
# (backslash-newlines below are joined: one dialplan line)
EXTRA_DIALPLAN = f"""
; --- bench/bench_pbx.py --------------------------------------------------
[bench-hh]
exten => s,1,UserEvent(BenchCall,id: ${{benchid}},t0: ${{bench_t0}},t1: ${{bench_t1}},tend: {NOW},\
verdict: ${{SENTINELLE_VERDICT}},agistatus: ${{AGISTATUS}},dialstatus: ${{DIALSTATUS}},\
callerid: ${{CALLERID(num)}},rules: ${{SENTINELLE_RULES}})
 same => n,Return()

[bench-check]
exten => _[0-9+].,1,Set(CHANNEL(hangup_handler_push)=bench-hh,s,1)
 same => n,Set(bench_t0={NOW})
 same => n,GoSub(sentinelle-check,s,1(${{EXTEN}},${{campaign}}))
 same => n,Set(bench_t1={NOW})
 same => n,Hangup()

[bench-classic]
exten => _[0-9+].,1,Set(CHANNEL(hangup_handler_push)=bench-hh,s,1)
 same => n,Set(SENTINELLE_AGI=/run/sentinelle/classic)
 same => n,Set(bench_t0={NOW})
 same => n,GoSub(sentinelle-check,s,1(${{EXTEN}},${{campaign}}))
 same => n,Set(bench_t1={NOW})
 same => n,Hangup()

[bench-classic-check]
exten => _[0-9+].,1,Set(CHANNEL(hangup_handler_push)=bench-hh,s,1)
 same => n,Set(SENTINELLE_AGI=/run/sentinelle/classic-check)
 same => n,Set(bench_t0={NOW})
 same => n,GoSub(sentinelle-check,s,1(${{EXTEN}},${{campaign}}))
 same => n,Set(bench_t1={NOW})
 same => n,Hangup()

[bench-outbound]
exten => _[0-9+].,1,Set(CHANNEL(hangup_handler_push)=bench-hh,s,1)
 same => n,Set(bench_t0={NOW})
 same => n,Goto(outbound,${{EXTEN}},1)
"""


class AsyncAmi:
    """Just enough AMI: login with only `user` events, Originate, UserEvents
    dispatched to waiting futures by their `id` field."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[dict[str, str]]] = {}
        self.responses: dict[str, asyncio.Future[dict[str, str]]] = {}
        self.seq = 0
        self.stray = 0

    async def connect(self, port: int, user: str, secret: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        await self.reader.readline()  # banner
        self.task = asyncio.create_task(self._read())
        r = await self.action("Login", Username=user, Secret=secret, Events="user")
        if r.get("Response") != "Success":
            raise SystemExit(f"AMI login failed: {r}")

    async def _read(self) -> None:
        msg: dict[str, str] = {}
        while line := await self.reader.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            if text:
                k, sep, v = text.partition(": ")
                if not sep and "rules" in msg:  # a comma inside the UserEvent body split it
                    msg["rules"] += "," + text
                else:
                    msg.setdefault(k, v)
                continue
            if "Response" in msg and (fut := self.responses.pop(msg.get("ActionID", ""), None)):
                fut.set_result(msg)
            elif msg.get("Event") == "UserEvent" and msg.get("UserEvent") == "BenchCall":
                fut = self.waiting.pop(msg.get("Id", msg.get("id", "")), None)
                if fut and not fut.done():
                    fut.set_result(msg)
                else:
                    self.stray += 1
            msg = {}

    async def action(self, name: str, **fields: str | list[str]) -> dict[str, str]:
        self.seq += 1
        aid = f"b{self.seq}"
        lines = [f"Action: {name}", f"ActionID: {aid}"]
        for k, v in fields.items():
            lines += [f"{k}: {x}" for x in (v if isinstance(v, list) else [v])]
        fut: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.responses[aid] = fut
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await asyncio.wait_for(fut, 10)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"Action: Logoff\r\n\r\n")
            self.writer.close()
        self.task.cancel()


async def drive(pbx: Pbx, context: str, pairs: list[tuple[str, str]], concurrency: int,
                duration: float, start: int, rate: float = 0.0) -> dict[str, Any]:
    """Keep `concurrency` calls in flight for `duration` seconds; with `rate`,
    also start at most `rate` calls per second (paced, evenly spaced)."""
    ami = AsyncAmi()
    await ami.connect(pbx.ami_port, pbx.ami_user, pbx.ami_secret)
    loop = asyncio.get_running_loop()
    counter = iter(range(start, 1 << 62))
    rt_ns: list[int] = []  # Asterisk side: t1 - t0 around GoSub(sentinelle-check)
    call_ns: list[int] = []  # Asterisk side: t0 -> hangup handler
    client_ns: list[int] = []  # originate sent -> UserEvent received
    verdicts: Counter[str] = Counter()
    dialstatus: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    callerids: Counter[str] = Counter()
    stop_at = 0.0
    next_slot = [0.0]

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            if rate:
                slot = next_slot[0] = max(time.perf_counter(), next_slot[0] + 1 / rate)
                if slot > time.perf_counter():
                    await asyncio.sleep(slot - time.perf_counter())
            i = next(counter)
            number, campaign = pairs[i % len(pairs)]
            fut: asyncio.Future[dict[str, str]] = loop.create_future()
            ami.waiting[str(i)] = fut
            t0 = time.perf_counter_ns()
            r = await ami.action(
                "Originate", Channel=f"Local/{number}@{context}", Application="Wait", Data="1",
                CallerID=f"bench <{NPV}>", Async="true", Timeout="10000",
                Variable=[f"campaign={campaign}", f"benchid={i}"])
            if r.get("Response") != "Success":
                errors[f"originate: {r.get('Message')}"] += 1
                ami.waiting.pop(str(i), None)
                await asyncio.sleep(0.01)
                continue
            try:
                ev = await asyncio.wait_for(fut, 15)
            except TimeoutError:
                errors["no BenchCall event within 15 s"] += 1
                ami.waiting.pop(str(i), None)
                continue
            client_ns.append(time.perf_counter_ns() - t0)
            status = ev.get("agistatus", "?")
            verdicts[f"{ev.get('verdict') or 'NONE'}:{ev.get('rules', '')}"
                     + ("" if status == "SUCCESS" else f" agistatus={status}")] += 1
            callerids[ev.get("callerid", "")] += 1
            if ev.get("dialstatus"):
                dialstatus[ev["dialstatus"]] += 1
            with contextlib.suppress(ValueError):
                t_0 = float(ev["t0"])
                if ev.get("t1"):
                    rt_ns.append(int((float(ev["t1"]) - t_0) * 1e9))
                call_ns.append(int((float(ev["tend"]) - t_0) * 1e9))

    cpu0 = system_busy_s()
    t_start = time.perf_counter()
    stop_at = t_start + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t_start
    cpu = system_busy_s() - cpu0
    stray = ami.stray
    await ami.close()
    n = len(client_ns)
    return {
        "context": context, "concurrency": concurrency, "rate_limit": rate or None,
        "duration_s": round(wall, 3),
        "calls": n, "checks_per_s": round(n / wall, 1),
        "agi_round_trip_asterisk": percentiles(rt_ns) if rt_ns else None,
        "call_asterisk": percentiles(call_ns) if call_ns else None,
        "originate_to_event_client": percentiles(client_ns) if client_ns else None,
        "verdicts": dict(verdicts), "dialstatus": dict(dialstatus), "errors": dict(errors),
        "callerids_seen": dict(callerids.most_common(3)), "stray_events": stray,
        "machine_cpu_share": round(cpu / wall, 3), "next_index": next(counter),
    }


# -- a stub FastAGI responder: the Asterisk + AGI-protocol floor, no decision --------

STUB_ANSWERS = {
    # what sentinelle sends today for an ALLOW: five SET VARIABLE round trips
    "stub5": [b'SET VARIABLE SENTINELLE_RULES ""', b'SET VARIABLE SENTINELLE_REASON ""',
              b'SET VARIABLE SENTINELLE_RETRY_AT ""', b'SET VARIABLE SENTINELLE_ATTEMPT "1"',
              b'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'],
    # the suggested patch: the dialplan cleared the variables, send only non-empty ones
    "stub2": [b'SET VARIABLE SENTINELLE_ATTEMPT "1"', b'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'],
}


def stub_server(port: int, mode: str) -> None:
    answers = STUB_ANSWERS[mode]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while (await reader.readline()).strip():
                pass
            for cmd in answers:
                writer.write(cmd + b"\n")
                await writer.drain()
                await reader.readline()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


class Stub:
    def __init__(self, setup: Setup, mode: str) -> None:
        self.proc = subprocess.Popen([PYTHON, __file__, "--stub", str(setup.port), mode])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", setup.port), timeout=0.2).close()
                return
            time.sleep(0.05)
        raise SystemExit("stub did not listen")

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds of `pid`, or of its reaped children (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


# The classic AGI as Asterisk would start it (`sentinelle-agi` is
# stdio.main(): GC off, the check, a quick exit), clock frozen like the service's.
CLASSIC_AGI = """import gc
gc.disable()
from sentinelle.core.clock import frozen, parse_instant
from sentinelle.pbx.stdio import main
main(frozen(parse_instant({frozen!r})))
"""


# The baseline for `classic-base`: how the bench started the classic AGI
# before issue #15's work (run() exists in both versions), with the package
# taken from --base-agi (e.g. the main checkout's agi/ directory).
CLASSIC_AGI_BASE = """import sys
from sentinelle import logs
from sentinelle.config import load_config
from sentinelle.core.clock import frozen, parse_instant
from sentinelle.pbx.stdio import run
logs.setup("WARNING")
sys.exit(run(load_config(None), frozen(parse_instant({frozen!r}))))
"""


class Classic:
    """No service: the `check` AGI script in the PBX's run dir chroots back
    to the host and runs the classic AGI, one process per call. With
    `base`, the package comes from that directory (PYTHONPATH) and starts
    as the bench started it before: the baseline, in the same run."""

    def __init__(self, setup: Setup, pbx: Pbx, base: str = "", outcomes: bool = True) -> None:
        self.pbx = pbx
        program = setup.workdir / ("classic_agi_base.py" if base else "classic_agi.py")
        program.write_text((CLASSIC_AGI_BASE if base else CLASSIC_AGI).format(frozen=FROZEN))
        script = pbx.run_dir / ("classic" if outcomes else "classic-check") / "check"
        script.parent.mkdir(exist_ok=True)
        path = f"PYTHONPATH={base} " if base else ""
        script.write_text("#!/bin/sh\n"
                          f"exec /usr/sbin/chroot /run/sentinelle/host /usr/bin/env -i {path}"
                          f"SENTINELLE_CONFIG={setup.config} {PYTHON} {program} \"$@\"\n")
        script.chmod(0o755)
        # As shipped (README): the hangup handler's <dir>/outcome is the same
        # program, so the classic path's cost per call includes reporting the
        # outcome, as it does on a PBX without the service. `classic-check`
        # measures the check alone: its outcome script ends at once.
        for route in ("disposition", "outcome"):
            link = script.parent / route
            if link.exists() or link.is_symlink():
                continue
            if outcomes:
                link.symlink_to("check")
            else:
                link.write_text("#!/bin/sh\nexit 0\n")
                link.chmod(0o755)

    def cpu_s(self) -> float:
        assert self.pbx.proc is not None
        return proc_cpu_s(self.pbx.proc.pid, children=True)

    def stop(self) -> None:
        pass


def service_times(data: dict[str, Any]) -> dict[str, Any]:
    return {k.removesuffix("_ns"): percentiles(v) if v else None
            for k, v in data.items() if k.endswith("_ns")}


def run_scenario(pbx: Pbx, setup: Setup, tmp: Path, name: str, context: str,
                 size: dict[str, Any], variant: str = "", rate: float = 0.0) -> dict[str, Any]:
    setup.fresh_store()
    times = tmp / f"service-times-{name}.json"
    stub = name.startswith("stub")
    svc: Service | Stub | Classic = (
        Stub(setup, name) if stub else
        Classic(setup, pbx, size.get("base_agi", "") if name == "classic-base" else "",
                outcomes=name != "classic-check")
        if name.startswith("classic") else
        Service(setup, tmp / f"serve-{name}.log", instrumented=times, variant=variant))
    pairs = setup.pairs()
    try:
        # warm-up (not counted): imports, calendars, page cache, Asterisk modules
        asyncio.run(drive(pbx, context, pairs, 4, 1.5, start=len(pairs) // 2))
        assert pbx.proc is not None
        cpu0, ast0, me0 = svc.cpu_s(), proc_cpu_s(pbx.proc.pid), os.times()
        r = asyncio.run(drive(pbx, context, pairs, size["concurrency"], size["duration"], 0,
                              rate))
        me1 = os.times()
        wall = r["duration_s"]
        r["service_cpu_share"] = round((svc.cpu_s() - cpu0) / wall, 3)
        r["asterisk_cpu_share"] = round((proc_cpu_s(pbx.proc.pid) - ast0) / wall, 3)
        r["bench_client_cpu_share"] = round((me1.user - me0.user + me1.system - me0.system)
                                            / wall, 3)
        # everything else: SIPp carrier, kernel, and other jobs on the machine
        r["other_cpu_share"] = round(r["machine_cpu_share"] - r["service_cpu_share"]
                                     - r["asterisk_cpu_share"] - r["bench_client_cpu_share"], 3)
    finally:
        svc.stop()
    r["scenario"] = name + (f"@{rate:g}/s" if rate else "")
    if stub or name.startswith("classic"):
        r["service"] = {"serve": None, "decide": None}
        return r
    # the service-side samples include the warm-up's: drop them (per connection,
    # so commands come in 5s, or whatever the variant sends)
    data = json.loads(times.read_text())
    total = len(data["serve_ns"])
    warm = total - r["calls"]
    for k, v in data.items():
        if k.endswith("_ns") and v:
            per = len(v) / total
            data[k] = v[max(0, round(warm * per)):]
    r["variant"] = variant
    r["service"] = service_times(data)
    return r


def report(r: dict[str, Any]) -> None:
    paced = f", paced at {r['rate_limit']:g}/s" if r["rate_limit"] else ", unpaced"
    print(f"\n[{r['scenario']}] {r['calls']} calls in {r['duration_s']} s, at most "
          f"{r['concurrency']} in flight{paced}: {r['checks_per_s']} checks/s")
    print(f"  CPU, in % of one core: machine {r['machine_cpu_share']:.0%} = service "
          f"{r['service_cpu_share']:.0%} + asterisk {r['asterisk_cpu_share']:.0%} + bench client "
          f"{r['bench_client_cpu_share']:.0%} + other (sipp, kernel, other jobs) "
          f"{r['other_cpu_share']:.0%}")
    if r["agi_round_trip_asterisk"]:
        print(f"  AGI round trip (Asterisk, around GoSub): {fmt(r['agi_round_trip_asterisk'])}")
    if r["call_asterisk"]:
        print(f"  call (Asterisk, t0 -> hangup handler):  {fmt(r['call_asterisk'])}")
    print(f"  originate -> event (AMI client):         {fmt(r['originate_to_event_client'])}")
    labels = {"serve": "one FastAGI connection", "headers": "read the AGI headers",
              "decide_loop": "decision, as the loop waits", "queue": "store-thread queue",
              "decide": "decision in the store thread", "answer": "all SET VARIABLEs",
              "command": "one SET VARIABLE round trip"}
    for key, label in labels.items():
        if r["service"].get(key):
            print(f"  service: {label + ':':<34}{fmt(r['service'][key])}")
    print(f"  verdicts {r['verdicts']}  dialstatus {r['dialstatus']}  errors {r['errors']}  "
          f"caller IDs {r['callerids_seen']}")


def one(pbx: Pbx, setup: Setup, tmp: Path, name: str, context: str, size: dict[str, Any],
        variant: str, rate: float) -> dict[str, Any]:
    carrier = pbx.carrier(response=486) if name == "outbound" else None
    try:
        r = run_scenario(pbx, setup, tmp, name, context, size, variant, rate)
    finally:
        if carrier:
            carrier.stop()
    if carrier:
        r["carrier_invites"] = len(carrier.invites())
    report(r)
    return r


KEEP = 0.97  # a scenario keeps a paced rate when it completes >= 97 % of it


def run_capacity(pbx: Pbx, setup: Setup, tmp: Path, size: dict[str, Any], args: Any,
                 contexts: dict[str, str], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run climbs the rates; at each rate every scenario runs in turn
    (so sentinelle and the no-op responder share the machine's state of the
    moment). A scenario's capacity in a run is the highest rate it kept; the
    ratio to the no-op's (the last scenario named) is reported per run."""
    names = size["scenarios"].split(",")
    rates = sorted(float(x) for x in args.capacity.split(","))
    runs = []
    for run in range(args.runs):
        kept: dict[str, list[float]] = {n: [] for n in names}
        for rate in rates:
            for name in names:
                r = one(pbx, setup, tmp, name, contexts[name], size, args.variant, rate)
                r["capacity_run"] = run
                results.append(r)
                if r["checks_per_s"] >= KEEP * rate and not r["errors"]:
                    kept[name].append(rate)
        cap = {n: max(kept[n], default=0.0) for n in names}
        floor = cap[names[-1]]
        runs.append({"capacity": cap, "kept": kept,
                     "ratio_to_" + names[-1]: {n: round(c / floor, 2) if floor else None
                                               for n, c in cap.items()}})
        print(f"\ncapacity run {run + 1}: " + ", ".join(
            f"{n} {c:g}/s" for n, c in cap.items()) + f" (rates kept: {kept})")
    return {"rates": rates, "keep": KEEP, "runs": runs}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stub":
        stub_server(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="quick run (< 60 s)")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--scenarios",
                    help="check-only, outbound (sentinelle); classic (the per-call AGI, "
                         "its hangup handler's outcome process included), classic-check (the "
                         "check process alone); "
                         "stub5, stub2 (a stub responder answering 5 or 2 SET VARIABLE: "
                         "the Asterisk floor)")
    ap.add_argument("--rates", help="comma-separated origination rate limits in calls/s, "
                                    "0 = unpaced (as fast as N in flight allow)")
    ap.add_argument("--quiet-asterisk", action="store_true",
                    help="full log without verbose(3) lines (the harness default logs "
                         "every dialplan step)")
    ap.add_argument("--variant", default="",
                    help="experimental service patches, '+'-joined: skip-empty, inline, switch "
                         "(see bench_fastagi.VARIANTS); default: the service as shipped")
    ap.add_argument("--capacity", metavar="RATES",
                    help="comma-separated paced rates (calls/s): for each run, each rate (rising) "
                         "and each scenario in turn, find the highest rate a scenario keeps "
                         "(>= 97%% of it completed per second); replaces --rates")
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole sequence (capacity)")
    ap.add_argument("--base-agi", metavar="DIR",
                    help="scenario classic-base: the classic AGI from this package directory "
                         "(e.g. another checkout's agi/), started as before issue #15")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_pbx needs root (the Asterisk harness uses chroot/namespaces)")
    mode = "small" if args.small else "full"
    size = dict(SIZES[mode])
    if args.duration:
        size["duration"] = args.duration
    if args.concurrency:
        size["concurrency"] = args.concurrency
    for key in ("scenarios", "rates"):
        if getattr(args, key):
            size[key] = getattr(args, key)
    if "classic-base" in size["scenarios"].split(","):
        if not args.base_agi:
            raise SystemExit("classic-base needs --base-agi DIR")
        size["base_agi"] = str(Path(args.base_agi).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="sentinelle-bench-pbx-"))
    results = []
    pbx = None
    try:
        setup = Setup(tmp, size["pool"], size["campaigns"])
        pbx = Pbx(agi_url=f"agi://127.0.0.1:{setup.port}", campaign=setup.campaigns[0],
                  run_dir=tmp / "pbx", extra_dialplan=EXTRA_DIALPLAN,
                  host_root=any(n.startswith("classic") for n in size["scenarios"].split(",")))
        if args.quiet_asterisk:
            logger = pbx.etc_dir / "logger.conf"
            logger.write_text(logger.read_text().replace(",verbose(3)", ""))
        t0 = time.monotonic()
        pbx.start()
        # the shared harness AMI client records every event: mute it (we use our own)
        pbx.ami.action("Events", EventMask="off")
        print(f"asterisk up in {time.monotonic() - t0:.1f} s "
              f"(AMI {pbx.ami_port}, SIP {pbx.sip_port}, run dir {pbx.run_dir})")
        scenarios = {"check-only": "bench-check", "outbound": "bench-outbound",
                     "stub5": "bench-check", "stub2": "bench-check", "classic": "bench-classic",
                     "classic-base": "bench-classic", "classic-check": "bench-classic-check"}
        if args.capacity:
            capacity = run_capacity(pbx, setup, tmp, size, args, scenarios, results)
        else:
            capacity = None
            for name in size["scenarios"].split(","):
                for rate in (float(x) for x in size["rates"].split(",")):
                    results.append(one(pbx, setup, tmp, name, scenarios[name], size,
                                       args.variant, rate))
        summary = []
        for r in results:
            rt = r["agi_round_trip_asterisk"] or r["service"]["serve"]
            if rt is None:  # no check came back: see the verdicts
                continue
            summary.append({
                "scenario": r["scenario"], "checks_per_s": r["checks_per_s"],
                "round_trip_source": "asterisk" if r["agi_round_trip_asterisk"] else "service",
                "p50_ms": rt["p50_ms"], "p99_ms": rt["p99_ms"],
                "meets_p50": rt["p50_ms"] <= TARGET_P50_MS, "meets_p99": rt["p99_ms"] <= TARGET_P99_MS,
                "meets_cps": r["checks_per_s"] >= TARGET_CPS})
        print("\nsummary:", json.dumps(summary, indent=1))
        write_result("bench_pbx", args.small, {
            "code": provenance(), "frozen_at": FROZEN, "caller_id": NPV, "pool": size["pool"],
            "campaigns": size["campaigns"], "quiet_asterisk": args.quiet_asterisk,
            "variant": args.variant,
            "asterisk_start_s": pbx.start_seconds,
            "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS, "checks_per_s": TARGET_CPS},
            "scenarios": results, "summary": summary, "capacity": capacity,
            "extra_dialplan": EXTRA_DIALPLAN})
    finally:
        if pbx is not None:
            pbx.stop()
        if args.keep:
            print(f"work dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
