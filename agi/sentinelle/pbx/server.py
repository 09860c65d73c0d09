"""The FastAGI service: Asterisk asks, sentinelle answers with channel variables.

AGI result lines are read by `pbx.wire` (as panoramisk 1.4 reads them, checked
by a test against it), and the accept loop is ours: panoramisk 1.4's
`Application.handler` spins at 100% CPU when a client closes before sending
its headers (a TCP health check does exactly that), and has neither a header
deadline nor a size limit. Here every connection gets a header deadline, a
size cap, a per-request deadline and a connection cap, so one bad client
never slows the others.

A burst of a predictive dialer is normal traffic: every connection is
accepted and its headers read, and `max_connections` bounds the requests
being served at once; a request past it waits for a slot, first come first
served, within its own deadline (then its route answers SYS-TIMEOUT, a
verdict, without touching the store). Closing it instead would leave the
call with no verdict at all. Idle sockets never hold a slot; the hard cap is
theirs: past IDLE_CAP_FACTOR x `max_connections` connections still waiting
for their headers, the oldest is evicted, so idle sockets can never lock the
PBX out.

Store work normally runs right on the event loop with a zero busy timeout: a
check takes well under a millisecond, less than the hop to a thread and
back. If SQLite reports the store busy, nothing was written, and the work
moves to one worker thread (which shares the connection under a lock) where
it may wait for the lock: a store blocked on a lock delays only the checks,
never the event loop that accepts and times them out. Work still queued when
its deadline is near is dropped without touching the store (the route
answers SYS-TIMEOUT), and the lock wait of the others is bounded by their
deadline: an attempt is never recorded for a call that was answered BLOCK,
and a backlog built up behind a long lock does not outlive it.

What each request does is its route's (pbx/routes/); fail closed everywhere:
an error, a timeout or a store fault answers BLOCK (unless the campaign
opted for fail-open), and the dialplan hangs up on anything but an explicit
ALLOW.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from sentinelle import logs
from sentinelle.config import Config
from sentinelle.core.model import Decision
from sentinelle.pbx.agi import (
    MAX_LINE,
    NETWORK_SCRIPT,
    AgiChannel,
    AgiError,
    ascii_safe,
    read_headers,
)
from sentinelle.pbx.routes import ROUTES
from sentinelle.pbx.session import Session, Stats, StoreWork
from sentinelle.store import Backend, StoreBusy, StoreError, is_postgres
from sentinelle.store.handle import StoreHandle

log = logging.getLogger("sentinelle.fastagi")

T = TypeVar("T")

# The store worker gives up on work this close to its deadline, and bounds
# its wait for a lock by what is left: a check answered SYS-TIMEOUT must never
# record an attempt afterwards, and a backlog queued behind a long lock must
# not keep the worker busy once the lock is gone.
WORKER_MARGIN_S = 0.1

# Connections still waiting for their headers beyond this many times
# `max_connections` are idle-socket abuse: the oldest is evicted. A burst of
# real requests (headers sent at connect) stays far below it.
IDLE_CAP_FACTOR = 4

# The kernel's accept queue (capped by net.core.somaxconn): a burst larger
# than it waits for a SYN retransmit (1 s) instead of being accepted at once.
LISTEN_BACKLOG = 4096


class FastAgiServer:
    def __init__(self, config: Config, clock: Callable[[], datetime],
                 on_decision: Callable[[Decision, float], None] | None = None,
                 wal_autocheckpoint: int | None = None,
                 on_inflight: Callable[[int], None] | None = None) -> None:
        """`wal_autocheckpoint=0` when something else checkpoints the WAL
        (`sentinelle serve` runs a Checkpointer): no checkpoint in a check.
        `on_inflight` hears the number of connections being served each
        time it changes (the metrics, which may live in another worker)."""
        self.config = config
        self.clock = clock
        self.on_decision = on_decision
        self.on_inflight = on_inflight
        self.stats = Stats()
        self._networks = [ipaddress.ip_network(a, strict=False) for a in config.server.allow]
        # SQLite: one connection, one writer at a time, and checks fast enough
        # to run inline on the loop. PostgreSQL: network round trips and a
        # commit's WAL flush, never on the loop; several checks in flight on
        # pooled connections (the per-callee lock keeps R-30 exact), so their
        # commits share the flushes.
        self._shared_store = is_postgres(config.store)
        self._executor = ThreadPoolExecutor(
            max_workers=config.store.pool_size if self._shared_store else 1,
            thread_name_prefix="sentinelle-store")
        self._store = StoreHandle(config.store, wal_autocheckpoint=wal_autocheckpoint)
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[None]] = set()
        # Connections still waiting for their AGI headers, oldest first: at
        # the idle cap the oldest is evicted rather than the newcomer refused,
        # so idle sockets can never lock a real PBX request out.
        self._waiting: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # Requests being served (headers in): at most max_connections, the
        # others wait for a slot in arrival order (asyncio.Semaphore is FIFO).
        self._slots = asyncio.Semaphore(config.server.max_connections)
        self.queued_requests = 0  # requests that had to wait for a slot
        # The connection is used by one thread at a time: the store worker, or
        # the event loop for work taken inline (see run_store).
        self._conn_lock = threading.Lock()
        self._queued = 0  # store work handed to the worker and not finished yet
        self.inline_checks = 0
        self.worker_checks = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self, reuse_port: bool = False) -> tuple[str, int]:
        """`reuse_port`: several worker processes bind the same port and the
        kernel spreads the PBX's connections over them (SO_REUSEPORT)."""
        sc = self.config.server
        self._server = await asyncio.start_server(self._accept, sc.host, sc.port,
                                                  limit=MAX_LINE, backlog=LISTEN_BACKLOG,
                                                  reuse_port=reuse_port or None)
        host, port = self._server.sockets[0].getsockname()[:2]
        logs.event(log, "listening", host=host, port=port, store=self.config.store.where)
        return host, port

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM: stop accepting, let in-flight checks finish, then close."""
        if self._server is not None:
            self._server.close()
        if self._active:
            await asyncio.wait(set(self._active), timeout=grace_s)
        if self._server is not None:
            await self._server.wait_closed()
        await self._close_store()

    async def _close_store(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_locked)
        self._executor.shutdown(wait=True)

    def _close_locked(self) -> None:
        with self._conn_lock:
            self._store.close()

    # -- one connection ------------------------------------------------------

    def _allowed_peer(self, peer: str) -> bool:
        try:
            addr = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        if not self._networks:
            return addr.is_loopback
        return any(addr in net for net in self._networks)

    def _evict_idle(self) -> bool:
        """Close the oldest connection that has not sent its headers yet."""
        if not self._waiting:
            return False
        task = next(iter(self._waiting))
        self._waiting.pop(task).transport.abort()
        self.stats.evicted += 1
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        if self.on_inflight is not None:
            self.on_inflight(len(self._active))
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            if not self._allowed_peer(peer):
                self.stats.refused += 1
                logs.event(log, "connection refused: peer not in server.allow", logging.WARNING,
                           peer=peer)
                return
            if len(self._waiting) >= IDLE_CAP_FACTOR * self.config.server.max_connections:
                self._evict_idle()
            self.stats.connections += 1
            await self._serve(reader, writer, peer)
        except (ConnectionError, AgiError, asyncio.IncompleteReadError) as exc:
            logs.event(log, "connection dropped", logging.INFO, peer=peer, error=str(exc))
        except TimeoutError:
            logs.event(log, "connection dropped: the PBX did not read the answer in time",
                       logging.WARNING, peer=peer)
        except Exception:
            log.exception("unexpected error on FastAGI connection")
        finally:
            self._active.discard(task)
            if self.on_inflight is not None:
                self.on_inflight(len(self._active))
            self._waiting.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str, route: str | None = None) -> None:
        """One AGI request, handed to its route. `route` names it for a
        classic AGI on stdin/stdout, which has no FastAGI route header."""
        sc = self.config.server
        task = asyncio.current_task()
        if route is None and task is not None:
            self._waiting[task] = writer
        try:
            headers = await asyncio.wait_for(read_headers(reader), sc.header_timeout_s)
        except TimeoutError:
            self.stats.bad_headers += 1
            logs.event(log, "no AGI headers before the deadline", logging.WARNING, peer=peer)
            return
        finally:
            if task is not None:
                self._waiting.pop(task, None)
        if headers is None:
            return  # connect + close: a health check, nothing to say
        name = route or headers.get(NETWORK_SCRIPT, "").strip("/")
        handler = ROUTES.get(name)
        if handler is None:
            self.stats.bad_headers += 1
            logs.event(log, "unknown FastAGI route", logging.WARNING, peer=peer,
                       route=ascii_safe(name, 64))
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + sc.request_timeout_s
        session = Session(headers, AgiChannel(reader, writer), self.config, self.clock,
                          self.stats, self.run_store, self.on_decision, started, deadline)
        slot = await self._take_slot(deadline)
        try:
            await handler(session)  # without a slot its deadline is spent: SYS-TIMEOUT
        finally:
            if slot:
                self._slots.release()

    async def _take_slot(self, deadline: float) -> bool:
        """A slot among max_connections, waited for (in arrival order) until
        the request's deadline is at hand. False when none came in time: the
        route then finds its deadline spent and answers SYS-TIMEOUT."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        self.queued_requests += 1
        wait = deadline - asyncio.get_running_loop().time() - WORKER_MARGIN_S
        try:
            await asyncio.wait_for(self._slots.acquire(), max(wait, 0.0))
        except TimeoutError:
            return False
        return True

    # -- store work: inline when the store is free, else the worker ---------------

    async def run_store(self, work: StoreWork[T], deadline: float) -> T | None:
        """`work` on the store, by `deadline` (event loop time); None when the
        deadline came too close for the worker to start it."""
        loop = asyncio.get_running_loop()
        if deadline - loop.time() <= WORKER_MARGIN_S:
            return None  # spent (e.g. waiting for a slot): nothing may be written now
        if not self._shared_store and self._queued == 0 and self._store.is_open:
            done, result = self._run_inline(work)
            if done:
                return result
        until = time.monotonic() + (deadline - loop.time())
        self._queued += 1
        try:
            return await loop.run_in_executor(self._executor, self._run_in_worker, work, until)
        finally:
            self._queued -= 1

    def _run_inline(self, work: StoreWork[T]) -> tuple[bool, T | None]:
        """The fast path, on the event loop: when the worker has nothing queued
        and the store is open, the work runs right here with a zero busy
        timeout (a check takes well under a millisecond; the hop to the worker
        thread and back cost more than the check). If the store is locked, it
        gives up at once with nothing written (StoreBusy) and returns (False,
        None): the worker then waits for the lock, bounded by the request's
        deadline, so a lock never blocks the loop. Whether the store met a
        lock is read from the store itself (`busy_raised`), not from the
        exception reaching here: a route that turns StoreBusy into an answer
        ("not recorded") would otherwise have it sent without the wait."""
        if not self._conn_lock.acquire(blocking=False):
            return False, None
        try:
            store = self._store.peek(busy_timeout_ms=0)
            if store is None:
                return False, None
            busy_before = store.busy_raised
            try:
                result = work(store, None, False)
            except StoreBusy:
                return False, None
            finally:
                self._store.heal()
            if store.busy_raised != busy_before:
                return False, None
            self.inline_checks += 1
            return True, result
        finally:
            self._conn_lock.release()

    def _run_in_worker(self, work: StoreWork[T], deadline: float | None = None) -> T | None:
        if self._shared_store:  # a pool: each thread gets a connection of its own
            self.worker_checks += 1
            return self._run_locked(work, deadline)
        with self._conn_lock:
            self.worker_checks += 1
            return self._run_locked(work, deadline)

    def _run_locked(self, work: StoreWork[T], deadline: float | None = None) -> T | None:
        """Runs in the store thread: (re)open the store lazily so the service
        recovers by itself once a missing or broken store is fixed.

        Returns None, without touching the store, when the request's deadline
        (time.monotonic) is too close: the route answers SYS-TIMEOUT, and no
        attempt may be recorded for a call that was answered BLOCK."""
        wait_ms = self.config.store.busy_timeout_ms
        if deadline is not None:
            budget_ms = int((deadline - time.monotonic() - WORKER_MARGIN_S) * 1000)
            if budget_ms <= 0:
                return None
            wait_ms = min(budget_ms, wait_ms)
        store: Backend | None = None
        error = None
        try:
            store = self._store.get(wait_ms)
        except StoreError as exc:
            error = str(exc)
        try:
            return work(store, error, True)
        finally:
            self._store.heal()

