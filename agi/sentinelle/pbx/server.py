"""The FastAGI service: Asterisk asks, sentinelle answers with channel variables.

panoramisk parses AGI results, but the accept loop is ours: panoramisk 1.4's
`Application.handler` spins at 100% CPU when a client closes before sending
its headers (a TCP health check does exactly that), and has neither a header
deadline nor a size limit. Here every connection gets a header deadline, a
size cap, a per-request deadline and a connection cap, so one bad client
never slows the others; at the cap, the oldest connection that has not sent
its headers yet is evicted, so idle sockets can never lock the PBX out.

A check normally runs right on the event loop with a zero busy timeout: it
takes well under a millisecond, less than the hop to a thread and back. If
SQLite reports the store busy, nothing was written, and the check moves to
one worker thread (which shares the connection under a lock) where it may
wait for the lock: a store blocked on a lock delays only the checks, never
the event loop that accepts and times them out. A check still queued when its deadline is near is
answered SYS-TIMEOUT without touching the store, and the lock wait of the
others is bounded by their deadline: an attempt is never recorded for a call
that was answered BLOCK, and a backlog built up behind a long lock does not
outlive it.

Fail closed everywhere: an error, a timeout or a store fault answers BLOCK
(unless the campaign opted for fail-open), and the dialplan hangs up on
anything but an explicit ALLOW.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from panoramisk.utils import parse_agi_result

from sentinelle import logs
from sentinelle.config import Config
from sentinelle.core.model import MASKED_CALLER_IDS, Decision
from sentinelle.core.rules import SYS_TIMEOUT
from sentinelle.guard import Request, check, fault
from sentinelle.pbx import channelvars as agivars
from sentinelle.store import Store, StoreBusy, StoreError
from sentinelle.store.handle import StoreHandle

log = logging.getLogger("sentinelle.fastagi")

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINES = 128
MAX_LINE = 4096
MAX_RESULT_LINES = 64  # "100 Trying" and "520-" usage lines before a final result
REASON_MAX = 160
# The store worker gives up on a check this close to its deadline, and bounds
# its wait for a lock by what is left: a check answered SYS-TIMEOUT must never
# record an attempt afterwards, and a backlog queued behind a long lock must
# not keep the worker busy once the lock is gone.
WORKER_MARGIN_S = 0.1
# Once the decision is taken, writing the verdict back gets at least this long
# (a decision taken just before the deadline still reaches the dialplan).
ANSWER_MIN_S = 1.0
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_RESULT = re.compile(r"^[0-9]{3}(?: |$)")  # "200 result=1", "511 ...", "100 Trying"
# agi_callingpres: bits 0x60 are the presentation indicator (0x20 prohibited,
# 0x40 unavailable); either way the callee sees no number.
_PRES_MASK = 0x60


class AgiError(Exception):
    """The peer broke the AGI protocol; the connection is dropped."""


def ascii_safe(value: str, limit: int = REASON_MAX) -> str:
    """Make a value safe inside `SET VARIABLE name "value"`: ASCII, no
    newline (a second AGI command), no quote or backslash (a broken one)."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub(" ", text).replace('"', "'").replace("\\", "/")
    return text[:limit]


def is_masked(headers: dict[str, str]) -> bool:
    pres = headers.get("agi_callingpres", "0").strip()
    try:
        masked = (int(pres) & _PRES_MASK) != 0
    except ValueError:
        masked = pres.lower().startswith(("prohib", "unavail"))
    callerid = headers.get("agi_callerid", "").strip().lower()
    return masked or not callerid or callerid in MASKED_CALLER_IDS


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0
    bad_headers: int = 0
    timeouts: int = 0
    evicted: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {"allow": 0, "block": 0})


class FastAgiServer:
    def __init__(self, config: Config, clock: Callable[[], datetime],
                 on_decision: Callable[[Decision, float], None] | None = None,
                 wal_autocheckpoint: int | None = None) -> None:
        """`wal_autocheckpoint=0` when something else checkpoints the WAL
        (`sentinelle serve` runs a Checkpointer): no checkpoint in a check."""
        self.config = config
        self.clock = clock
        self.on_decision = on_decision
        self.stats = Stats()
        self._networks = [ipaddress.ip_network(a, strict=False) for a in config.server.allow]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinelle-store")
        self._store = StoreHandle(config.store, wal_autocheckpoint=wal_autocheckpoint)
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[None]] = set()
        # Connections still waiting for their AGI headers, oldest first: at
        # the connection cap the oldest is evicted rather than the newcomer
        # refused, so idle sockets can never lock a real PBX request out.
        self._waiting: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # The connection is used by one thread at a time: the store worker, or
        # the event loop for a check taken inline (see _decide).
        self._conn_lock = threading.Lock()
        self._queued = 0  # checks handed to the worker and not finished yet
        self.inline_checks = 0
        self.worker_checks = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        sc = self.config.server
        self._server = await asyncio.start_server(self._accept, sc.host, sc.port,
                                                  limit=MAX_LINE, backlog=512)
        host, port = self._server.sockets[0].getsockname()[:2]
        logs.event(log, "listening", host=host, port=port, store=self.config.store.path)
        return host, port

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM: stop accepting, let in-flight checks finish, then close."""
        if self._server is not None:
            self._server.close()
        if self._active:
            await asyncio.wait(set(self._active), timeout=grace_s)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
        self._executor.shutdown(wait=True)

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
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            if not self._allowed_peer(peer):
                self.stats.refused += 1
                logs.event(log, "connection refused: peer not in server.allow", logging.WARNING,
                           peer=peer)
                return
            if len(self._active) > self.config.server.max_connections and not self._evict_idle():
                self.stats.refused += 1
                logs.event(log, "connection refused: too many connections", logging.WARNING,
                           peer=peer, active=len(self._active))
                return
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
            self._waiting.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str, network: bool = True) -> None:
        """One AGI request; `network=False` for a classic AGI on stdin/stdout,
        which has no FastAGI route header."""
        sc = self.config.server
        task = asyncio.current_task()
        if network and task is not None:
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
        script = headers.get("agi_network_script", "").strip("/")
        if network and script != agivars.ROUTE_CHECK:
            self.stats.bad_headers += 1
            logs.event(log, "unknown FastAGI route", logging.WARNING, peer=peer,
                       route=ascii_safe(script, 64))
            return
        agi = AgiChannel(reader, writer)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + sc.request_timeout_s
        req: Request | None = None
        try:
            req = await self._read_request(agi, headers, deadline)
            decision = await asyncio.wait_for(
                self._decide(req, time.monotonic() + deadline - loop.time()),
                deadline - loop.time())
        except TimeoutError:
            if agi.pending or req is None:  # the PBX never answered us: the dialogue is lost
                self.stats.timeouts += 1
                raise AgiError(f"no answer to {agi.pending} before the deadline") from None
            decision = None
        if decision is None:  # the deadline passed, here or in the store worker
            self.stats.timeouts += 1
            decision = fault(self.config, req, SYS_TIMEOUT,
                             "check exceeded server.request_timeout_s", logging.WARNING)
        elapsed = loop.time() - started
        self.stats.decisions[decision.verdict.value] += 1
        if self.on_decision:
            self.on_decision(decision, elapsed)
        remaining = max(ANSWER_MIN_S, deadline - loop.time())
        await asyncio.wait_for(self._answer(agi, decision), remaining)

    async def _read_request(self, agi: AgiChannel, headers: dict[str, str],
                            deadline: float) -> Request:
        """The check's Request, built here only: the decision and a timeout
        answer for the same call must agree on its campaign (a fail_open one
        named by the channel variable included)."""
        campaign = headers.get("agi_arg_2", "").strip()
        if not campaign:
            loop = asyncio.get_running_loop()
            campaign = await asyncio.wait_for(agi.get_variable(agivars.CAMPAIGN),
                                              deadline - loop.time())
        number = headers.get("agi_arg_1", "").strip() or headers.get("agi_extension", "")
        masked = is_masked(headers)
        return Request(
            dialled=number, at=self.clock(), campaign=campaign or None,
            caller_id=None if masked else headers.get("agi_callerid", "").strip(),
            masked=masked, record=True, source="agi",
            context=(("channel", headers.get("agi_channel", "")),
                     ("uniqueid", headers.get("agi_uniqueid", ""))),
        )

    async def _decide(self, req: Request, deadline: float) -> Decision | None:
        if self._queued == 0 and self._store.is_open:
            decision = self._check_inline(req)
            if decision is not None:
                return decision
        loop = asyncio.get_running_loop()
        self._queued += 1
        try:
            return await loop.run_in_executor(self._executor, self._check_in_worker, req, deadline)
        finally:
            self._queued -= 1

    def _check_inline(self, req: Request) -> Decision | None:
        """The fast path, on the event loop: when the worker has nothing queued
        and the store is open, the check runs right here with a zero busy
        timeout (a check takes well under a millisecond; the hop to the worker
        thread and back cost more than the check). If the store is locked, it
        gives up at once with nothing written (StoreBusy) and returns None: the
        worker then waits for the lock, bounded by the request's deadline, so
        a lock never blocks the loop."""
        if not self._conn_lock.acquire(blocking=False):
            return None
        try:
            store = self._store.peek(busy_timeout_ms=0)
            if store is None:
                return None
            try:
                decision = check(self.config, store, req, busy_raises=True)
            except StoreBusy:
                return None
            finally:
                self._store.heal()
            self.inline_checks += 1
            return decision
        finally:
            self._conn_lock.release()

    def _check_in_worker(self, req: Request, deadline: float | None = None) -> Decision | None:
        with self._conn_lock:
            self.worker_checks += 1
            return self._check_locked(req, deadline)

    def _check_locked(self, req: Request, deadline: float | None = None) -> Decision | None:
        """Runs in the store thread: (re)open the store lazily so the service
        recovers by itself once a missing or broken store is fixed.

        Returns None, without touching the store, when the request's deadline
        (time.monotonic) is too close: the caller answers SYS-TIMEOUT, and no
        attempt may be recorded for a call that was answered BLOCK."""
        wait_ms = self.config.store.busy_timeout_ms
        if deadline is not None:
            budget_ms = int((deadline - time.monotonic() - WORKER_MARGIN_S) * 1000)
            if budget_ms <= 0:
                return None
            wait_ms = min(budget_ms, wait_ms)
        store: Store | None = None
        error = None
        try:
            store = self._store.get(wait_ms)
        except StoreError as exc:
            error = str(exc)
        try:
            return check(self.config, store, req, store_error=error)
        finally:
            self._store.heal()

    def _close_store(self) -> None:
        with self._conn_lock:
            self._store.close()

    async def _answer(self, agi: AgiChannel, d: Decision) -> None:
        """VERDICT goes last: a connection cut half-way never leaves an ALLOW
        behind without the rest. The dialplan clears every SENTINELLE_*
        variable before the AGI, so only non-empty values are sent: one round
        trip per value instead of five per check."""
        for name, value in answer_values(d):
            await agi.set_variable(name, value)


def answer_values(d: Decision) -> list[tuple[str, str]]:
    """The SET VARIABLEs for a decision, already made safe: the non-empty
    ones (the dialplan cleared them all), then VERDICT, always, last."""
    reason = d.reasons[0] if d.reasons else (d.notes[0] if d.notes else "")
    out = []
    for name, value in ((agivars.RULES, ",".join(d.rules)), (agivars.REASON, reason),
                        (agivars.RETRY_AT, d.retry_at.isoformat() if d.retry_at else ""),
                        (agivars.ATTEMPT, str(d.attempt_id or ""))):
        safe = ascii_safe(value)
        if safe.strip():
            out.append((name, safe))
    out.append((agivars.VERDICT, agivars.ALLOW if d.allowed else agivars.BLOCK))
    return out


async def read_headers(reader: asyncio.StreamReader) -> dict[str, str] | None:
    """AGI environment: `agi_key: value` lines up to a blank line. Returns
    None on an immediate close; raises AgiError on oversize or a close mid-way."""
    headers: dict[str, str] = {}
    total = 0
    for _ in range(MAX_HEADER_LINES + 1):
        try:
            line = await reader.readline()
        except ValueError as exc:  # line longer than the stream limit
            raise AgiError(f"header line too long: {exc}") from None
        if not line:
            if not headers and total == 0:
                return None
            raise AgiError("connection closed inside the AGI headers")
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise AgiError("AGI headers too large")
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            return headers
        key, sep, value = text.partition(":")
        if sep and key.startswith("agi_"):
            headers[key.strip()] = value.strip()
    raise AgiError("too many AGI header lines")


class AgiChannel:
    """AGI commands on one connection, results parsed by panoramisk."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: str | None = None  # the command whose result is awaited

    async def _line(self, name: str) -> str:
        try:
            line = await self.reader.readline()
        except ValueError:  # longer than the stream limit
            raise AgiError(f"AGI result line too long for {name}") from None
        if not line:
            raise AgiError(f"connection closed waiting for the result of {name}")
        return line.decode("utf-8", errors="replace").rstrip("\r\n")

    async def command(self, cmd: str) -> dict[str, object]:
        if "\n" in cmd or "\r" in cmd:
            raise AgiError("refusing to send a command containing a newline")
        name = " ".join(cmd.split()[:2])
        self.pending = name
        self.writer.write(cmd.encode("ascii", "replace") + b"\n")
        await self.writer.drain()
        result = await self._result(name)
        self.pending = None
        return result

    async def _result(self, name: str) -> dict[str, object]:
        for _ in range(MAX_RESULT_LINES):
            text = await self._line(name)
            if text.startswith("520-"):  # usage error: skip the multi-line usage text
                for _ in range(MAX_RESULT_LINES):
                    if (await self._line(name)).startswith("520 "):
                        break
                raise AgiError(f"AGI usage error for {name}")
            if text != "HANGUP" and not _RESULT.match(text):
                raise AgiError(f"unparsable AGI result {text[:80]!r}")
            try:
                result = parse_agi_result(text)
            except (ValueError, TypeError):
                raise AgiError(f"unparsable AGI result {text[:80]!r}") from None
            if result.get("status_code") == 100:
                continue
            if "error" in result:
                raise AgiError(f"{result['error']} for {name}: {text[:80]!r}")
            return result
        raise AgiError(f"too many intermediate AGI results for {name}")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f'SET VARIABLE {name} "{ascii_safe(value)}"')

    async def get_variable(self, name: str) -> str:
        result = await self.command(f"GET VARIABLE {name}")
        code, data = result.get("result", ("0", ""))  # type: ignore[misc]
        return ascii_safe(str(data), 64).strip() if code == "1" else ""


async def serve_stdio(config: Config, clock: Callable[[], datetime]) -> Stats:
    """Classic AGI: Asterisk spawns one process per call and talks over
    stdin/stdout. Kept for sites that cannot run the service, and as the
    baseline the FastAGI benchmark compares against."""
    import sys

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    server = FastAgiServer(config, clock)
    try:
        await server._serve(reader, writer, "stdio", network=False)
    except (ConnectionError, AgiError, asyncio.IncompleteReadError) as exc:
        logs.event(log, "AGI session dropped", logging.INFO, error=str(exc))
    finally:
        await loop.run_in_executor(server._executor, server._close_store)
        server._executor.shutdown(wait=True)
        transport.close()
    return server.stats
