"""`sentinelle serve`: the long-running process beside Asterisk.

Runs the FastAGI server (and, when configured, the ARI listener) on one
event loop, and shuts down gracefully on SIGTERM/SIGINT: stop accepting,
finish the checks in flight, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from sentinelle import logs
from sentinelle.config import Config, permission_warnings, validate_for_serving, validate_http
from sentinelle.core.clock import frozen, system_clock
from sentinelle.pbx.server import FastAgiServer
from sentinelle.store import Checkpointer, StoreError, is_postgres, open_store

if TYPE_CHECKING:
    from sentinelle.http.server import HttpServer
    from sentinelle.pbx.listener import Listener
    from sentinelle.service.tallies import Tallies

log = logging.getLogger("sentinelle.service")

# The WAL checkpoint runs here, beside the checks, never inside one.
CHECKPOINT_INTERVAL_S = 1.0
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
# The cyclic GC once start-up is over: the youngest generation collected
# 10x less often than Python's default (700).
GC_THRESHOLD = (7000, 10, 10)


@contextlib.contextmanager
def settled_gc() -> Iterator[None]:
    """For the service's life, what start-up built (modules, config, store,
    HTTP and ARI clients: hundreds of thousands of objects) is moved out of
    the collector's sight, and young objects are collected less often. A
    collection that walks them all is a pause inside whichever check is
    running: in `bench_decision.py` (10 M numbers, 5 M attempts) GC pauses
    were a fifth of the checks at or above the p99, and freezing plus this
    threshold took the record path's p99 from 0.95 to 0.76-0.80 ms.
    Restored on the way out (tests run the service in their own process)."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def warn_permissions(config: Config) -> None:
    """Log (never refuse) files that expose the ARI secret or the policy."""
    for warning in permission_warnings(config):
        logs.event(log, warning, logging.WARNING)


def prepare_store(config: Config) -> None:
    """Create the store or bring its schema up to date before serving. A store
    that cannot be opened now (unreadable after a chmod or a chown) must not
    stop the service: exiting would make systemd restart
    it in a loop while the dialplan sees it down, with no reason anywhere.
    It serves instead; every check blocks with SYS-STORE and the reason
    (as do /health and the metrics) until the store can be opened, which
    each check retries."""
    try:
        open_store(config.store, create=True, pool_size=1).close()
    except StoreError as exc:
        logs.event(log, "store unavailable at start-up: serving, every check blocks SYS-STORE "
                        "until it can be opened", logging.ERROR, error=str(exc))


async def run(config: Config, at: datetime | None = None,
              ready: asyncio.Event | None = None, worker: int | None = None,
              tallies: Tallies | None = None) -> None:
    """`worker`: this process's index among `server.workers` (None: the only
    one, which prepares the store itself). Only the first worker runs the
    ARI listener, the HTTP API and the metrics endpoint; every worker counts
    its decisions in `tallies`, shared by the workers, which that endpoint
    reads."""
    validate_for_serving(config)
    sc = config.store
    if worker is None:
        warn_permissions(config)
        prepare_store(config)
    first = worker in (None, 0)
    clock = frozen(at) if at else system_clock
    metrics = None
    if config.metrics.listen and tallies is None:
        from sentinelle.service.tallies import Tallies

        tallies = Tallies(1)
    if config.metrics.listen and first:
        from sentinelle.service.metrics import Metrics  # local: prometheus-client only when enabled

        metrics = Metrics(config, clock, tallies)
    # SQLite: the check connection never checkpoints (a checkpoint inside a
    # committing check was the p99); this thread does, on its own connection.
    # PostgreSQL checkpoints by itself.
    checkpointer = None if is_postgres(sc) else Checkpointer(
        sc.path, interval_s=CHECKPOINT_INTERVAL_S, truncate_bytes=WAL_TRUNCATE_BYTES)
    if checkpointer is not None:
        checkpointer.start()
    row = worker or 0
    counts = tallies  # a name mypy keeps narrowed inside the lambdas
    server = FastAgiServer(
        config, clock, wal_autocheckpoint=0,
        on_decision=None if counts is None else lambda d, s: counts.observe(row, d, s),
        on_inflight=None if counts is None else lambda n: counts.set_inflight(row, n))
    try:
        await server.start(reuse_port=worker is not None)
    except BaseException:
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        raise
    if at:
        logs.event(log, "clock frozen (tests and demos only)", logging.WARNING, at=at.isoformat())
    # The ARI listener shares the loop: it only waits on the network, and its
    # store writes run in its own thread with its own SQLite connection.
    listener: Listener | None = None
    listening: asyncio.Task[None] | None = None
    pbx_report: asyncio.Task[None] | None = None
    if config.ari.url and first:
        from sentinelle.pbx.listener import Listener
        from sentinelle.pbx.livecheck import LIVE_TIMEOUT_S, agi_url, report_once

        listener = Listener(config, clock)
        listening = asyncio.create_task(listener.run(), name="sentinelle-ari")
        # What `serve --check-config` asks the live PBX, said once in the log
        # (the unit's pre-start check reads the files only).
        pbx_report = asyncio.create_task(report_once(
            listener.client, refusal_dtmf=config.ari.refusal_dtmf,
            agi_url=agi_url(config.server.listen), timeout=LIVE_TIMEOUT_S), name="sentinelle-pbx")
    # The HTTP API shares the loop too: its store work runs on its own threads.
    http: HttpServer | None = None
    if config.http.listen and first:
        from sentinelle.http.server import HttpServer  # local: aiohttp only when enabled

        http = HttpServer(config, clock, validate_http(config))
        await http.start()
    if metrics is not None:
        if listener is not None:
            metrics.bind_listener(listener)
        metrics.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    with settled_gc():
        await stop.wait()
    logs.event(log, "stopping: finishing in-flight checks")
    if pbx_report is not None:
        pbx_report.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pbx_report
    if listening is not None and listener is not None:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await listener.close()
    if http is not None:
        await http.stop()
    await server.stop()
    wal: dict[str, int] = {}
    if checkpointer is not None:
        await asyncio.to_thread(checkpointer.stop)
        wal = {"checkpoints": checkpointer.runs, "wal_truncations": checkpointer.truncations,
               "checkpoint_errors": checkpointer.errors}
    if metrics is not None:
        metrics.stop()
    logs.event(log, "stopped", **wal, **server.stats.decisions)


async def run_listener(config: Config, at: datetime | None = None) -> None:
    """`sentinelle listen`: the ARI listener alone, until SIGTERM/SIGINT."""
    from sentinelle.pbx.listener import run as listen  # local: the ARI client only when used

    warn_permissions(config)
    sc = config.store
    open_store(sc, create=True, pool_size=1).close()  # schema ready
    task = asyncio.create_task(listen(config, frozen(at) if at else None))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
