"""Sorting a scrubbed list by `retry_at` in bounded memory.

A dialer loads what is callable first; sorting needs the whole list, and a
list may not fit in memory. So rows are sorted in runs of RUN_ROWS, each run
written to a temporary file, and the runs merged (heapq.merge reads one line
of each at a time): memory holds one run, whatever the list's size, and the
temporary files (in $TMPDIR) hold the list once. Unsorted output needs none
of this and streams in constant memory.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TextIO

RUN_ROWS = 50_000


def sort_key(allowed: bool, retry_at: datetime | None, line: int) -> str:
    """Callable now first (in list order), then by the instant time makes
    them legal, then those that need a new fact. A text key: it is what the
    run files hold, and text order is this order."""
    if allowed:
        rank = "0"
    elif retry_at is not None:
        rank = "1" + retry_at.astimezone(UTC).isoformat(timespec="microseconds")
    else:
        rank = "2"
    return f"{rank}|{line:012d}"


def sorted_lines(items: Iterable[tuple[str, str]], run_rows: int | None = None,
                 tmpdir: str | None = None) -> Iterator[str]:
    """(key, text) pairs -> the texts in key order. Texts are output lines:
    they end with a newline and hold no other one (CSV escapes its newlines
    inside quotes, so they are re-escaped here for the run files)."""
    run_rows = run_rows or RUN_ROWS
    with ExitStack() as stack:
        runs: list[TextIO] = []
        batch: list[tuple[str, str]] = []

        def spill() -> None:
            batch.sort()
            fh = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", dir=tmpdir,
                                                            prefix="sentinelle-scrub-"))
            for key, text in batch:
                fh.write(f"{key}\t{_escape(text)}\n")
            fh.seek(0)
            runs.append(fh)
            batch.clear()

        for item in items:
            batch.append(item)
            if len(batch) >= run_rows:
                spill()
        if not runs:  # fits in one run: no file at all
            batch.sort()
            yield from (text for _, text in batch)
            return
        if batch:
            spill()
        for line in heapq.merge(*runs):
            yield _unescape(line[line.index("\t") + 1:-1])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(text: str) -> str:
    out, i = [], 0
    while True:
        j = text.find("\\", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        nxt = text[j + 1: j + 2]
        out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, nxt))
        i = j + 2

