"""The classic per-call AGI's work: one check on stdin/stdout, without
asyncio or panoramisk. `stdio` is the console script that loads it.

Every call pays for the process's start-up before a header is read, and that
start-up is post-dial delay. So this path imports only what one check needs:
no click, no HTTP, ARI or metrics code, no FastAGI server, no asyncio (an
event loop for one dialogue of a few lines cost ~50 ms of imports per call)
and no panoramisk: the dialogue is blocking reads and writes, each bounded
by the request's deadline with `select`. The store comes without
sqlite-utils (only a schema upgrade needs it), and the holiday calendars
and the validity of +33 numbers from a cache file beside the store (see
`startup_cache`), so neither `holidays` nor `phonenumbers` is imported;
the outcome and disposition routes do without the rules and the guard.
`tests/test_classic_agi.py` keeps it that way, and checks that this path
and the FastAGI `check` route give the same variables and the same store
records for the same requests.

What the FastAGI route does, this does too, with the same functions: the
request from the headers and the variables from the decision (`verdict`),
the result lines (`wire`), `guard.check` on the store with a lock wait
bounded by the deadline, SYS-TIMEOUT when too little time is left,
fail-closed on a missing or locked store. Decisions are logged with
`source=agi`.

The shipped subroutines call `${SENTINELLE_AGI}/check`, `/disposition` and
`/outcome`: with SENTINELLE_AGI set to a directory holding the three names
(links to `sentinelle-agi`), a PBX without the service runs them all, so
refusals keyed by the agent and call outcomes are recorded there too, by the
same functions as the FastAGI routes' (`dispositions`, `outcomes`). The
route is the last part of the script's path (`agi_request`); any other name,
`sentinelle-agi` itself included, is a check.

Once the answer is written, the dialogue is closed before the store is: a
WAL store's last connection checkpoints as it closes, and Asterisk, which
waits for the end of the script's output before the dialplan goes on, need
not wait for that.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING

from sentinelle import logs
from sentinelle.config import Config, ConfigError, default_config, parse_config, parse_store, read_config
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx import startup_cache, wire
from sentinelle.store import Backend, StoreError
from sentinelle.store.handle import StoreHandle

if TYPE_CHECKING:  # the check's code is loaded by the check alone (see `_check`)
    from sentinelle.core.model import Decision
    from sentinelle.guard import Request

log = logging.getLogger("sentinelle.agi")

SOURCE = "agi"  # what a refusal keyed through this path is recorded with

EXIT_OK, EXIT_USAGE = 0, 2
# As on the FastAGI worker: no store work starts this close to the deadline
# (the call is then answered SYS-TIMEOUT and nothing may be recorded for it).
MARGIN_S = 0.1
DEADLINE_REACHED = "request deadline reached"
# As on the FastAGI service (session.ANSWER_MIN_S): once decided, writing
# the answer back gets at least this long.
ANSWER_MIN_S = 1.0


@dataclass
class Stats:
    """What happened in this process's one session (tests read it)."""

    connections: int = 0
    bad_headers: int = 0
    timeouts: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {"allow": 0, "block": 0})


class TimedOut(Exception):
    """Nothing to read before the deadline."""


class StdioChannel:
    """The AGI dialogue on two file descriptors, with blocking I/O.

    A pipe (what Asterisk gives) is waited on with `select` up to a
    deadline; a regular file or /dev/null (`sentinelle agi < session.txt >
    answers.txt` replays a session) is always ready and is just read."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self._pollable = _pollable(fd_in)
        self._buf = b""
        self._eof = False

    @classmethod
    def open(cls, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> StdioChannel:
        """The process's stdin/stdout (or the given streams). OSError when one
        is closed or unusable."""
        fds = []
        for name, given, std in (("stdin", stdin, sys.stdin), ("stdout", stdout, sys.stdout)):
            stream = given if given is not None else (std.buffer if std is not None else None)
            if stream is None:
                raise OSError(f"{name} is closed")
            fd = stream.fileno()
            os.fstat(fd)  # EBADF for a descriptor closed under Python's feet
            fds.append(fd)
        return cls(fds[0], fds[1])

    def readline(self, deadline: float) -> bytes:
        """One line with its end, b"" at end of input, TimedOut when none
        came before `deadline` (time.monotonic()), AgiError when it is longer
        than wire.MAX_LINE."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line, self._buf = self._buf[:end + 1], self._buf[end + 1:]
                if len(line) > wire.MAX_LINE:
                    raise wire.AgiError("AGI line too long")
                return line
            if len(self._buf) > wire.MAX_LINE:
                raise wire.AgiError("AGI line too long")
            if self._eof:
                line, self._buf = self._buf, b""
                return line
            if self._pollable:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd_in], [], [], left)[0]:
                    raise TimedOut
            chunk = os.read(self.fd_in, 65536)
            if chunk:
                self._buf += chunk
            else:
                self._eof = True

    def finish(self) -> None:
        """End the dialogue: Asterisk sees the end of our output and the
        dialplan goes on, while this process tidies up. The descriptor is
        pointed at /dev/null rather than closed, so that nothing at exit
        writes to or closes a descriptor that is gone; a regular file
        (a replayed session) is left alone. A SIGHUP from Asterisk (it may
        send one once the script's output ended) must not cut the tidying
        short."""
        if not stat.S_ISFIFO(os.fstat(self.fd_out).st_mode):
            return
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self.fd_out)
        finally:
            os.close(null)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd_out, view):]

    def read_headers(self, deadline: float) -> dict[str, str] | None:
        """The AGI environment up to its blank line, as `agi.read_headers`
        reads it on a socket: None on an immediate end of input, AgiError on
        oversize or an end mid-way."""
        headers: dict[str, str] = {}
        total = 0
        for _ in range(wire.MAX_HEADER_LINES + 1):
            line = self.readline(deadline)
            if not line:
                if not headers and total == 0:
                    return None
                raise wire.AgiError("connection closed inside the AGI headers")
            total += len(line)
            if total > wire.MAX_HEADER_BYTES:
                raise wire.AgiError("AGI headers too large")
            if not wire.header_line(line, headers):
                return headers
        raise wire.AgiError("too many AGI header lines")

    def command(self, cmd: str, deadline: float) -> dict[str, object]:
        """Send one command and read its result (as `agi.AgiChannel.command`).
        A result not in before `deadline` is a lost dialogue: AgiError."""
        name = wire.command_name(cmd)
        self.write(wire.command_line(cmd))
        try:
            for _ in range(wire.MAX_RESULT_LINES):
                text = self._line(name, deadline)
                if text.startswith(wire.USAGE_START):  # skip the multi-line usage text
                    for _ in range(wire.MAX_RESULT_LINES):
                        if self._line(name, deadline).startswith(wire.USAGE_END):
                            break
                    raise wire.AgiError(f"AGI usage error for {name}")
                result = wire.parse_result(text, name)
                if result is not None:
                    return result
        except TimedOut:
            raise wire.AgiError(f"no answer to {name} before the deadline") from None
        raise wire.AgiError(f"too many intermediate AGI results for {name}")

    def _line(self, name: str, deadline: float) -> str:
        line = self.readline(deadline)
        if not line:
            raise wire.AgiError(f"connection closed waiting for the result of {name}")
        return line.decode("utf-8", errors="replace").rstrip("\r\n")


def _pollable(fd: int) -> bool:
    """Whether `select` can wait on `fd`: pipes, sockets and terminals. A
    regular file or /dev/null is always ready (and holds all it ever will)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


def decide(config: Config, handle: StoreHandle, request: Request, deadline: float) -> Decision:
    """`guard.check` on the store, opened for this one call with a lock wait
    bounded by what is left of the deadline; SYS-TIMEOUT (nothing recorded)
    when too little is left to start. A store that cannot be opened is the
    guard's SYS-STORE block, as on the FastAGI service."""
    from sentinelle.core.rules import SYS_TIMEOUT
    from sentinelle.guard import check, fault

    store, error = _store(config, handle, deadline)
    if error is DEADLINE_REACHED:  # the constant itself, never a store error that reads alike
        return fault(config, request, SYS_TIMEOUT, "check exceeded server.request_timeout_s",
                     logging.WARNING)
    return check(config, store, request, store_error=error, busy_raises=False)


def route_name(headers: dict[str, str]) -> str:
    """The route asked for: the last part of the script's path."""
    return headers.get(wire.REQUEST, "").rstrip("/").rpartition("/")[2].strip()


def session(config: Config, clock: Callable[[], datetime], channel: StdioChannel,
            stats: Stats) -> None:
    """One dialogue: headers, then the route the script's name asks for."""
    started = time.monotonic()
    try:
        headers = channel.read_headers(started + config.server.header_timeout_s)
    except TimedOut:
        stats.bad_headers += 1
        logs.event(log, "no AGI headers before the deadline", logging.WARNING)
        return
    if headers is None:
        return
    stats.connections += 1
    started = time.monotonic()
    deadline = started + config.server.request_timeout_s
    # Closed after the answer and the end of the dialogue, not before:
    # closing the last connection to a WAL store checkpoints it.
    handle = StoreHandle(config.store)
    try:
        name = route_name(headers)
        if name == agivars.ROUTE_DISPOSITION:
            values = _disposition(config, clock, channel, headers, handle, deadline)
        elif name == agivars.ROUTE_OUTCOME:
            values = _outcome(config, clock, headers, handle, deadline)
        else:
            values = _check(config, clock, channel, headers, handle, deadline, stats)
        answer_by = time.monotonic() + max(ANSWER_MIN_S, deadline - time.monotonic())
        for var, value in values:
            channel.command(wire.set_variable(var, value), answer_by)
        channel.finish()
    finally:
        handle.close()


def _check(config: Config, clock: Callable[[], datetime], channel: StdioChannel,
           headers: dict[str, str], handle: StoreHandle, deadline: float,
           stats: Stats) -> list[tuple[str, str]]:
    """AGI(.../check,NUMBER,CAMPAIGN). The rules and the guard are imported
    here: the hangup handler's outcome process, one per call too, has no
    use for them (~15 ms of its start-up)."""
    from sentinelle.pbx.verdict import answer_values, build_request

    campaign = headers.get(wire.ARG_2, "").strip()
    if not campaign:
        campaign = wire.variable_value(channel.command(f"GET VARIABLE {agivars.CAMPAIGN}",
                                                       deadline))
    request = build_request(headers, campaign, clock(), "agi")
    decision = decide(config, handle, request, deadline)
    stats.decisions[decision.verdict.value] += 1
    return answer_values(decision)


def _store(config: Config, handle: StoreHandle,
           deadline: float) -> tuple[Backend | None, str | None]:
    """(store, None), or (None, why) as the FastAGI routes get it: the lock
    wait bounded by what is left of the deadline, DEADLINE_REACHED when too
    little is left to start."""
    left_ms = int((deadline - time.monotonic() - MARGIN_S) * 1000)
    if left_ms <= 0:
        return None, DEADLINE_REACHED
    try:
        return handle.get(min(left_ms, config.store.busy_timeout_ms)), None
    except StoreError as exc:
        return None, str(exc)


def _disposition(config: Config, clock: Callable[[], datetime], channel: StdioChannel,
                 headers: dict[str, str], handle: StoreHandle,
                 deadline: float) -> list[tuple[str, str]]:
    """AGI(.../disposition,CODE,ATTEMPT): as the FastAGI route. (Imported
    here: a check, the call's post-dial delay, does not load it.)"""
    from sentinelle.pbx import dispositions

    code = headers.get(wire.ARG_1, "").strip()
    attempt = headers.get(wire.ARG_2, "").strip()
    if not attempt:
        attempt = wire.variable_value(channel.command(f"GET VARIABLE {agivars.ATTEMPT}",
                                                      deadline)) or ""
    store, error = _store(config, handle, deadline)
    status, reason = dispositions.record(config, code, attempt, clock(), store, error,
                                         source=SOURCE)
    logs.event(log, "disposition", logging.INFO if status == agivars.DISPOSITION_OK
               else logging.WARNING, code=wire.ascii_safe(code, 32), attempt=attempt,
               status=status, reason=reason, channel=headers.get(wire.CHANNEL, ""))
    return dispositions.answer_values(status, reason)


def _outcome(config: Config, clock: Callable[[], datetime], headers: dict[str, str],
             handle: StoreHandle, deadline: float) -> list[tuple[str, str]]:
    """AGI(.../outcome,ATTEMPT,key=value...) from the hangup handler: as the
    FastAGI route."""
    from sentinelle.pbx import outcomes

    attempt, fields = outcomes.arguments(headers)
    store, error = _store(config, handle, deadline)
    status, reason = outcomes.record(attempt, fields, clock(), store, error)
    if status == agivars.OUTCOME_ERROR:
        logs.event(log, "outcome not recorded", logging.WARNING, attempt=attempt, reason=reason,
                   channel=headers.get(wire.CHANNEL, ""))
    return outcomes.answer_values(status, reason)


def run(config: Config, clock: Callable[[], datetime], stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None, stats: Stats | None = None) -> int:
    """The check for one call, with the holiday calendars and the number
    table from their cache; an exit code. For `sentinelle agi`, whose
    config is read before it starts."""
    startup_cache.use(config.store.path, clock())
    return _one_call(config, clock, stdin, stdout, stats)


def _one_call(config: Config, clock: Callable[[], datetime], stdin: IO[bytes] | None = None,
              stdout: IO[bytes] | None = None, stats: Stats | None = None) -> int:
    try:
        channel = StdioChannel.open(stdin, stdout)
    except OSError as exc:  # stdin/stdout unusable (closed, a directory...)
        print(f"error: classic AGI cannot use stdin/stdout: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        session(config, clock, channel, stats or Stats())
    except (OSError, wire.AgiError) as exc:
        # No verdict reached the channel: the dialplan fails closed. WARNING,
        # so that Asterisk's log (which shows an AGI's stderr) says why.
        logs.event(log, "AGI session dropped", logging.WARNING, error=str(exc))
    return EXIT_OK


def main(clock: Callable[[], datetime] | None = None) -> int:
    """`stdio.main`'s work: logging, the config from $SENTINELLE_CONFIG
    (else ./sentinelle.toml, else the defaults), then the check. `clock`
    is the system's unless a benchmark freezes it."""
    from sentinelle.core.clock import system_clock

    logs.setup("WARNING")
    clock = clock or system_clock
    try:
        found = read_config(None)
        # The cache first: reading the campaigns' caller IDs asks for the
        # validity of +33 numbers, which it holds.
        store = parse_store(*found[:2]) if found is not None else default_config().store
        startup_cache.use(store.path, clock())
        config = parse_config(*found) if found is not None else default_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _one_call(config, clock)
