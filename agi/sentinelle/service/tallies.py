"""What every FastAGI worker of one `serve` decided, in memory they share.

With `server.workers = N` the kernel spreads the PBX's calls over N
processes, and only worker 0 serves /metrics: counters kept in each
worker's own memory would show an admin a fraction of the decisions (a
quarter with 4 workers) and hide a flood of blocks on the others. The
supervisor maps one anonymous shared page set before it forks, and each
worker writes only its own row, so no write ever races another process's;
worker 0's scrape adds the rows up. A worker that dies and is replaced
keeps its row: the counts are the service's, not the process's (Prometheus
counters must not go down while the service runs). Only its in-flight
count is reset, since the requests it held died with it.

A single-process `serve` uses the same tallies with one row, so the
metrics have one path whatever the number of workers.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

from sentinelle.core.model import Decision
from sentinelle.core.rules import RULES, SYS_CONFIG, SYS_ERROR, SYS_STORE, SYS_TIMEOUT

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VERDICTS = ("allow", "block")
# Every rule id a decision can name. An id not listed (a rule added without
# updating this) is still counted, under rule="other", never dropped.
RULE_IDS = ("", *RULES, SYS_CONFIG, SYS_STORE, SYS_TIMEOUT, SYS_ERROR, "other")
DOUBLE = 8


class Tallies:
    """Per-worker rows of doubles: decision counts by (verdict, rule), the
    latency histogram's bucket counts, its sum, and the requests in flight."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._keys = [(v, r) for v in VERDICTS for r in RULE_IDS]
        self._index = {key: i for i, key in enumerate(self._keys)}
        self._bucket0 = len(self._keys)
        self._sum = self._bucket0 + len(LATENCY_BUCKETS) + 1  # the last bucket is +Inf
        self._inflight = self._sum + 1
        self._width = self._inflight + 1
        # Anonymous and MAP_SHARED (mmap's default on Linux): inherited by
        # fork, the same pages in the supervisor and every worker.
        self._map = mmap.mmap(-1, workers * self._width * DOUBLE)
        self._cells = memoryview(self._map).cast("d")

    def _cell(self, worker: int, offset: int) -> int:
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker {worker} out of 0..{self.workers - 1}")
        return worker * self._width + offset

    def observe(self, worker: int, decision: Decision, elapsed_s: float) -> None:
        verdict = decision.verdict.value
        for rule in decision.rules or ("",):
            key = (verdict, rule) if (verdict, rule) in self._index else (verdict, "other")
            self._cells[self._cell(worker, self._index[key])] += 1
        bucket = next((i for i, bound in enumerate(LATENCY_BUCKETS) if elapsed_s <= bound),
                      len(LATENCY_BUCKETS))
        self._cells[self._cell(worker, self._bucket0 + bucket)] += 1
        self._cells[self._cell(worker, self._sum)] += elapsed_s

    def set_inflight(self, worker: int, count: int) -> None:
        self._cells[self._cell(worker, self._inflight)] = float(count)

    def _total(self, offset: int) -> float:
        return sum(self._cells[w * self._width + offset] for w in range(self.workers))

    def decisions(self) -> Iterator[tuple[str, str, float]]:
        """(verdict, rule, count) for every pair counted at least once."""
        for (verdict, rule), i in self._index.items():
            count = self._total(i)
            if count:
                yield verdict, rule, count

    def latency(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets as Prometheus wants them (`le` bound, count),
        and the sum of the observed seconds."""
        buckets, running = [], 0.0
        for i, bound in enumerate((*LATENCY_BUCKETS, float("inf"))):
            running += self._total(self._bucket0 + i)
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets, self._total(self._sum)

    def inflight(self) -> float:
        return self._total(self._inflight)
