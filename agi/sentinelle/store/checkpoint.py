"""The WAL checkpointer of `sentinelle serve`.

It checkpoints the WAL from its own thread and connection, so that the
FastAGI worker (opened with `wal_autocheckpoint=0`) never pays for a
checkpoint inside a check: a checkpoint's fsync there is a latency spike
on a call being dialled.

It also keeps a filling disk from stopping the service for good. Each check
appends several pages to the WAL (the attempt, the decision, their indexes):
at a dialer's rate that is megabytes a second. Checkpointed once a second,
the WAL grew to fill any small file system; and on a full disk a checkpoint
needs room to grow the store file, so once the WAL had taken every freed
byte again (in well under a second), checkpoints could never catch up and
every check stayed BLOCK SYS-STORE until the traffic stopped. So the WAL is
watched several times a second: past `soon_bytes`, or when the disk is low,
it is checkpointed at once (and truncated when the disk is low), so that the
space a WAL frees, or an admin frees, goes to the store file first. Every
connection also has `journal_size_limit` (see connection.py): the writer
that restarts a checkpointed WAL gives its extra blocks back.

When the disk is low, the truncation waits up to TRUNCATE_WAIT_MS for the
write lock: given up at once, it lost to the check being committed in a
third to a half of the polls under load (this thread gets the interpreter
back right when the event loop enters SQLite, mid-transaction), and a few
losses in a row let the WAL grow by megabytes. The checkpointer also tells
the writers of this process that the disk is low (store.space): they then
keep the room this checkpoint needs, whatever its luck.
"""

from __future__ import annotations

import logging
import threading
import time

from sentinelle import logs
from sentinelle.store import space
from sentinelle.store.connection import SqliteDatabase
from sentinelle.store.space import free_bytes, wal_bytes

_log = logging.getLogger("sentinelle.store")

# How often the WAL's size and the free space are looked at (two stat calls).
POLL_S = 0.1
# A WAL this big is checkpointed without waiting for the next interval.
SOON_BYTES = 4 * 1024 * 1024
# Below this much free space the disk is "low": a warning is logged, the WAL
# is checkpointed and truncated at every poll, and writes are measured.
LOW_SPACE_BYTES = space.LOW_SPACE_BYTES
# How long a truncation on a low disk waits for the write lock (and then for
# readers, holding it: a check waits that long at worst, once).
TRUNCATE_WAIT_MS = 50
# Woken by refused writes, the checkpointer still rests this long between
# checkpoints (one that cannot progress must not spin).
WAKE_S = 0.01


class Checkpointer:
    """Every `interval_s`, or sooner when the WAL passed `soon_bytes` or the
    disk is low: a PASSIVE checkpoint (never waits, never blocks a writer).
    When it copied every frame and the WAL file is past `truncate_bytes` (a
    reader kept it from being reused, or a burst) or the disk is low, a
    TRUNCATE with a zero busy timeout: it gives up at once rather than hold
    the write lock a check is waiting for (on a low disk it waits up to
    TRUNCATE_WAIT_MS: the WAL must not take the space). Errors are logged and
    retried at the next poll: the checkpointer can never make a check fail."""

    def __init__(self, path: str, *, interval_s: float = 1.0,
                 truncate_bytes: int = 64 * 1024 * 1024, poll_s: float = POLL_S,
                 soon_bytes: int = SOON_BYTES, low_space_bytes: int = LOW_SPACE_BYTES) -> None:
        self.path = path
        self.interval_s = interval_s
        self.truncate_bytes = truncate_bytes
        self.poll_s = min(poll_s, interval_s)
        self.soon_bytes = soon_bytes
        self.low_space_bytes = low_space_bytes
        self.runs = 0
        self.truncations = 0
        self.errors = 0
        self.frames = 0  # frames copied by PASSIVE checkpoints
        self.low_space = False  # the disk was low at the last poll
        self._last = 0.0  # time.monotonic() of the last checkpoint tried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: SqliteDatabase | None = None
        self._space = space.of(path)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sentinelle-checkpoint",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop and do a last checkpoint, so a clean shutdown leaves a short WAL."""
        self._stop.set()
        self._space.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        try:
            self._last = time.monotonic()
            while True:
                # A write refused for want of room (store.space) wakes this
                # at once rather than at the next poll, at most every WAKE_S.
                woken = self._space.wake.wait(self.poll_s)
                if self._stop.is_set():
                    break
                self._space.wake.clear()
                if self.due() or woken:
                    self.tick()
                if woken and self._stop.wait(WAKE_S):
                    break
            self.tick()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    def due(self) -> bool:
        """Whether to checkpoint now: the interval passed, the WAL is big, or
        the disk is low (then at every poll). Logs the disk going low."""
        free = free_bytes(self.path)
        low = free is not None and free < self.low_space_bytes
        if low and not self.low_space:
            logs.event(_log, "disk almost full: checkpointing the WAL at every poll",
                       logging.WARNING, free_bytes=free, wal_bytes=wal_bytes(self.path),
                       store=self.path)
        elif self.low_space and not low:
            logs.event(_log, "disk space back", free_bytes=free, store=self.path)
        self.low_space = low
        # A write that failed SQLITE_FULL watches too, until space is back.
        self._space.watched = low
        return (low or time.monotonic() - self._last >= self.interval_s
                or wal_bytes(self.path) >= self.soon_bytes)

    def tick(self) -> None:
        self._last = time.monotonic()
        try:
            if self._db is None:
                self._db = SqliteDatabase(self.path, create=False, busy_timeout_ms=0)
            busy, log_frames, done = self._db.wal_checkpoint("PASSIVE")
            self.runs += 1
            self.frames += max(done, 0)
            wal = wal_bytes(self.path)
            if busy == 0 and log_frames == done and wal > 0 and (
                    self.low_space or wal > self.truncate_bytes):
                self._db.set_busy_timeout(TRUNCATE_WAIT_MS if self.low_space else 0)
                busy, _, _ = self._db.wal_checkpoint("TRUNCATE")
                if busy == 0:
                    self.truncations += 1
        except Exception as exc:  # never fatal: retried at the next poll
            self.errors += 1
            if self._db is not None and not self._db.is_open:
                self._db = None
            if self.errors <= 3 or self.errors % 100 == 0:
                logs.event(_log, "WAL checkpoint failed (retried)", logging.WARNING,
                           error=str(exc), failures=self.errors)
