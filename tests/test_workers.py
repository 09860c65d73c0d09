"""`[server] workers = N`: N `serve` processes on one FastAGI port (SO_REUSEPORT).

The parent runs the ARI listener, metrics and the WAL checkpoint; N-1 spawned
children run FastAGI only. R-30 stays atomic across them (BEGIN IMMEDIATE),
SIGTERM stops them all, a dead child is restarted, an orphan stops by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hardening_support import FROZEN, Serve, probe
from sentinelle.policy import ConfigError, load_config
from sentinelle.store import ConsentProof, Store

CONSENTED = "0612345678"


# -- config ---------------------------------------------------------------------

def _config(tmp_path: Path, server_lines: str) -> Path:
    path = tmp_path / "sentinelle.toml"
    path.write_text(f"""
[store]
path = "s.db"

[professionals.acme]

[campaigns.promo]
professional = "acme"

[server]
{server_lines}
""")
    return path


def test_workers_default_is_one(tmp_path):
    assert load_config(_config(tmp_path, "")).server.workers == 1
    assert load_config(_config(tmp_path, "workers = 3")).server.workers == 3


@pytest.mark.parametrize("value", ["0", "-1", "65", '"2"', "true", "2.0"])
def test_workers_invalid_names_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=r"server\.workers"):
        load_config(_config(tmp_path, f"workers = {value}"))


# -- a real `serve` with workers = 2 --------------------------------------------------

def _gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (a container's PID 1
    may never reap the orphans it inherits): either way, not running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _listening_pids(svc: Serve) -> set[int]:
    return {line["pid"] for line in svc.log_lines() if line.get("msg") == "listening"}


def _worker_pids(svc: Serve) -> list[int]:
    return [line["worker_pid"] for line in svc.log_lines() if line.get("msg") == "worker started"]


def _start(tmp_path: Path, workers: int = 2) -> Serve:
    svc = Serve(tmp_path, server_extra=f"workers = {workers}")
    store = Store(str(svc.store), create=True)
    at = datetime.fromisoformat(FROZEN)
    store.add_consent("acme", "+33612345678", ConsentProof(source="web",
                                                           given_at=at - timedelta(days=3)))
    store.close()
    svc.start()
    assert _wait_for(lambda: len(_listening_pids(svc)) == workers), svc.log.read_text()
    return svc


async def _burst(port: int, numbers: list[str]):
    return await asyncio.gather(*(probe(port, n) for n in numbers))


def test_two_workers_answer_and_r30_holds_across_processes(tmp_path):
    svc = _start(tmp_path)
    try:
        parent = svc.proc.pid
        children = _worker_pids(svc)
        assert len(children) == 1 and children[0] != parent
        assert _listening_pids(svc) == {parent, children[0]}
        # 20 agents, one consented number, same instant: 4 ALLOW, never a 5th,
        # although two processes with two store connections answer.
        results = asyncio.run(_burst(svc.port, [CONSENTED] * 20))
        verdicts = [r.verdict for r in results]
        assert verdicts.count("ALLOW") == 4, verdicts
        assert verdicts.count("BLOCK") == 16
        assert all(r.rules == "R-30" for r in results if r.verdict == "BLOCK")
        # Enough connections that the kernel's hash sends some to each process.
        more = asyncio.run(_burst(svc.port, [f"06{i:08d}" for i in range(40)]))
        assert all(r.verdict for r in more)
        decisions = [line for line in svc.log_lines() if line.get("msg") == "decision"]
        assert len(decisions) == 60
        assert {d["pid"] for d in decisions} == {parent, children[0]}
        store = Store(str(svc.store))
        assert store.count("attempts") == 4
        store.close()
    finally:
        code = svc.stop()
    assert code == 0
    for pid in (parent, *children):
        assert _wait_for(lambda pid=pid: _gone(pid), 5), f"pid {pid} left behind"
    msgs = [line.get("msg") for line in svc.log_lines()]
    assert "worker stopped" in msgs and "workers stopped" in msgs
    # The children stopped before the parent's own FastAGI server.
    assert msgs.index("workers stopped") < msgs.index("stopped")


def test_dead_worker_is_restarted(tmp_path):
    svc = _start(tmp_path)
    try:
        (child,) = _worker_pids(svc)
        os.kill(child, signal.SIGKILL)
        assert _wait_for(lambda: len(_worker_pids(svc)) == 2), svc.log.read_text()
        assert any(line.get("msg") == "worker died: restarting" and line["worker_pid"] == child
                   for line in svc.log_lines())
        new = _worker_pids(svc)[-1]
        assert _wait_for(lambda: new in _listening_pids(svc)), svc.log.read_text()
        results = asyncio.run(_burst(svc.port, [f"06{i:08d}" for i in range(20)]))
        assert all(r.verdict for r in results)
    finally:
        assert svc.stop() == 0
    assert _wait_for(lambda: _gone(new), 5)


def test_workers_exit_when_the_parent_dies(tmp_path):
    svc = _start(tmp_path)
    try:
        (child,) = _worker_pids(svc)
        svc.kill9()
        assert _wait_for(lambda: _gone(child), 15), f"worker {child} outlived its parent"
        assert any(line.get("msg") == "worker stopping: finishing in-flight checks"
                   and line.get("reason") == "parent gone" for line in svc.log_lines())
    finally:
        svc.stop()
