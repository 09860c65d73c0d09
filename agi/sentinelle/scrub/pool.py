"""Scrubbing on several cores: one worker process a core, each with its own
read connection (WAL readers never block the live checks nor each other).

Why processes: deciding is pure Python (a lead decided alone ~60-90 us;
one sharing its decision with an earlier lead of the same inputs, a few us),
so threads would queue on the GIL. Chunks go out in order and come back in
order, with at most 2 per worker in flight, so a list of any size never
sits in memory.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from datetime import datetime

from sentinelle.config import Config
from sentinelle.scrub.engine import LeadVerdict, Scrubber
from sentinelle.store import open_store

_scrubber: Scrubber | None = None


def _init(config: Config, campaign: str, at: datetime, caller_id: str | None, masked: bool,
          nice: int) -> None:
    global _scrubber
    if nice:
        with suppress(OSError):  # a sandbox may forbid it: then at normal priority
            os.nice(nice)
    sc = config.store
    store = open_store(sc, pool_size=1)
    _scrubber = Scrubber(config, store, campaign, at, caller_id, masked)


def _work(numbers: list[str]) -> list[LeadVerdict]:
    assert _scrubber is not None
    return _scrubber.verdicts(numbers)


class ScrubPool:
    def __init__(self, config: Config, campaign: str, at: datetime, *, jobs: int,
                 caller_id: str | None = None, masked: bool = False, nice: int = 0) -> None:
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init, initargs=(config, campaign, at, caller_id, masked, nice))

    def __call__(self, chunks: Iterator[list[str]]) -> Iterator[list[LeadVerdict]]:
        window: deque[Future[list[LeadVerdict]]] = deque()
        for chunk in chunks:
            window.append(self._pool.submit(_work, chunk))
            if len(window) >= 2 * self.jobs:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScrubPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
