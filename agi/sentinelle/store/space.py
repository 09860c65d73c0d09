"""Room for the WAL checkpoint, so that a full disk never stops the service for good.

A commit appends its pages to the `-wal`; only a checkpoint copies them into
the store file, and to do so it must grow the store file by every page the
WAL holds beyond the file's end. SQLite counts a checkpoint as done only once
every frame is written: while that growth does not fit, no checkpoint ever
finishes, the WAL is never reset, and every write fails "database or disk is
full" for good, even after the load stops. That is what happened under a
dialer's load (megabytes of WAL a second, issue #11): freed space went to the
WAL, and whenever the background checkpointer missed its truncation a few
times in a row (the check being committed held the write lock), the WAL took
the last free byte first. Seen: a 5.4 MiB WAL, 0 bytes free, every
checkpoint failing SQLITE_FULL until the end of the run.

So while the disk is low (the checkpointer says so, or a write just failed
SQLITE_FULL), a write transaction is admitted only while the disk keeps room
for that growth plus RESERVE_BYTES; otherwise it is refused before anything
is written (StoreError: a check blocks SYS-STORE, as on the full disk), the
WAL stops growing, and the checkpointer (woken at once) has the room to
empty it. The growth is measured inside the write transaction (page count
against the file's size), so the refusal never depends on a background
thread being on time. A transaction larger than RESERVE_BYTES (a check's
is tens of KiB) can still take the last bytes; the checks are what fill a
disk at 900 a second.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from sentinelle import logs
from sentinelle.store.errors import StoreError

_log = logging.getLogger("sentinelle.store")

# Kept free beyond what a checkpoint needs: an admitted check's own frames
# and the WAL index's growth fit in it many times over.
RESERVE_BYTES = 1024 * 1024
# Below this much free space the disk is "low" and writes are measured (the
# checkpointer of `serve` also checkpoints and truncates at every poll).
LOW_SPACE_BYTES = 64 * 1024 * 1024

SQLITE_FULL = 13

# The refusals are logged at most this often (each refused check is logged
# with its reason anyway, as a decision).
WARN_EVERY_S = 10.0


@dataclass(eq=False)
class Space:
    """What this process knows of the disk under one store (by absolute path)."""

    path: str
    # Whether write transactions measure the room left before writing: set
    # while the disk is low and after a write failed SQLITE_FULL.
    watched: bool = False
    refusing: bool = False  # the last write measured was refused
    refusals: int = 0
    warned_at: float = -WARN_EVERY_S  # time.monotonic() of the last warning
    page_size: int = 0
    # Set by a refused write: the checkpointer of `serve` runs at once.
    wake: threading.Event = field(default_factory=threading.Event)


_spaces: dict[str, Space] = {}
_spaces_lock = threading.Lock()


def of(path: str) -> Space:
    key = os.path.abspath(path)
    with _spaces_lock:
        space = _spaces.get(key)
        if space is None:
            # Watched from the start on a low disk: a WAL can take megabytes
            # before the checkpointer's first look.
            free = free_bytes(key)
            space = _spaces[key] = Space(key, watched=free is not None and free < LOW_SPACE_BYTES)
        return space


def free_bytes(path: str) -> int | None:
    """Free space for this process on the store's file system (statvfs on
    the directory: no descriptor opened on the store), None if unknown."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def wal_bytes(path: str) -> int:
    try:
        return os.stat(path + "-wal").st_size
    except OSError:
        return 0


def is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == SQLITE_FULL
    return "disk is full" in str(exc)


def checkpoint_growth(conn: sqlite3.Connection, space: Space) -> int:
    """Bytes a checkpoint must add to the store file to take in every page
    committed (in a write transaction: the latest commit's page count)."""
    if not space.page_size:
        space.page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    try:
        size = os.stat(space.path).st_size
    except OSError:
        return 0  # the store's identity check reports a vanished file
    return max(0, pages * space.page_size - size)


def admit(conn: sqlite3.Connection, space: Space) -> None:
    """In a write transaction, before it writes, while the disk is watched:
    StoreError if the disk would be left without room for the checkpoint."""
    free = free_bytes(space.path)
    if free is None:
        return
    need = checkpoint_growth(conn, space)
    if free >= need + RESERVE_BYTES:
        space.refusing = False
        return
    space.refusals += 1
    space.wake.set()
    if not space.refusing:
        space.refusing = True
        now = time.monotonic()
        if now - space.warned_at >= WARN_EVERY_S:  # a disk on the edge flips often
            space.warned_at = now
            logs.event(_log, "disk almost full: writes refused until the WAL is checkpointed",
                       logging.WARNING, free_bytes=free, checkpoint_bytes=need,
                       wal_bytes=wal_bytes(space.path), refusals=space.refusals,
                       store=space.path)
    raise StoreError(f"disk almost full: {free} bytes free, the WAL checkpoint needs {need} "
                     f"+ {RESERVE_BYTES} kept for it: writes refused until it is done "
                     f"({space.path})")
