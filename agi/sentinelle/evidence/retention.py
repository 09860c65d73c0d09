"""Retention (`sentinelle purge`) and erasure (`sentinelle forget`).

Purge: evidence is kept `policy.retention_days` (3 years by default,
docs/rules.md "Evidence") and then deleted, in batches, while the FastAGI service
keeps deciding calls on the same SQLite file. Why batches and pauses: SQLite
has one writer at a time, and a live check waits at most
`store.busy_timeout_ms` (1.5 s) for the lock before failing closed. So the
slow part (finding expired rows) runs in read transactions, which never
block in WAL mode, each delete transaction is small (`batch` rows, a few
milliseconds), and the purge sleeps at least as long as it held the lock
before taking it again: a waiting check always gets its turn.

Forget: an erasure request for one number deletes what sentinelle holds on
it except the minimal records without which the professional would break the
law by calling again:
- `optouts` rows (R-12: "never call me again" must outlive the erasure);
- refusals of the last 61 days, reduced to (professional, number, instant)
  (R-31: 60 days of silence; one day of slack for calendar days in the
  callee's zone);
- attempts of the last 31 days, reduced to (professional, number, instant)
  (R-30: deleting them would let a fifth call through in the window).
Those minimal rows are marked `erased` and the next `purge` deletes them as
soon as R-30 / R-31 no longer need them. Everything else goes: the decision
log entries, consents and their proofs, contracts, department, outcomes and
dispositions. The Bloctel snapshots are not touched: they are the national
list's copy, replaced wholesale by the next import, and removing the number
from an `opposed` snapshot would make it callable (a wrong allow).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sentinelle.core.numbers import NumberError, parse
from sentinelle.core.rules import ATTEMPT_WINDOW, REFUSAL_SILENCE
from sentinelle.store import HISTORY_HORIZON, PURGE_TABLES, Backend, StoreBusy

# Rules read this far back: a shorter retention would let calls through.
MIN_RETENTION = HISTORY_HORIZON
KEEP_ATTEMPTS = ATTEMPT_WINDOW + timedelta(days=1)
KEEP_REFUSALS = REFUSAL_SILENCE + timedelta(days=1)
DEFAULT_BATCH = 1000
MIN_BATCH = 50
TARGET_BATCH_S = 0.05

_DURATION = re.compile(r"^\s*(\d+)\s*(d|days?|w|weeks?|y|years?)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """'1095', '1095d', '52w', '3y' (a year is 365 days, as retention_days counts)."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 1095d, 156w, 3y)")
    n, unit = int(m.group(1)), (m.group(2) or "d")[0].lower()
    return timedelta(days=n * {"d": 1, "w": 7, "y": 365}[unit])


def purge_bounds(now: datetime, older_than: timedelta, consent_max_age_days: int
                 ) -> dict[str, datetime]:
    """The instants `store.retention.PURGE_WHERE` compares with."""
    if older_than < MIN_RETENTION:
        raise ValueError(f"retention {older_than.days} days is shorter than the "
                         f"{MIN_RETENTION.days} days R-30/R-31 read back: refused")
    cutoff = now - older_than
    return {
        "cutoff": cutoff,
        "consent_cutoff": cutoff - timedelta(days=consent_max_age_days),
        "erased_attempts": now - KEEP_ATTEMPTS,
        "erased_refusals": now - KEEP_REFUSALS,
    }


@dataclass
class PurgeResult:
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_s: float = 0.0
    seconds: float = 0.0


# A purge yields to the live service: a batch that finds the store locked
# past the busy timeout (calls being decided under load) is tried again after
# a pause, instead of aborting a nightly purge half-way. Nothing of a batch is
# written until it commits, so a retry deletes nothing twice.
BUSY_RETRIES = 10
BUSY_PAUSE_S = 0.2


def _delete_batch(store: Backend, table: str, bounds: dict[str, datetime],
                  rowids: list[int]) -> int:
    for _ in range(BUSY_RETRIES):
        try:
            return store.delete_expired(table, bounds, rowids)
        except StoreBusy:
            time.sleep(BUSY_PAUSE_S)
    return store.delete_expired(table, bounds, rowids)  # the last try raises, said as such


def purge(
    store: Backend, bounds: dict[str, datetime], *, batch: int = DEFAULT_BATCH,
    min_pause_s: float = 0.005, dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> PurgeResult:
    """Delete every row past retention, at most `batch` rows per write
    transaction (fewer while transactions take over 0.1 s).

    After each delete the purge sleeps for as long as it held the lock (at
    least `min_pause_s`): at most half of the writer's time goes to the purge,
    and a check waiting on the lock is served in the pause."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    result = PurgeResult()
    started = time.perf_counter()
    for table in PURGE_TABLES:
        if dry_run:
            result.deleted[table] = store.count_expired(table, bounds)
            continue
        total, after, size = 0, 0, batch
        while rowids := store.expired_rowids(table, bounds, after, size):
            t0 = time.perf_counter()
            total += _delete_batch(store, table, bounds, rowids)
            held = time.perf_counter() - t0
            result.batches += 1
            result.longest_batch_s = max(result.longest_batch_s, held)
            after = rowids[-1]
            if progress is not None:
                progress(table, total)
            # Cold pages or a WAL checkpoint can make a batch slow: shrink it
            # until a transaction takes about TARGET_BATCH_S, grow back after.
            if held > 2 * TARGET_BATCH_S:
                size = max(MIN_BATCH, size // 2)
            elif held < TARGET_BATCH_S / 2:
                size = min(batch, size * 2)
            time.sleep(max(min_pause_s, held))
        result.deleted[table] = total
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class ForgetResult:
    e164: str
    tables: dict[str, dict[str, int]]
    checkpointed: bool


def forget(store: Backend, e164: str, now: datetime, outside_prefix: str = "") -> ForgetResult:
    """Erase what the store holds on `e164`, keeping only what R-12, R-30 and
    R-31 need (see the module docstring), then checkpoint the WAL so the
    erased bytes do not survive in old WAL frames."""

    def same_number(dialled: str) -> bool:
        # Decisions on an unknown campaign (SYS-CONFIG) carry the raw dialled
        # string without an e164: they hold the number too.
        try:
            return parse(dialled, outside_prefix).e164 == e164
        except NumberError:
            return False

    tables = store.forget_number(
        e164, keep_attempts_since=now - KEEP_ATTEMPTS, keep_refusals_since=now - KEEP_REFUSALS,
        dialled_is_number=same_number)
    return ForgetResult(e164, tables, store.checkpoint())
