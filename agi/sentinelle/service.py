"""`sentinelle serve`: the long-running process beside Asterisk.

Runs the FastAGI server (and, when configured, the ARI listener) on one
event loop, and shuts down gracefully on SIGTERM/SIGINT: stop accepting,
finish the checks in flight, close the store.

With `server.workers = N > 1`, N processes listen on the same port
(SO_REUSEPORT; the kernel spreads the connections): this one, which alone
runs the ARI listener, the metrics endpoint and the WAL checkpoint, and N-1
spawned children running FastAGI only, each on its own store connection.
R-30 stays atomic across them: a check reads and records in one SQLite
`BEGIN IMMEDIATE` transaction. SIGTERM here stops the children first (each
finishes its checks in flight), then this process; a child that dies is
restarted (a bounded number of times); a child whose parent dies stops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import multiprocessing
import os
import signal
from datetime import datetime
from typing import TYPE_CHECKING

from . import logs
from .clock import frozen, system_clock
from .fastagi import FastAgiServer
from .policy import Config, ConfigError, permission_warnings
from .store import Checkpointer, Store, StoreError

if TYPE_CHECKING:
    from .listener import Listener

log = logging.getLogger("sentinelle.service")

# The WAL checkpoint runs here, beside the checks, never inside one.
CHECKPOINT_INTERVAL_S = 1.0
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
# server.workers: how often the parent looks for dead children, how many
# times one worker slot is restarted before it is given up, and how long a
# child gets to finish its checks in flight after SIGTERM.
SUPERVISE_INTERVAL_S = 0.5
MAX_RESTARTS = 5
WORKER_STOP_S = 10.0


def validate_for_serving(config: Config) -> None:
    """Refuse an exposed listener without an allow list: a FastAGI port open
    to the network would let anyone probe the lists and burn attempts."""
    host = config.server.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not config.server.allow:
        raise ConfigError("server.allow", f"listen address {config.server.listen} is not loopback: "
                                          "list the PBX addresses allowed to connect")
    for entry in config.server.allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError("server.allow", f"not an address or network: {entry!r}") from None
    if config.ari.url:
        from .listener import validate  # local: the ARI client is not needed otherwise

        validate(config)


def warn_permissions(config: Config) -> None:
    """Log (never refuse) files that expose the ARI secret or the policy."""
    for warning in permission_warnings(config):
        logs.event(log, warning, logging.WARNING)


async def run(config: Config, at: datetime | None = None,
              ready: asyncio.Event | None = None) -> None:
    validate_for_serving(config)
    warn_permissions(config)
    sc = config.store
    Store(sc.path, create=True, busy_timeout_ms=sc.busy_timeout_ms).close()  # schema ready
    clock = frozen(at) if at else system_clock
    metrics = None
    if config.metrics.listen:
        from .metrics import Metrics  # local: prometheus-client only when enabled

        metrics = Metrics(config, clock)
    # The check connection never checkpoints (a checkpoint inside a committing
    # check was the p99); this thread does, on its own connection.
    checkpointer = Checkpointer(sc.path, interval_s=CHECKPOINT_INTERVAL_S,
                                truncate_bytes=WAL_TRUNCATE_BYTES)
    checkpointer.start()
    multi = config.server.workers > 1
    if multi:
        _log_pid()
    server = FastAgiServer(config, clock, on_decision=metrics.observe if metrics else None,
                           wal_autocheckpoint=0, reuse_port=multi)
    try:
        await server.start()
    except BaseException:
        await asyncio.to_thread(checkpointer.stop)
        raise
    workers = Workers(config, at) if multi else None
    if workers is not None:
        workers.start()
    if at:
        logs.event(log, "clock frozen (tests and demos only)", logging.WARNING, at=at.isoformat())
    # The ARI listener shares the loop: it only waits on the network, and its
    # store writes run in its own thread with its own SQLite connection.
    listener: Listener | None = None
    listening: asyncio.Task[None] | None = None
    if config.ari.url:
        from .listener import Listener

        listener = Listener(config, clock)
        listening = asyncio.create_task(listener.run(), name="sentinelle-ari")
    if metrics is not None:
        metrics.bind_server(server)
        if listener is not None:
            metrics.bind_listener(listener)
        metrics.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    logs.event(log, "stopping: finishing in-flight checks")
    if workers is not None:
        await workers.stop()
    if listening is not None and listener is not None:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await listener.close()
    await server.stop()
    await asyncio.to_thread(checkpointer.stop)
    if metrics is not None:
        metrics.stop()
    logs.event(log, "stopped", checkpoints=checkpointer.runs,
               wal_truncations=checkpointer.truncations,
               checkpoint_errors=checkpointer.errors, **server.stats.decisions)



# -- server.workers > 1 ----------------------------------------------------------

class _PidFilter(logging.Filter):
    """Adds the process id to every structured line (decision lines included),
    so the log tells which of the `server.workers` processes answered."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and "pid" not in fields:
            fields["pid"] = os.getpid()
        return True


def _log_pid() -> None:
    for handler in logging.getLogger("sentinelle").handlers:
        if not any(isinstance(f, _PidFilter) for f in handler.filters):
            handler.addFilter(_PidFilter())


class Workers:
    """The N-1 child FastAGI processes of `serve`, supervised from the parent's loop."""

    def __init__(self, config: Config, at: datetime | None) -> None:
        self.config = config
        self.at = at
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess | None] = \
            [None] * (config.server.workers - 1)
        self.restarts = [0] * len(self.procs)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _spawn(self, slot: int) -> None:
        level = logging.getLevelName(logging.getLogger("sentinelle").getEffectiveLevel())
        proc = self.ctx.Process(target=worker_main, args=(self.config, self.at, str(level)),
                                name=f"sentinelle-worker-{slot + 1}", daemon=False)
        proc.start()
        self.procs[slot] = proc
        logs.event(log, "worker started", worker=slot + 1, worker_pid=proc.pid)

    def start(self) -> None:
        for slot in range(len(self.procs)):
            self._spawn(slot)
        self._task = asyncio.create_task(self._supervise(), name="sentinelle-workers")

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            for slot, proc in enumerate(self.procs):
                if self._stopping or proc is None or proc.is_alive():
                    continue
                proc.join(0)
                self.procs[slot] = None
                if self.restarts[slot] >= MAX_RESTARTS:
                    logs.event(log, "worker died too often: not restarted", logging.ERROR,
                               worker=slot + 1, worker_pid=proc.pid, exitcode=proc.exitcode,
                               restarts=self.restarts[slot])
                    continue
                self.restarts[slot] += 1
                logs.event(log, "worker died: restarting", logging.WARNING, worker=slot + 1,
                           worker_pid=proc.pid, exitcode=proc.exitcode,
                           restarts=self.restarts[slot])
                self._spawn(slot)

    async def stop(self) -> None:
        """SIGTERM to every child (each finishes its checks in flight), wait,
        then SIGKILL whatever is left."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        alive = [p for p in self.procs if p is not None and p.is_alive()]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in alive:
            await asyncio.to_thread(proc.join, WORKER_STOP_S)
            if proc.is_alive():
                logs.event(log, "worker did not stop: killed", logging.ERROR,
                           worker_pid=proc.pid)
                proc.kill()
                await asyncio.to_thread(proc.join, 5)
        logs.event(log, "workers stopped", workers=len(alive),
                   exitcodes=[p.exitcode for p in alive])


def worker_main(config: Config, at: datetime | None, level: str = "INFO") -> None:
    """A child of `serve` (multiprocessing 'spawn'): FastAGI only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    logs.setup(level)
    _log_pid()
    try:
        asyncio.run(_worker(config, at))
    except (StoreError, OSError) as exc:
        logs.event(log, "worker failed", logging.ERROR, error=str(exc))
        raise SystemExit(1) from None


async def _worker(config: Config, at: datetime | None) -> None:
    clock = frozen(at) if at else system_clock
    server = FastAgiServer(config, clock, wal_autocheckpoint=0, reuse_port=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The parent holds the other end of this pipe: EOF when it dies, however.
    parent = multiprocessing.parent_process()
    if parent is not None:
        loop.add_reader(parent.sentinel, stop.set)
    await server.start()
    await stop.wait()
    reason = "parent gone" if parent is not None and not parent.is_alive() else "SIGTERM"
    logs.event(log, "worker stopping: finishing in-flight checks", reason=reason)
    await server.stop()
    logs.event(log, "worker stopped", **server.stats.decisions)
