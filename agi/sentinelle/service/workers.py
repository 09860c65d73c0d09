"""`server.workers = N`: N FastAGI processes on one port, supervised.

Why processes: a check is mostly Python (the rules) between two short store
round trips, and one CPython process uses one core whatever its threads do.
With PostgreSQL each process holds its own connections and the per-callee
advisory lock keeps R-30 exact across them, as across PBX hosts. The
kernel spreads the PBX's connections over the processes (SO_REUSEPORT).

The supervisor (this parent process) only forks, restarts a worker that
died (after a pause that grows, so a crash loop cannot spin) and passes
SIGTERM/SIGINT on, then waits for every worker's graceful stop. Worker 0
also runs the ARI listener, the HTTP API and the metrics endpoint (they
bind ports of their own); the metrics count every worker's checks, through
tallies the supervisor shares with the workers before it forks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from datetime import datetime
from types import FrameType

from sentinelle import logs
from sentinelle.config import Config

log = logging.getLogger("sentinelle.service")

RESTART_PAUSE_S = (0.2, 5.0)  # first pause before a restart, and the longest


def supervise(config: Config, at: datetime | None = None) -> int:
    """Run `config.server.workers` serve processes until SIGTERM/SIGINT; the
    exit status is 0 after a requested stop."""
    from sentinelle.service.serve import prepare_store, run
    from sentinelle.service.tallies import Tallies

    prepare_store(config)  # before forking: no pool or thread crosses a fork
    tallies = Tallies(config.server.workers) if config.metrics.listen else None
    children: dict[int, int] = {}
    pauses: dict[int, float] = {}
    stopping = False

    def spawn(index: int) -> None:
        if tallies is not None:  # a dead worker's requests died with it
            tallies.set_inflight(index, 0)
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                asyncio.run(run(config, at, worker=index, tallies=tallies))
            except BaseException as exc:  # reported, then the process ends
                logs.event(log, "worker failed", logging.ERROR, worker=index, error=str(exc))
                code = 1
            os._exit(code)
        children[pid] = index
        logs.event(log, "worker started", worker=index, pid=pid)

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    for index in range(config.server.workers):
        spawn(index)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        if stopping:
            continue
        pause = pauses.get(index, RESTART_PAUSE_S[0])
        logs.event(log, "worker died: restarting", logging.ERROR, worker=index, pid=pid,
                   status=os.waitstatus_to_exitcode(status), pause_s=pause)
        time.sleep(pause)
        pauses[index] = min(pause * 2, RESTART_PAUSE_S[1])
        if not stopping:
            spawn(index)
    logs.event(log, "workers stopped")
    return 0
