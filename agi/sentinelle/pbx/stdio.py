"""Classic AGI: Asterisk starts one process per call, `sentinelle-agi`, and
talks to it over stdin/stdout: `AGI(/path/sentinelle-agi,NUMBER,CAMPAIGN)`.

Every call pays for the process's start-up before a header is read, and that
start-up is post-dial delay. So this module is the console script itself
(not the click command line) and imports only what one check needs: no
click, no HTTP, ARI or metrics code, no FastAGI server (its thread pool and
accept loop serve many calls, here there is one), and the store without
sqlite-utils (only a schema upgrade needs it). The holiday calendars come
from a cache file beside the store (see `holiday_cache`), so `holidays` is
not imported either. `tests/test_classic_agi.py` keeps it that way.

The same `check` route answers as on the FastAGI service, with its deadline
and fail-closed behaviour; decisions are logged with `source=agi`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import IO, TypeVar

from sentinelle import logs
from sentinelle.config import Config, ConfigError, load_config
from sentinelle.pbx import holiday_cache
from sentinelle.pbx.agi import AgiChannel, AgiError, read_headers, stdio_streams
from sentinelle.pbx.routes import check
from sentinelle.pbx.session import Session, Stats, StoreWork
from sentinelle.store import StoreError
from sentinelle.store.handle import StoreHandle

log = logging.getLogger("sentinelle.agi")

T = TypeVar("T")

EXIT_OK, EXIT_USAGE = 0, 2
# As on the FastAGI worker: no store work starts this close to the deadline
# (the call is then answered SYS-TIMEOUT and nothing may be recorded for it).
MARGIN_S = 0.1


class _OneStore:
    """The store for this one call: opened when the route needs it, with a
    lock wait bounded by what is left of the request's deadline."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.handle = StoreHandle(config.store)

    async def __call__(self, work: StoreWork[T], deadline: float) -> T | None:
        left_ms = int((deadline - asyncio.get_running_loop().time() - MARGIN_S) * 1000)
        if left_ms <= 0:
            return None
        error = None
        store = None
        try:
            store = self.handle.get(min(left_ms, self.config.store.busy_timeout_ms))
        except StoreError as exc:
            error = str(exc)
        try:
            return work(store, error, True)
        finally:
            self.handle.heal()


async def serve_stdio(config: Config, clock: Callable[[], datetime],
                      stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> Stats:
    """One classic AGI request on stdin/stdout (or the given streams)."""
    reader, writer = await stdio_streams(stdin, stdout)
    stats = Stats()
    store = _OneStore(config)
    try:
        try:
            headers = await asyncio.wait_for(read_headers(reader), config.server.header_timeout_s)
        except TimeoutError:
            stats.bad_headers += 1
            logs.event(log, "no AGI headers before the deadline", logging.WARNING)
            return stats
        if headers is None:
            return stats
        stats.connections += 1
        started = asyncio.get_running_loop().time()
        await check.route(Session(headers, AgiChannel(reader, writer), config, clock, stats, store,
                                  None, started, started + config.server.request_timeout_s,
                                  source="agi"))
    except (ConnectionError, AgiError, asyncio.IncompleteReadError) as exc:
        logs.event(log, "AGI session dropped", logging.INFO, error=str(exc))
    finally:
        store.handle.close()
        writer.close()
    return stats


def run(config: Config, clock: Callable[[], datetime]) -> int:
    """The check for one call, with the holiday calendars from their cache;
    an exit code. Shared by `sentinelle-agi` and `sentinelle agi`."""
    holiday_cache.use(config.store.path, clock())
    try:
        asyncio.run(serve_stdio(config, clock))
    except OSError as exc:  # stdin/stdout unusable (closed, a directory...)
        print(f"error: classic AGI cannot use stdin/stdout: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def main() -> int:
    """Console script `sentinelle-agi`. argv is the call's (NUMBER CAMPAIGN,
    repeated in the agi_arg_N headers, which are what counts) so it carries
    no option: the config comes from $SENTINELLE_CONFIG (set it in
    Asterisk's environment), else ./sentinelle.toml, else the defaults."""
    from sentinelle.core.clock import system_clock

    logs.setup("WARNING")
    try:
        config = load_config(None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(config, system_clock)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
