"""Faults injected while a real `sentinelle serve` process runs.

Store faults (locked by another writer, made read-only, deleted, replaced by
garbage): every check that runs entirely inside the fault is a BLOCK with a
SYS-* rule and a reason, the service recovers by itself once the fault ends
(recovery time printed), and nothing recorded is lost: every attempt whose
ALLOW was sent is in the store afterwards, and no attempt exists without one.

"Read-only" as root: permission bits do not stop root, so the fault is
`chattr +i` (immutable) on the database file and its WAL. The `-shm` index is
left writable on purpose: SQLite maps it in memory, and an immutable -shm
makes its writes through the mapping fault with SIGBUS, killing any SQLite
process (sentinelle included) on the spot. A read-only filesystem would do
the same; the dialplan then fails closed (service down) and systemd restarts it.

Also: 500 idle connections do not delay a normal check; `kill -9` during a
big Bloctel import leaves the previous snapshot in use and the rerun works;
`kill -9` of the service under load loses no allowed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinelle.store import ConsentProof, Store
from tests.helpers.hardening_support import Probe, Serve, median, probe, report, scaled, sentinelle_exe

PARIS = ZoneInfo("Europe/Paris")
GIVEN = datetime(2026, 11, 1, 10, 0, tzinfo=PARIS)
NUMBERS = [f"0612{i:06d}" for i in range(6000)]
SYS = ("SYS-STORE", "SYS-TIMEOUT")


def e164(national: str) -> str:
    return "+33" + national[1:]


def seed_consents(path: Path, numbers: list[str]) -> None:
    with Store(path, create=True) as s:
        s.import_rows("consents", [{"professional": "acme", "e164": e164(n),
                                    "proof": ConsentProof(source="seed", given_at=GIVEN)}
                                   for n in numbers])


def attempts_in(path: Path) -> dict[int, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, e164 FROM attempts"))
    finally:
        conn.close()


def assert_nothing_lost(path: Path, probes: list[Probe]) -> None:
    """Every ALLOW sent has its attempt in the store, and every attempt in the
    store had its ALLOW sent (no phantom attempt from a timed-out check)."""
    stored = attempts_in(path)
    allowed = {p.attempt: e164(p.number) for p in probes if p.verdict == "ALLOW"}
    assert None not in allowed, "an ALLOW without an attempt id"
    missing = {a: n for a, n in allowed.items() if stored.get(a) != n}
    assert not missing, f"allowed attempts missing from the store: {missing}"
    phantom = set(stored) - set(allowed)
    assert not phantom, f"attempts recorded for checks that were not answered ALLOW: {phantom}"


# -- store faults -------------------------------------------------------------

class Fault:
    """inject() returns once the fault is in place; clear() once it is gone."""

    name = "?"
    held_since: float | None = None  # when the fault took hold, if it can tell (monotonic)

    def __init__(self, store: Path) -> None:
        self.store = store

    def inject(self) -> None: ...

    def clear(self) -> None: ...

    def during(self) -> None:
        """Checked while the fault is in place (after some probes ran)."""


class Locked(Fault):
    """Another process holds the write lock (BEGIN IMMEDIATE) for the duration."""

    name = "locked"

    def inject(self) -> None:
        code = ("import sqlite3, sys\n"  # noqa: S608 - a script, not SQL built from input
                f"c = sqlite3.connect({str(self.store)!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE')\n"
                "import time\n"
                "held = time.monotonic()\n"
                "c.execute(\"INSERT INTO meta VALUES ('hardening-lock', 'x')\")\n"
                "print('locked', held, flush=True)\n"
                "sys.stdin.readline()\n"
                "c.execute('ROLLBACK')\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        word, held = self.proc.stdout.readline().split()
        assert word == "locked"
        # CLOCK_MONOTONIC is one clock for every process: the fault starts when
        # the lock was taken, not when this process heard of it (the checks
        # that began in between wait on the lock too, and must not be lost
        # from the count of checks made during the fault).
        self.held_since = float(held)

    def clear(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0


class ReadOnly(Fault):
    name = "read-only (chattr +i)"

    def files(self) -> list[Path]:
        return [p for p in (self.store, Path(f"{self.store}-wal")) if p.exists()]

    def inject(self) -> None:
        self.done = self.files()
        subprocess.run(["chattr", "+i", *map(str, self.done)], check=True)
        probe_write = subprocess.run(
            [sys.executable, "-c", f"open({str(self.store)!r}, 'r+b').close()"],
            capture_output=True, text=True)
        assert probe_write.returncode != 0, "chattr +i did not make the store read-only for root"

    def clear(self) -> None:
        subprocess.run(["chattr", "-i", *map(str, self.done)], check=True)


class Deleted(Fault):
    """The file vanishes (rm, or moved away by mistake), then comes back."""

    name = "deleted"

    def inject(self) -> None:
        self.away = self.store.with_name("moved-away.db")
        os.rename(self.store, self.away)

    def during(self) -> None:
        # The service must never create a fresh, empty store in its place: an
        # empty history would let a fifth attempt or a refused callee through.
        assert not self.store.exists(), "the service recreated a missing store"

    def clear(self) -> None:
        os.rename(self.away, self.store)


class Garbage(Fault):
    """Another file, not a database, atomically takes the store's place."""

    name = "replaced by garbage"

    def inject(self) -> None:
        self.real = self.store.with_name("real.db")
        tmp = self.store.with_name("garbage.tmp")
        tmp.write_bytes(os.urandom(64 * 1024))
        os.rename(self.store, self.real)
        os.rename(tmp, self.store)

    def clear(self) -> None:
        os.replace(self.real, self.store)


async def _probing(port: int, numbers, probers: int, stop: asyncio.Event,
                   probes: list[Probe], pause_s: float = 0.02) -> None:
    async def one() -> None:
        while not stop.is_set():
            probes.append(await probe(port, next(numbers)))
            await asyncio.sleep(pause_s)

    await asyncio.gather(*(one() for _ in range(probers)))


def run_fault(tmp_path: Path, fault_cls: type[Fault], hold_s: float, probers: int = 3,
              ) -> tuple[list[Probe], float, float, float, float, Fault]:
    svc = Serve(tmp_path)
    seed_consents(svc.store, NUMBERS)
    fault = fault_cls(svc.store)
    self_start: list[float] = []
    with svc.start():
        async def scenario() -> tuple[list[Probe], float, float, float]:
            probes: list[Probe] = []
            stop = asyncio.Event()
            numbers = iter(NUMBERS)
            task = asyncio.create_task(_probing(svc.port, numbers, probers, stop, probes))
            # Warm up until a few checks have been answered (a loaded machine
            # may need more than a fixed half second), then inject.
            deadline = time.monotonic() + 30
            while len(probes) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self_start.append(time.monotonic())
            await asyncio.to_thread(fault.inject)
            f0 = fault.held_since or time.monotonic()
            await asyncio.sleep(hold_s / 2)
            fault.during()
            await asyncio.sleep(hold_s / 2)
            f1_start = time.monotonic()
            await asyncio.to_thread(fault.clear)
            f1 = time.monotonic()
            await asyncio.sleep(2.5)
            stop.set()
            await task
            return probes, f0, f1_start, f1

        try:
            probes, f0, f1_start, f1 = asyncio.run(scenario())
        finally:
            with contextlib.suppress(Exception):
                fault.clear()
    assert_nothing_lost(svc.store, probes)
    for p in probes:
        p.reason = p.reason.replace(str(svc.store), "<store>")
    return probes, self_start[0], f0, f1_start, f1, fault


FAULTS = [(Locked, 3.0), (Locked, 10.0), (ReadOnly, 2.0), (Deleted, 2.0), (Garbage, 2.0)]


@pytest.mark.parametrize(("fault_cls", "hold_s"), FAULTS,
                         ids=[f"{f.__name__.lower()}-{h:g}s" for f, h in FAULTS])
def test_store_fault_blocks_then_recovers(tmp_path, request, fault_cls, hold_s):
    probes, injecting, f0, f1_start, f1, fault = run_fault(tmp_path, fault_cls, hold_s,
                                                           probers=2 if hold_s > 5 else 6)
    assert all(p.verdict in ("ALLOW", "BLOCK") for p in probes), \
        [p for p in probes if p.verdict is None][:3]
    before = [p for p in probes if p.ended < injecting]
    inside = [p for p in probes if p.started >= f0 and p.ended <= f1_start]
    after = [p for p in probes if p.ended > f1]
    assert before and all(p.verdict == "ALLOW" for p in before)
    assert len(inside) >= 2, f"too few checks ran during the fault: {len(inside)}"
    for p in inside:
        assert p.verdict == "BLOCK" and p.rules in SYS and p.reason.startswith(p.rules), p
    first_allow = min((p.ended for p in after if p.verdict == "ALLOW"), default=None)
    assert first_allow is not None, "the service did not recover"
    recovery = first_allow - f1
    assert recovery < 2.5, f"recovery took {recovery:.2f}s"
    steady = [p for p in after if p.started > first_allow]
    assert steady and all(p.verdict == "ALLOW" for p in steady)
    rules = sorted({p.rules for p in inside})
    reasons = sorted({p.reason.split(": ", 1)[-1][:70] for p in inside})
    report(request, f"fault {fault.name} {hold_s:g}s: {len(inside)} checks during the fault, all "
                    f"BLOCK {'/'.join(rules)} (e.g. {reasons[0]!r}); max latency inside "
                    f"{max(p.latency_ms for p in inside):.0f} ms; recovered "
                    f"{max(0.0, recovery) * 1000:.0f} ms after the fault ended; "
                    f"{sum(p.verdict == 'ALLOW' for p in probes)} allowed attempts all in the store")


# -- idle connections ---------------------------------------------------------

def test_500_idle_connections_do_not_delay_a_check(tmp_path, request):
    """Default cap (256) and header deadline (2 s): the oldest idle sockets are
    evicted to make room, so a real request is never refused or delayed."""
    svc = Serve(tmp_path)
    seed_consents(svc.store, NUMBERS[:200])
    with svc.start():
        async def scenario():
            numbers = iter(NUMBERS[:200])
            for _ in range(10):  # warm-up: store opened, code paths hot
                await probe(svc.port, next(numbers))
            base = [await probe(svc.port, next(numbers)) for _ in range(40)]
            idle = []
            t0 = time.monotonic()
            for _ in range(500):
                idle.append(await asyncio.open_connection("127.0.0.1", svc.port))
            opened = time.monotonic() - t0
            loaded = [await probe(svc.port, next(numbers)) for _ in range(40)]
            within = time.monotonic() - t0
            for _, w in idle:
                w.close()
            return base, loaded, opened, within

        base, loaded, opened, within = asyncio.run(scenario())
    assert within < 2.0, "measured after the header deadline: idle clients were already gone"
    assert all(p.verdict == "ALLOW" for p in base + loaded), [p for p in loaded if p.verdict != "ALLOW"]
    mb, ml = median([p.latency_ms for p in base]), median([p.latency_ms for p in loaded])
    worst = max(p.latency_ms for p in loaded)
    assert ml - mb < 10, f"median check latency {mb:.1f} ms -> {ml:.1f} ms with 500 idle clients"
    assert worst < 250, f"a check took {worst:.0f} ms with 500 idle clients"
    report(request, f"500 idle connections (opened in {opened * 1000:.0f} ms): check latency "
                    f"median {mb:.2f} ms -> {ml:.2f} ms ({ml - mb:+.2f} ms), max {worst:.1f} ms; "
                    f"all 40 checks answered ALLOW")


# -- kill -9 during a Bloctel import ------------------------------------------

OLD = [f"0650{i:06d}" for i in range(300)]  # opposed in the previous snapshot
NEW = [f"0651{i:06d}" for i in range(300)]  # opposed in the new file only
JULY = "2026-07-15T10:30:00+02:00"  # a Wednesday under fr-2023


def _snapshot_states(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, snapshot_date, state, count FROM bloctel_snapshots"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()


def _loaded_rows(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=5)
    try:
        row = conn.execute("SELECT id FROM bloctel_snapshots WHERE state='loading'").fetchone()
        if row is None:
            return 0
        return conn.execute(f"SELECT count(*) FROM bloctel_{int(row[0])}").fetchone()[0]  # noqa: S608
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_kill9_during_bloctel_import_keeps_previous_snapshot(tmp_path, request):
    lines = scaled("SENTINELLE_HARDENING_IMPORT_LINES", 3_000_000)
    svc = Serve(tmp_path, at=JULY, regime="fr-2023")
    old = tmp_path / "old.txt"
    old.write_text("\n".join(OLD) + "\n")
    r = svc.cli("import", "bloctel", str(old), "--campaign", "promo", "--date", "2026-07-01")
    assert r.returncode == 0, r.stderr
    big = tmp_path / "big.txt"
    with big.open("w") as fh:
        fh.write("numero\n")
        fh.write("\n".join(NEW) + "\n")
        step = 1_000_000
        for lo in range(0, lines - len(NEW), step):
            hi = min(lo + step, lines - len(NEW))
            fh.write("".join(f"06{10_000_000 + i:08d}\n" for i in range(lo, hi)))
    old_pool, new_pool = iter(OLD), iter(NEW)

    async def pair() -> tuple[Probe, Probe]:
        return await probe(svc.port, next(old_pool)), await probe(svc.port, next(new_pool))

    def previous_snapshot_used(pairs: list[tuple[Probe, Probe]]) -> None:
        for o, n in pairs:
            assert (o.verdict, o.rules) == ("BLOCK", "R-10") and "2026-07-01" in o.reason, o
            assert n.verdict == "ALLOW", n

    with svc.start():
        importer = subprocess.Popen(
            [*svc_cmd(svc), "import", "bloctel", str(big), "--campaign", "promo",
             "--date", "2026-07-14"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        async def during_import() -> list[tuple[Probe, Probe]]:
            pairs = []
            deadline = time.monotonic() + 60
            while _loaded_rows(svc.store) < 200_000:
                assert importer.poll() is None, f"import ended before the kill: {importer.stderr}"
                assert time.monotonic() < deadline, "import did not start loading"
                pairs.append(await pair())
                await asyncio.sleep(0.05)
            return pairs

        t0 = time.monotonic()
        pairs = asyncio.run(during_import())
        loaded = _loaded_rows(svc.store)
        assert importer.poll() is None, "the import finished before it could be killed"
        importer.send_signal(signal.SIGKILL)
        importer.wait(10)
        killed_after = time.monotonic() - t0
        previous_snapshot_used(pairs)
        after_kill = [asyncio.run(pair()) for _ in range(5)]
        previous_snapshot_used(after_kill)
        states = _snapshot_states(svc.store)
        assert [(s[1], s[2], s[3]) for s in states] == [
            ("2026-07-01", "current", len(OLD)), ("2026-07-14", "loading", 0)], states
        t1 = time.monotonic()
        rerun = svc.cli("import", "bloctel", str(big), "--campaign", "promo", "--date",
                        "2026-07-14", timeout=600)
        rerun_s = time.monotonic() - t1
        assert rerun.returncode == 0 and f"imported {lines} numbers" in rerun.stdout, rerun.stderr
        for _ in range(5):
            o, n = asyncio.run(pair())
            assert o.verdict == "ALLOW", o
            assert (n.verdict, n.rules) == ("BLOCK", "R-10") and "2026-07-14" in n.reason, n
    states = _snapshot_states(svc.store)
    assert [(s[1], s[2]) for s in states] == [("2026-07-01", "replaced"), ("2026-07-14", "aborted"),
                                               ("2026-07-14", "current")], states
    conn = sqlite3.connect(svc.store)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                         " AND name GLOB 'bloctel_[0-9]*'")}
    conn.close()
    assert tables == {f"bloctel_{states[2][0]}"}, tables  # killed import's table swept
    lat = [p.latency_ms for pr in pairs for p in pr]
    report(request, f"kill -9 during a {lines:,}-line Bloctel import (killed after "
                    f"{killed_after:.1f}s, {loaded:,} rows loaded): previous snapshot intact and "
                    f"used by {2 * len(pairs)} checks during the import (median "
                    f"{median(lat):.1f} ms, max {max(lat):.0f} ms); rerun imported {lines:,} "
                    f"in {rerun_s:.1f}s and swept the orphan")


def svc_cmd(svc: Serve) -> list[str]:
    return [sentinelle_exe(), "--config", str(svc.config)]


# -- kill -9 of the service under load ----------------------------------------

def test_kill9_serve_under_load_loses_no_allowed_attempt(tmp_path, request):
    svc = Serve(tmp_path)
    seed_consents(svc.store, NUMBERS)
    numbers = iter(NUMBERS)
    killed: list[float] = []
    svc.start()
    try:
        async def load() -> list[Probe]:
            probes: list[Probe] = []
            stop = asyncio.Event()
            task = asyncio.create_task(_probing(svc.port, numbers, 16, stop, probes, 0.0))
            await asyncio.sleep(1.5)
            killed.append(time.monotonic())
            await asyncio.to_thread(svc.kill9)
            await asyncio.sleep(0.2)
            stop.set()
            await task
            return probes

        probes = asyncio.run(load())
        allowed = [p for p in probes if p.verdict == "ALLOW"]
        cut = [p for p in probes if p.verdict is None and p.started < killed[0]]
        assert len(allowed) > 50, len(allowed)
        svc.start()
        after = [asyncio.run(probe(svc.port, next(numbers))) for _ in range(5)]
        assert all(p.verdict == "ALLOW" for p in after)
    finally:
        svc.stop()
    stored = attempts_in(svc.store)
    for p in allowed + after:
        assert stored.get(p.attempt) == e164(p.number), f"allowed attempt lost: {p}"
    unanswered = len(stored) - len(allowed) - len(after)
    report(request, f"kill -9 of serve under load (16 clients): {len(allowed)} ALLOW sent before "
                    f"the kill, all {len(allowed)} in the store after restart; {len(cut)} checks cut "
                    f"by the kill ({unanswered} of them had recorded an attempt whose ALLOW never "
                    f"left: counted, never dialled - the cautious side)")


def test_locked_store_never_records_after_answering_timeout(tmp_path):
    """A backlog queued behind a long lock: every queued check is answered
    (BLOCK SYS-*) in time, none records an attempt once answered, and the
    first check after the lock is not stuck behind stale work."""
    svc = Serve(tmp_path, request_timeout_s=1.0, busy_timeout_ms=5000)
    seed_consents(svc.store, NUMBERS[:100])
    fault = Locked(svc.store)
    numbers = iter(NUMBERS[:100])
    with svc.start():
        async def scenario():
            fault.inject()
            burst = await asyncio.gather(*(probe(svc.port, next(numbers)) for _ in range(20)))
            t = time.monotonic()
            await asyncio.to_thread(fault.clear)
            first = await probe(svc.port, next(numbers))
            return burst, first, time.monotonic() - t

        burst, first, recovery = asyncio.run(scenario())
    assert all(p.verdict == "BLOCK" and p.rules in SYS for p in burst), burst
    assert all(p.latency_ms < 1000 + 500 for p in burst), max(p.latency_ms for p in burst)
    assert first.verdict == "ALLOW" and recovery < 1.0, (first, recovery)
    assert attempts_in(svc.store) == {first.attempt: e164(first.number)}

