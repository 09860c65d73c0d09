"""The store is three files: keeping the `-wal` and `-shm` beside it whole.

While a process has the store open, SQLite keeps descriptors on the
`-wal` (the latest commits, not yet copied into the store file) and on the
`-shm` (the index of the WAL, shared by every process through its locks and
a memory map). An admin or a script deleting either under a running service
splits the store in two without an error:

- `-wal` deleted: this process goes on committing into the unlinked inode,
  which nobody else sees and which vanishes with the process. After a
  `kill -9`, every attempt since (and every one not yet checkpointed) is
  gone, and R-30 lets a callee be called again.
- `-shm` deleted: the next process to open the store builds a new index and
  takes its own locks on it, so two writers append to the same WAL without
  excluding each other: attempts lost, "database disk image is malformed".

So every connection remembers the inodes of the `-wal` and `-shm` it opened
and checks, before each use (two `stat` calls), that the paths still name
them: when they do not, the store is not whole, every use in the process
answers StoreError (a check blocks with SYS-STORE) and the connection that
noticed makes the store whole again, losing nothing:

1. `-wal` replaced: a TRUNCATE checkpoint through the still-open connection
   copies every frame of the orphaned WAL into the store file (and fsyncs it)
   before anything is reopened: that is where the commits made since the
   deletion are.
2. `-shm` replaced: the index of this process is no longer the one others
   use, and SQLite shares one index per store file between all connections
   of a process, so every connection of the process is closed, then reopened
   on the index at the path. While they close, a lock keeps the store "in
   use", or the last close would checkpoint through the stale index and
   delete the `-wal` and `-shm` at the paths, with the commits of other
   processes in them.
3. A generation number: a connection opened before the repair is closed and
   reopened at its next use, and a write transaction re-checks it once it
   holds the write lock, so no commit can land in the orphaned files.

Transactions take a shared gate, the repair an exclusive one, so no
connection is closed in the middle of a transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import struct
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sentinelle import logs
from sentinelle.store.errors import StoreError


class SqliteDatabase(Protocol):
    """What a repair needs of a connection (store.connection's class)."""

    path: str

    @property
    def generation_seen(self) -> int | None: ...

    @property
    def raw_connection(self) -> sqlite3.Connection | None: ...

    def drop(self) -> None: ...

_log = logging.getLogger("sentinelle.store")

GATE_WAIT_S = 0.5

# SQLite's lock bytes (os_unix.c): a connection holds a read lock on the
# SHARED range of the store file for as long as it is open; the last one to
# close takes a write lock on it to learn that it is the last.
_SHARED_FIRST = 0x40000000 + 2
_FLOCK = "@hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid

# One descriptor per store file (inode), opened once and never closed:
# closing any descriptor of the file would drop every POSIX lock this
# process holds on it, SQLite's included.
_kept: dict[tuple[int, int], int] = {}


class Gate:
    """Many transactions at once, or one repair: a readers-writer lock that
    prefers readers (a thread may hold it shared twice), the repair waiting
    at most GATE_WAIT_S for the transactions in flight to end. A transaction
    that comes during a repair does not wait: StoreError at once (a check on
    the event loop must not stall every other one)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False

    def shared(self) -> Gate:
        return self  # a plain context manager: this is on every transaction's path

    def __enter__(self) -> None:
        with self._cond:
            if self._exclusive:
                raise StoreError("store files being repaired (a -wal or -shm was deleted)")
            self._shared += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared == 0:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self, timeout_s: float = GATE_WAIT_S) -> Iterator[bool]:
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._exclusive and self._shared == 0,
                                     timeout_s)
            if ok:
                self._exclusive = True
        try:
            yield ok
        finally:
            if ok:
                with self._cond:
                    self._exclusive = False
                    self._cond.notify_all()


@dataclass(eq=False)
class StoreFiles:
    """What this process knows of one store (by absolute path)."""

    path: str
    wal_path: str = ""
    shm_path: str = ""
    generation: int = 0
    broken: str | None = None  # why the store is not whole, until repaired
    repairs: int = 0
    gate: Gate = field(default_factory=Gate)
    members: weakref.WeakSet[SqliteDatabase] = field(default_factory=weakref.WeakSet)
    lock: threading.RLock = field(default_factory=threading.RLock)


_stores: dict[str, StoreFiles] = {}
_stores_lock = threading.Lock()


def files_of(path: str) -> StoreFiles:
    key = os.path.abspath(path)
    with _stores_lock:
        files = _stores.get(key)
        if files is None:
            files = _stores[key] = StoreFiles(key, key + "-wal", key + "-shm")
        return files


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inode_at(path: str) -> tuple[int, int] | None:
    """The inode at `path`, None when nothing is there. A path that cannot be
    looked at (its directory chmod 000) says nothing about the file: that is
    "store unreadable", not a deleted -wal to repair."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"store unreadable: {path}: {exc.strerror or exc}") from None
    return st.st_dev, st.st_ino


def open_inodes(path: str) -> dict[str, set[tuple[int, int]]]:
    """The inodes this process has open under `path`-wal and `path`-shm,
    deleted ones included (from /proc/self/fd; stat on the fd links, never
    a descriptor opened and closed: that would drop SQLite's locks)."""
    out: dict[str, set[tuple[int, int]]] = {"-wal": set(), "-shm": set()}
    path = os.path.realpath(path)  # what /proc shows, symbolic links resolved
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        # No /proc (a chroot without it: a classic AGI run that way): the
        # descriptors cannot be listed, and the paths' own inodes, checked
        # before every transaction, are what is left to go on.
        return out
    for name in names:
        link = f"/proc/self/fd/{name}"
        try:
            target = os.readlink(link)
        except OSError:
            continue
        target = target.removesuffix(" (deleted)")
        for suffix, found in out.items():
            if target == path + suffix:
                ino = _inode(link)
                if ino is not None:
                    found.add(ino)
    return out


def opened(db: SqliteDatabase) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """Right after a connection opened (and read) the store: its generation
    and the inodes of the `-wal` and `-shm` at the paths. StoreError when
    this process still has other ones open: the store is not whole."""
    files = files_of(db.path)
    path = files.path
    wal, shm = _inode_at(path + "-wal"), _inode_at(path + "-shm")
    held = open_inodes(path)
    stale = [s for s, ino in (("-wal", wal), ("-shm", shm))
             if ino is None or any(h != ino for h in held[s])]
    if stale:
        raise StoreError(_reason(path, stale))
    assert wal is not None and shm is not None
    files.members.add(db)
    return files.generation, wal, shm


_WHAT = {"-wal": "WAL (-wal)", "-shm": "WAL index (-shm)"}


def _reason(path: str, stale: list[str]) -> str:
    names = " and ".join(_WHAT[s] for s in stale)
    return f"store not whole: its {names} deleted or replaced under the service ({path})"


def check(db: SqliteDatabase, files: StoreFiles, generation: int, wal: tuple[int, int],
          shm: tuple[int, int]) -> bool:
    """Before each use of an open connection: True if it may be used, False
    if it must be reopened (a repair happened since it opened). Raises
    StoreError while the store is not whole, after trying to repair it."""
    if generation != files.generation:
        return False
    wal_now, shm_now = _inode_at(files.wal_path), _inode_at(files.shm_path)
    if wal_now == wal and shm_now == shm and files.broken is None:
        return True  # the hot path: two stat calls
    stale = [s for s, ino, now in (("-wal", wal, wal_now), ("-shm", shm, shm_now)) if now != ino]
    if not stale and (files.broken is None or _settled(files)):
        return True
    reason = files.broken or _reason(files.path, stale)
    if files.broken is None:
        files.broken = reason
        logs.event(_log, "store not whole: blocking until repaired", logging.ERROR,
                   reason=reason)
    if stale:
        repaired = repair(db, stale)
        if repaired:
            logs.event(_log, "store files repaired", logging.WARNING, reason=reason,
                       done=repaired)
            raise StoreError(f"{reason}: repaired ({repaired})")
    raise StoreError(reason)


def _settled(files: StoreFiles) -> bool:
    """A store marked not whole, seen from a connection whose files are the
    ones at the paths: whole again once this process holds no other -wal or
    -shm (the connections that held them were closed some other way)."""
    if not files.lock.acquire(blocking=False):
        return False  # being repaired
    try:
        if files.broken is None:
            return True
        if not _consistent(files.path):
            return False
        files.broken = None
        return True
    finally:
        files.lock.release()


def _consistent(path: str) -> bool:
    """This process holds no -wal or -shm but the ones at the paths."""
    held = open_inodes(path)
    for suffix in ("-wal", "-shm"):
        ino = _inode(path + suffix)
        if any(h != ino for h in held[suffix]):
            return False
    return True


def repair(db: SqliteDatabase, stale: list[str]) -> str | None:
    """Make the store whole again through `db`, a connection opened on the
    files now gone; what was done, or None if it could not be done now (the
    next use tries again)."""
    files = files_of(db.path)
    if not files.lock.acquire(blocking=False):
        return None  # another thread is repairing: this use blocks, never waits
    try:
        return _repair(files, db, stale)
    finally:
        files.lock.release()


def _repair(files: StoreFiles, db: SqliteDatabase, stale: list[str]) -> str | None:
    with files.gate.exclusive() as quiet:
        if not quiet or files.generation != db.generation_seen:
            return None
        conn = db.raw_connection
        if conn is None:
            return None
        done = []
        if "-wal" in stale:
            # The orphaned WAL holds the commits made since it was deleted:
            # copy them into the store file before anything is reopened.
            try:
                conn.execute("PRAGMA busy_timeout = 1000")
                busy, _log, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except Exception:
                return None
            if busy != 0:
                return None
            done.append("orphaned WAL checkpointed into the store file")
        with _held_open(files.path) as held:
            if not held:
                return None
            for member in list(files.members):
                member.drop()
            if not _consistent(files.path):
                return None  # a connection not ours still holds the old files
            files.members.clear()
            files.generation += 1
            files.broken = None
            files.repairs += 1
        done.append("every connection reopened on the files at the paths")
        return "; ".join(done)


@contextlib.contextmanager
def _held_open(path: str) -> Iterator[bool]:
    """The store kept "in use" while this process closes its connections:
    without it, the last close takes the store for unused, checkpoints through
    the stale index and deletes the `-wal` and `-shm` at the paths (other
    processes' commits with them). An open-file-description read lock on the
    SHARED range, from a descriptor kept open, conflicts with the write lock
    that close tries (a POSIX lock of this same process would not)."""
    try:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        fd = _kept.get(key)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != key:
                _kept[(os.fstat(fd).st_dev, os.fstat(fd).st_ino)] = fd
                yield False
                return
            _kept[key] = fd
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK,
                    struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, _SHARED_FIRST, 1, 0))
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK,
                        struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, _SHARED_FIRST, 1, 0))


def recheck(db: SqliteDatabase, files: StoreFiles) -> None:
    """Inside a transaction (after BEGIN): a repair that ran between the
    check and the BEGIN means this connection's files are the orphaned ones.
    Raises StoreError then; the caller rolls back."""
    if db.generation_seen != files.generation or files.broken is not None:
        raise StoreError(files.broken or f"store repaired under this connection ({files.path})")
