"""The WAL checkpointer of `sentinelle serve`.

It checkpoints the WAL from its own thread and connection, so that the
FastAGI worker (opened with `wal_autocheckpoint=0`) never pays for a
checkpoint inside a check: a checkpoint's fsync there is a latency spike
on a call being dialled.
"""

from __future__ import annotations

import logging
import os
import threading

from sentinelle import logs
from sentinelle.store.connection import SqliteDatabase

_log = logging.getLogger("sentinelle.store")


class Checkpointer:
    """Every `interval_s`: a PASSIVE checkpoint (never waits, never blocks a
    writer). When the WAL file has grown past `truncate_bytes` (a reader kept
    it from being reused, or a burst) and a PASSIVE checkpoint copied every
    frame, a TRUNCATE with a zero busy timeout: it gives up at once rather
    than hold the write lock a check is waiting for. Errors are logged and
    retried on the next tick: the checkpointer can never make a check fail."""

    def __init__(self, path: str, *, interval_s: float = 1.0,
                 truncate_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.interval_s = interval_s
        self.truncate_bytes = truncate_bytes
        self.runs = 0
        self.truncations = 0
        self.errors = 0
        self.frames = 0  # frames copied by PASSIVE checkpoints
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: SqliteDatabase | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sentinelle-checkpoint",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop and do a last checkpoint, so a clean shutdown leaves a short WAL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.tick()
            self.tick()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    def tick(self) -> None:
        try:
            if self._db is None:
                self._db = SqliteDatabase(self.path, create=False, busy_timeout_ms=0)
            busy, log_frames, done = self._db.wal_checkpoint("PASSIVE")
            self.runs += 1
            self.frames += max(done, 0)
            if busy == 0 and log_frames == done and self._wal_bytes() > self.truncate_bytes:
                busy, _, _ = self._db.wal_checkpoint("TRUNCATE")
                if busy == 0:
                    self.truncations += 1
        except Exception as exc:  # never fatal: retried next tick
            self.errors += 1
            if self._db is not None and not self._db.is_open:
                self._db = None
            if self.errors <= 3 or self.errors % 100 == 0:
                logs.event(_log, "WAL checkpoint failed (retried)", logging.WARNING,
                           error=str(exc), failures=self.errors)

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0
