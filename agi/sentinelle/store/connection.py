"""One SQLite store file: opening it, its pragmas, its identity, transactions.

Why the choices below:
- WAL mode: readers (exports, reports, the audit) never block the live
  checks, and a check never waits for a reader.
- The file's identity (device, inode) is checked before each use: a store
  deleted or replaced under a running service must not be written to as a
  ghost inode, which would silently swallow the records of calls placed.
- An empty or non-SQLite file in the store's place is never opened: SQLite
  takes an empty file for an empty database and deletes the `-wal` beside
  it, which is the real store's (renamed away, being copied back): its last
  commits, the attempts of calls already allowed, would be gone.
- A store the service may not read (its file or directory chmod'ed or
  chown'ed away) is a `StoreError` saying so, like a missing one: a check
  then blocks with SYS-STORE and the reason, never SYS-ERROR, and the next
  use retries, so the service recovers once the permissions are fixed.
- The `-wal` and `-shm` beside the store are checked before each use too
  (store.wholeness): deleted under a running service, they would split the
  store in two; the store is then blocked and repaired, losing nothing.
- Every SQLite error leaves as `StoreError` (`StoreBusy` for a lock), and a
  connection that met anything but a lock is dropped and reopened on next
  use rather than kept poisoned (a corrupt or replaced file).
- While the disk is low, a write transaction is refused before it writes
  when the disk would be left without room for the WAL's checkpoint
  (store.space): a WAL that takes the last free byte can never be
  checkpointed, and the store would stay full for good.
- The busy timeout is the connection's, adjustable per request: the FastAGI
  worker bounds it by each request's deadline.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Self
from urllib.parse import quote as pathname2url  # what urllib.request's is on POSIX, minus its ~20 ms import

from sentinelle.config import StoreConfig
from sentinelle.store import schema, space, wholeness
from sentinelle.store.database import Database, Tx
from sentinelle.store.errors import StoreBusy, StoreError, is_busy

# The store settings' defaults are written once, in the config's dataclass.
DEFAULTS = StoreConfig()

SQLITE_MAGIC = b"SQLite format 3\x00"

JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024

# Header reads go through descriptors kept open, one per file (inode): closing
# ANY descriptor of a file releases every POSIX lock this process holds on it,
# SQLite's included, and a store whose locks vanish looks unused to other
# processes, whose close then checkpoints and deletes the WAL under us.
_header_fds: dict[tuple[int, int], int] = {}
_header_lock = threading.Lock()
_HEADER_FDS_MAX = 64


def unreadable(path: str, exc: OSError) -> str:
    return (f"store unreadable: {path}: {exc.strerror or exc} "
            "(check the owner and mode of the file and its directory)")


def stat_store(path: str) -> os.stat_result | None:
    """The store file's stat, None when it does not exist; StoreError when it
    cannot be looked at (a PermissionError must not escape as an internal
    error: it is a store fault, blocked as SYS-STORE with its reason)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(unreadable(path, exc)) from None


def access_problem(path: str) -> str | None:
    """Why this process may not read and write the store (or create its -wal
    and -shm beside it), or None. SQLite only says "unable to open database
    file"; an admin needs to know it is the permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    denied = PermissionError(13, "Permission denied")
    if not os.access(directory, os.X_OK):
        return unreadable(directory, denied)
    if not os.access(path, os.F_OK):  # to be created: the directory must be writable
        return None if os.access(directory, os.W_OK) else unreadable(directory, denied)
    return None if os.access(path, os.R_OK | os.W_OK) else unreadable(path, denied)


def header_problem(path: str) -> str | None:
    """Why the file at `path` must not be opened as an existing store, or None."""
    try:
        head = _read_header(path)
    except FileNotFoundError:
        return None  # reported as a missing store by the caller
    except OSError as exc:
        return unreadable(path, exc)
    if not head:
        return f"store file is empty: {path} (replaced or truncated? restore it)"
    if head != SQLITE_MAGIC:
        return f"store file is not a SQLite database: {path} (replaced? put the store back)"
    return None


def _read_header(path: str) -> bytes:
    with _header_lock:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        fd = _header_fds.get(key)
        if fd is None:
            if len(_header_fds) >= _HEADER_FDS_MAX:
                _forget_unused_header_fds()
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fst = os.fstat(fd)
            key = (fst.st_dev, fst.st_ino)
            _header_fds.setdefault(key, fd)
            fd = _header_fds[key]
        return os.pread(fd, len(SQLITE_MAGIC), 0)


def _forget_unused_header_fds() -> None:
    """Close the kept descriptors of files no other descriptor of this process
    has open (closing those can release no lock SQLite holds)."""
    in_use: dict[tuple[int, int], int] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return  # no /proc: keep them all (closing one might drop a lock)
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/self/fd/{name}")
            in_use[(st.st_dev, st.st_ino)] = in_use.get((st.st_dev, st.st_ino), 0) + 1
    for key, fd in list(_header_fds.items()):
        if in_use.get(key, 0) <= 1:
            del _header_fds[key]
            with contextlib.suppress(OSError):
                os.close(fd)

class SqliteDatabase(Database):
    """A connection to a sentinelle store file; not shared between threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        busy_timeout_ms: int = DEFAULTS.busy_timeout_ms,
        synchronous: str = "normal",
        wal_autocheckpoint: int | None = None,
    ) -> None:
        """`wal_autocheckpoint=0` keeps SQLite's automatic WAL checkpoint out
        of this connection's commits (the FastAGI worker: a checkpoint inside
        a check is a latency spike); whoever sets it must checkpoint from
        elsewhere (see `Checkpointer`). None keeps SQLite's default (1000)."""
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous.upper()
        self.wal_autocheckpoint = wal_autocheckpoint
        self._identity: tuple[int, int] | None = None
        # (generation, -wal inode, -shm inode) when opened: see store.wholeness
        self._files: tuple[int, tuple[int, int], tuple[int, int]] | None = None
        self._wholeness = None if self.path == ":memory:" else wholeness.files_of(self.path)
        self._space = None if self.path == ":memory:" else space.of(self.path)
        self._conn: sqlite3.Connection | None = None
        self._connect(create)

    # -- lifecycle ------------------------------------------------------------

    def _connect(self, create: bool) -> None:
        memory = self.path == ":memory:"
        if not memory and not create and stat_store(self.path) is None:
            raise StoreError(f"store missing: {self.path} (run an import or `sentinelle init`)")
        problem = None if memory or create else (access_problem(self.path)
                                                 or header_problem(self.path))
        if problem:
            raise StoreError(problem)
        try:
            if memory:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                mode = "rwc" if create else "rw"
                uri = f"file:{pathname2url(os.path.abspath(self.path))}?mode={mode}"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if not memory:
                conn.execute("PRAGMA journal_mode = WAL")
                # The writer that restarts a checkpointed WAL truncates it to
                # this: a burst's WAL does not keep its disk space (a full
                # disk must get it back, see checkpoint.py).
                conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.synchronous == 'FULL' else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.wal_autocheckpoint is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(self.wal_autocheckpoint)}")
            self._conn = conn
            if schema.stored_version(conn) != schema.SCHEMA_VERSION:
                with self._tx():
                    schema.upgrade(conn)
        except sqlite3.Error as exc:
            self.close()
            kind = StoreBusy if is_busy(exc) else StoreError
            why = None if memory or kind is StoreBusy else access_problem(self.path)
            raise kind(why or f"cannot open store {self.path}: {exc}") from exc
        except StoreError:
            self.close()
            raise
        if not memory:
            self._identity = self._file_identity()
            try:
                self._files = wholeness.opened(self)
            except StoreError:
                self.close()
                raise

    @property
    def generation_seen(self) -> int | None:
        return None if self._files is None else self._files[0]

    @property
    def raw_connection(self) -> sqlite3.Connection | None:
        return self._conn

    def drop(self) -> None:
        """Close for a repair of the store's files (store.wholeness), from the
        repairing thread while no transaction runs: reopened at next use."""
        conn, self._conn, self._files = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        self._files = None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def set_busy_timeout(self, ms: int) -> None:
        """How long the next statements wait for a lock (the FastAGI worker
        bounds it by each request's deadline); kept across reconnects."""
        ms = max(0, int(ms))
        if ms == self.busy_timeout_ms:
            return  # a PRAGMA per call is not free on the FastAGI hot path
        self.busy_timeout_ms = ms
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file_identity(self) -> tuple[int, int]:
        """(device, inode) of the file at the store's path now; StoreError
        (and the connection closed) when it cannot be seen or is gone."""
        try:
            st = stat_store(self.path)
        except StoreError:
            self.close()
            raise
        if st is None:
            self.close()
            raise StoreError(f"store file disappeared: {self.path}")
        return st.st_dev, st.st_ino

    @property
    def conn(self) -> sqlite3.Connection:
        """Reconnect lazily after a fault, and refuse a file deleted or replaced
        under us (it would silently swallow records)."""
        if self._identity is not None and self._file_identity() != self._identity:
            self.close()
            self._identity = None
        if self._conn is not None and self._files is not None and self._wholeness is not None \
                and not wholeness.check(self, self._wholeness, *self._files):
            self.drop()  # opened before a repair: reopened on the files at the paths
        if self._conn is None:
            self._connect(create=False)
        assert self._conn is not None
        return self._conn

    # -- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        with self._gate():
            conn = self._conn if self._conn is not None else self.conn
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                if self._files is not None and self._wholeness is not None:
                    wholeness.recheck(self, self._wholeness)  # a repair since the check
                if immediate and self._space is not None and self._space.watched:
                    space.admit(conn, self._space)  # room left for the checkpoint
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def _gate(self) -> contextlib.AbstractContextManager[None]:
        """Shared with every transaction of the process on this store; a
        repair of its files takes it exclusively (store.wholeness)."""
        if self._wholeness is None:
            return contextlib.nullcontext()
        return self._wholeness.gate.shared()

    @contextlib.contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction whose SQLite errors become StoreError (fail closed).
        `immediate` takes the write lock first: a read-then-write can never
        be overtaken by another writer between its read and its write."""
        try:
            self.conn  # noqa: B018 - identity check and lazy reconnect
            with self._tx(immediate) as conn:
                yield conn
        except sqlite3.Error as exc:
            self._drop_after(exc)
            kind = StoreBusy if is_busy(exc) else StoreError
            if kind is StoreBusy:
                self.busy_raised += 1
            raise kind(f"store error ({self.path}): {exc}") from exc

    def _drop_after(self, exc: sqlite3.Error) -> None:
        """Locks are transient; anything else may be a replaced or corrupt file:
        reopen next time rather than keep a poisoned connection. A full disk
        has every later write measure the room left (store.space)."""
        if self._space is not None and space.is_full(exc):
            self._space.watched = True
        if not is_busy(exc):
            self.close()

    # -- where SQLite differs (see store.database) ------------------------------

    def lock_key(self, conn: Tx, professional: str, e164: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already took the one write lock."""

    def execute_late(self, conn: Tx, sql: str, parameters: Any) -> None:
        conn.execute(sql, parameters)

    def json_text(self, column: str, *path: str) -> str:
        return f"json_extract({column}, '$.{'.'.join(path)}')"

    def snapshot_ddl(self, table: str) -> str:
        # INTEGER PRIMARY KEY is the rowid itself: a probe is one B-tree descent.
        return f"CREATE TABLE {table} (e164 INTEGER PRIMARY KEY)"

    def load_numbers(self, conn: Tx, table: str, numbers: Sequence[int]) -> None:
        # Bound as one JSON array: one statement instead of one bind per row.
        data = "[" + ",".join(map(str, map(int, numbers))) + "]"
        conn.execute(f"INSERT OR IGNORE INTO {table} (e164)"  # noqa: S608 - int id
                     " SELECT value FROM json_each(?)", (data,))

    def seal_snapshot(self, conn: Tx, table: str) -> None:
        """Nothing left to do: the table was keyed from its first row."""

    def drop_replaced_at_switch(self) -> bool:
        # A reader holds its WAL snapshot and SQLite's schema lock: a DROP
        # waits for no one and no reader is left probing a vanished table.
        return True

    def secure_delete(self, conn: Tx, on: bool | None) -> None:
        mode = "FAST" if on is None else ("ON" if on else "OFF")
        conn.execute(f"PRAGMA secure_delete = {mode}")

    def stream(self, conn: Tx, sql: str, params: Any, chunk: int) -> tuple[list[str],
                                                                          Iterator[Any]]:
        cur = conn.execute(sql, params)

        def rows() -> Iterator[Any]:
            while batch := cur.fetchmany(chunk):
                yield from batch

        return [c[0] for c in cur.description], rows()

    def copy_rows(self, conn: Tx, table: str, columns: Sequence[str],
                  rows: Iterable[Sequence[Any]]) -> None:
        assert isinstance(conn, sqlite3.Connection)
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)})"  # noqa: S608 - fixed names
                         f" VALUES ({', '.join('?' * len(columns))})", rows)

    def restart_ids(self, conn: Tx, table: str) -> None:
        """Nothing to do: a rowid is always above the largest one in the table."""

    def check_integrity(self) -> list[str]:
        """SQLite's own check of the file (every page, index and constraint);
        the problems found, empty when the file is sound."""
        with self.transaction(immediate=False) as conn:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    # -- the WAL ----------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it, so erased rows do
        not linger in old WAL frames. False if readers kept it from finishing."""
        try:
            conn = self.conn
            with self._gate():
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"store error ({self.path}): {exc}") from exc
        return bool(busy == 0)

    def wal_checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """One WAL checkpoint: (busy, frames in the WAL, frames checkpointed).
        PASSIVE never waits and never blocks writers."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(mode)
        try:
            conn = self.conn
            with self._gate():
                busy, log_frames, done = conn.execute(
                    f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            self._drop_after(exc)
            raise StoreError(f"store error ({self.path}): {exc}") from exc
        return int(busy), int(log_frames), int(done)
