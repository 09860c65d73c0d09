"""One AGI request as a route sees it: the headers, the channel back to
Asterisk, and the server's services, every one bounded by the request's
deadline.

Routes never see the accept loop, the store thread or the clock arithmetic:
the server owns the deadlines (one per request, set when the headers are
in) so that no route can forget one, and routes stay small enough to be one
module each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sentinelle.config import Config
from sentinelle.core.model import Decision
from sentinelle.pbx.agi import AgiChannel, AgiError
from sentinelle.store import Backend

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# Once the decision is taken, writing it back gets at least this long (a
# decision taken just before the deadline still reaches the dialplan).
ANSWER_MIN_S = 1.0


class StoreWork(Protocol[T_co]):
    """Work on the store for a route. `store` is None when the store cannot
    be opened, `error` then says why (the route fails closed with it).
    `may_wait` is False on the event loop, where the store never waits for
    a lock (busy timeout 0): work that met a lock there, whether it raised
    StoreBusy or answered with it, is run again in the store thread, where
    it may wait; it must have written nothing (a transaction that met the
    lock wrote nothing)."""

    def __call__(self, store: Backend | None, error: str | None, may_wait: bool) -> T_co: ...


class StoreRunner(Protocol):
    async def __call__(self, work: StoreWork[T], deadline: float) -> T | None: ...


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0
    bad_headers: int = 0
    timeouts: int = 0
    evicted: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {"allow": 0, "block": 0})


@dataclass(eq=False)
class Session:
    headers: Mapping[str, str]
    agi: AgiChannel
    config: Config
    clock: Callable[[], datetime]
    stats: Stats
    store_runner: StoreRunner
    on_decision: Callable[[Decision, float], None] | None
    started: float  # event loop time the headers were in
    deadline: float  # event loop time by which the route must have decided
    # Logged with each decision: "fastagi" (the service) or "agi" (a classic
    # per-call AGI process), so an auditor can tell which path decided.
    source: str = "fastagi"

    async def bounded(self, aw: Awaitable[T]) -> T | None:
        """`aw` until the request's deadline; None once it passed. An AGI
        command still waiting for its result then is a lost dialogue (its
        answer would be read as the next one's): AgiError, no verdict, and
        the dialplan fails closed."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(aw, self.deadline - loop.time())
        except TimeoutError:
            self.stats.timeouts += 1
            if self.agi.pending:
                raise AgiError(f"no answer to {self.agi.pending} before the deadline") from None
            return None

    async def store(self, work: StoreWork[T]) -> T | None:
        """`work` on the store, inline or in the store thread (the server
        chooses); None when the deadline came too close to start it, so that
        nothing is written for a call answered as timed out."""
        result = await self.store_runner(work, self.deadline)
        if result is None:
            self.stats.timeouts += 1
        return result

    def decided(self, decision: Decision) -> None:
        self.stats.decisions[decision.verdict.value] += 1
        if self.on_decision is not None:
            self.on_decision(decision, asyncio.get_running_loop().time() - self.started)

    async def answer(self, aw: Awaitable[None]) -> None:
        """Write the answer back, within what is left of the deadline but at
        least ANSWER_MIN_S."""
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(aw, max(ANSWER_MIN_S, self.deadline - loop.time()))
