"""One scrub, from a lead list to its verdicts: what `sentinelle scrub` and
`POST /v1/scrub` share.

Rows are read and decided CHUNK at a time, so output starts before the list
ends and memory stays flat; the deciding itself is a callable (in-process, or
a pool of worker processes for the CLI) so the pipeline does not care where
the CPU is.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from sentinelle.scrub.engine import LeadVerdict
from sentinelle.scrub.leads import Leads, LeadsError, formatter, number_of, read_leads
from sentinelle.scrub.order import sort_key, sorted_lines

CHUNK = 2_000
Decider = Callable[[list[str]], list[LeadVerdict]]
# Several chunks decided at once (a pool): results come back in order.
Pipeline = Callable[[Iterator[list[str]]], Iterator[list[LeadVerdict]]]


@dataclass(frozen=True, slots=True)
class Options:
    at: datetime
    callable_only: bool = False
    callable_within: timedelta | None = None  # keep leads legal by at + this
    sort: bool = False  # by retry_at (bounded memory, see order.py)
    fmt: str = "csv"
    column: str | None = None


@dataclass
class Summary:
    leads: int = 0
    callable_now: int = 0
    callable_later: int = 0  # blocked, with a retry_at
    needs_fact: int = 0  # blocked, retry_at empty
    written: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    def add(self, v: LeadVerdict) -> None:
        self.leads += 1
        if v.allowed:
            self.callable_now += 1
        elif v.retry_at is not None:
            self.callable_later += 1
        else:
            self.needs_fact += 1
        for rule in v.rules:
            self.by_rule[rule] = self.by_rule.get(rule, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"leads": self.leads, "callable_now": self.callable_now,
                "callable_later": self.callable_later, "needs_fact": self.needs_fact,
                "written": self.written, "by_rule": dict(sorted(self.by_rule.items()))}


_WITHIN = re.compile(r"^\s*([0-9]{1,5})\s*([mhdw])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}


def parse_within(text: str, field: str = "callable_within") -> timedelta:
    """`30m`, `24h`, `7d`, `2w`: how far ahead a dialer plans its hopper."""
    m = _WITHIN.match(text)
    if not m:
        raise LeadsError(field, f"{text!r} is not a duration like 30m, 24h, 7d or 2w")
    return int(m.group(1)) * _UNITS[m.group(2)]


def serial(decide: Decider) -> Pipeline:
    return lambda chunks: (decide(c) for c in chunks)


def open_leads(source: TextIO, options: Options) -> Leads:
    """Read the header now: a list the scrub cannot read fails before any
    output (the API can still answer 422)."""
    leads = read_leads(source, options.column)
    formatter(options.fmt, leads)  # an unknown format fails here too
    return leads


def scrub(leads: Leads, pipeline: Pipeline, options: Options, write: Callable[[str], object],
          summary: Summary | None = None) -> Summary:
    """Decide every lead and write the kept ones with their verdict. The
    text is handed to `write` in pieces of about 64 KB."""
    summary = summary if summary is not None else Summary()
    out = formatter(options.fmt, leads)
    deadline = (options.at + options.callable_within
                if options.callable_within is not None else None)
    pending: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        pending.append(text)
        size += len(text)
        if size >= 65536:
            flush()

    def flush() -> None:
        nonlocal size
        if pending:
            write("".join(pending))
            pending.clear()
            size = 0

    def kept() -> Iterator[tuple[str, str]]:
        """(sort key, output text) of each kept lead; the key only when sorting."""
        rows_of: deque[list[list[str]]] = deque()

        def chunks() -> Iterator[list[str]]:
            batch: list[list[str]] = []
            for row in leads.rows:
                batch.append(row)
                if len(batch) >= CHUNK:
                    rows_of.append(batch)
                    yield [number_of(leads, r) for r in batch]
                    batch = []
            if batch:
                rows_of.append(batch)
                yield [number_of(leads, r) for r in batch]

        line = 1  # the header
        for verdicts in pipeline(chunks()):
            rows = rows_of.popleft()
            for row, v in zip(rows, verdicts, strict=True):
                line += 1
                summary.add(v)
                if options.callable_only and not v.allowed:
                    continue
                if deadline is not None and not v.callable_by(deadline):
                    continue
                summary.written += 1
                yield (sort_key(v.allowed, v.retry_at, line) if options.sort else "",
                       out.row(line, row, v))

    emit(out.head())
    if options.sort:
        for text in sorted_lines(kept()):
            emit(text)
    else:
        for _, text in kept():
            emit(text)
    emit(out.tail(summary.to_dict()))
    flush()
    return summary
