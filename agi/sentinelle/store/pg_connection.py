"""One PostgreSQL store shared by several PBXs: connections, transactions,
failures, and what PostgreSQL does differently from SQLite.

Why the choices below:
- A connection pool (psycopg_pool): it reconnects in the background after
  the server restarts or fails over, so `serve` recovers by itself; a
  check waits for a connection at most its own busy timeout, then blocks
  with SYS-STORE (fail closed), never longer than the request's deadline.
- Check-and-record is serialised per (professional, callee) by
  `pg_advisory_xact_lock` on a 64-bit hash of the key, taken first in the
  transaction (READ COMMITTED: every statement after it sees every commit
  made before it got the lock). Every process on every host agrees on the
  key, so two sites never both see three attempts (R-30). No SERIALIZABLE
  with retries: it collapses when many agents hit the same callees.
- The recorded instants come from the PBX host that took the decision (the
  FastAGI request's clock), written as text in the same fixed UTC format as
  SQLite's, so both backends order and compare them the same way. Keep the
  PBX hosts on NTP: a host one minute off files its attempts one minute off
  (README "Several PBXs").
- Statements use client-side parameter binding (psycopg.ClientCursor): the
  store's SQL, written once for both engines, uses `?` and `:name`
  parameters, which are turned into psycopg's `%s`/`%(name)s` once per
  statement text.
- The password comes from `password_file` or libpq's own environment
  (PGPASSWORD, ~/.pgpass); it never appears in `path`, logs or errors.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from sentinelle.store import pg_schema
from sentinelle.store.database import Cursor, Database, Tx, key_lock_id
from sentinelle.store.errors import StoreBusy, StoreError

# The pool retries a lost connection with a growing pause (1 s, 2 s, ...) and
# gives up after this long; the next check that needs a connection starts a
# new attempt at once. A short chain is what keeps the recovery after a long
# outage within about this long of the server's return, not minutes.
RECONNECT_GIVE_UP_S = 2.0

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str, with_params: bool) -> str:
    """The store's SQL (`?` and `:name` parameters) in psycopg's placeholders."""
    if not with_params:
        return sql
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%")).replace("?", "%s")


def redacted(url: str) -> str:
    """The URL without its password, for messages and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PgTx:
    """A pooled connection inside one transaction, speaking the store's SQL.

    Statements whose result nobody reads (the advisory lock, the last update
    of a check) are held and sent with the next statement or the COMMIT, in
    one exchange: each exchange is a network round trip, the hot path's main
    cost on PostgreSQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self._held: list[str] = []

    def hold(self, sql: str, parameters: Any = None) -> None:
        """Run `sql` before the next statement, in the same exchange."""
        with_params = bool(parameters) or isinstance(parameters, dict)
        cur = self.raw.cursor()
        assert isinstance(cur, psycopg.ClientCursor)
        self._held.append(cur.mogrify(pg_sql(sql, True), parameters) if with_params else sql)

    def execute(self, sql: str, parameters: Any = None, /) -> Cursor:
        with_params = bool(parameters) or isinstance(parameters, dict)
        if not self._held:
            return self.raw.execute(pg_sql(sql, with_params),
                                    parameters if with_params else None)
        cur = self.raw.cursor()
        assert isinstance(cur, psycopg.ClientCursor)
        text = cur.mogrify(pg_sql(sql, True), parameters) if with_params else sql
        held, self._held = self._held, []
        cur.execute("; ".join([*held, text]))
        while cur.nextset():  # the caller reads the last statement's result
            pass
        return cur


def store_error(exc: BaseException, where: str) -> StoreError:
    """What a psycopg failure means for a check: retry (busy) or block (SYS-STORE)."""
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected
                  | psycopg.errors.SerializationFailure):
        return StoreBusy(f"store busy ({where}): {_first_line(exc)}")
    if isinstance(exc, PoolTimeout):
        return StoreError(f"store unreachable ({where}): no connection to PostgreSQL")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StoreError(f"store read-only ({where}): a standby, not the primary?")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StoreError(f"store too slow ({where}): statement timeout")
    return StoreError(f"store error ({where}): {_first_line(exc)}")


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresDatabase(Database):
    """A pool of connections to a sentinelle PostgreSQL store; thread-safe."""

    serialises_writers = False

    def __init__(
        self,
        url: str,
        *,
        create: bool = False,
        busy_timeout_ms: int = 1500,
        password_file: str = "",
        pool_size: int = 4,
        connect_timeout_s: int = 3,
    ) -> None:
        self.url = url
        self.path = redacted(url)
        self.busy_timeout_ms = max(0, int(busy_timeout_ms))
        # Per thread (the FastAGI server runs several checks at once on one
        # store): a caller with a deadline sets its own through
        # set_busy_timeout, which bounds statements too; without one, an
        # export may run long.
        self._timeouts = threading.local()
        kwargs: dict[str, Any] = {"autocommit": True, "cursor_factory": psycopg.ClientCursor,
                                  "connect_timeout": connect_timeout_s,
                                  "application_name": "sentinelle"}
        if password_file:
            try:
                kwargs["password"] = Path(password_file).read_text().strip()
            except OSError as exc:
                raise StoreError(f"store password file unreadable: {password_file}: "
                                 f"{exc.strerror or exc}") from None
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), kwargs=kwargs, open=False,
            name="sentinelle", reconnect_timeout=RECONNECT_GIVE_UP_S)
        self._pool.open(wait=False)
        try:
            with self.transaction() as tx:
                pg_schema.ensure(tx, create=create)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                self._pool.close(timeout=1.0)
            self._pool = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def set_busy_timeout(self, ms: int) -> None:
        """How long the next transactions wait for a connection or a lock, and
        (set here, by a caller with a deadline) how long a statement may run."""
        self._timeouts.wait_ms = max(1, int(ms))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[PgTx]:
        """One transaction on a pooled connection; psycopg failures leave as
        StoreError. Waiting for a connection, a lock or a statement is bounded
        by the busy timeout, so a slow or absent server blocks the call in time.
        `immediate` (a write) runs READ COMMITTED behind the key's advisory
        lock; a read gets one REPEATABLE READ snapshot (an export or an audit
        sees one consistent state while the PBXs keep writing)."""
        if self._pool is None:
            raise StoreError(f"store closed: {self.path}")
        bounded: int | None = getattr(self._timeouts, "wait_ms", None)
        wait_ms = bounded or max(self.busy_timeout_ms, 1)
        begin = ("BEGIN" if immediate else "BEGIN ISOLATION LEVEL REPEATABLE READ") + (
            f"; SET LOCAL lock_timeout = {wait_ms}"
            f"; SET LOCAL statement_timeout = {bounded or 0}")
        try:
            conn = self._begin(self._pool, begin, wait_ms / 1000)
        except (psycopg.Error, PoolTimeout) as exc:
            raise store_error(exc, self.path) from exc
        try:
            tx = PgTx(conn)
            yield tx
            tx.execute("COMMIT")
        except (psycopg.Error, PoolTimeout) as exc:
            _rollback(conn)
            raise store_error(exc, self.path) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            self._pool.putconn(conn)

    @staticmethod
    def _begin(pool: ConnectionPool[psycopg.Connection[Any]], begin: str,
               wait_s: float) -> psycopg.Connection[Any]:
        """A pooled connection with `begin` run on it. A connection the server
        dropped (a restart, a failover) is only found out when used: it is
        handed back (the pool discards it) and the next one is tried, as long
        as the wait allows; nothing was done on it, so nothing is lost."""
        deadline = time.monotonic() + wait_s
        while True:
            conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            try:
                conn.execute(begin)
                return conn
            except psycopg.OperationalError:
                pool.putconn(conn)
                if time.monotonic() >= deadline:
                    raise

    # -- where PostgreSQL differs (see store.database) --------------------------

    def lock_key(self, conn: Tx, professional: str, e164: str) -> None:
        # Sent with the history read that follows: one exchange for both.
        assert isinstance(conn, PgTx)
        conn.hold(f"SELECT pg_advisory_xact_lock({int(key_lock_id(professional, e164))})")

    def execute_late(self, conn: Tx, sql: str, parameters: Any) -> None:
        assert isinstance(conn, PgTx)
        conn.hold(sql, parameters)

    def json_text(self, column: str, *path: str) -> str:
        return f"(({column})::jsonb #>> '{{{','.join(path)}}}')"

    def snapshot_ddl(self, table: str) -> str:
        # Loaded without an index (COPY at full speed), keyed when sealed.
        return f"CREATE TABLE {table} (e164 BIGINT NOT NULL)"

    def load_numbers(self, conn: Tx, table: str, numbers: Sequence[int]) -> None:
        assert isinstance(conn, PgTx)
        with conn.raw.cursor().copy(f"COPY {table} (e164) FROM STDIN") as copy:
            copy.write("".join(f"{int(n)}\n" for n in numbers))

    def seal_snapshot(self, conn: Tx, table: str) -> None:
        """Key the loaded table; a number loaded twice is kept once."""
        try:
            conn.execute("SAVEPOINT seal")
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (e164)")
        except psycopg.errors.UniqueViolation:
            conn.execute("ROLLBACK TO SAVEPOINT seal")
            conn.execute(f"DELETE FROM {table} a USING {table} b"  # noqa: S608 - int id
                         " WHERE a.e164 = b.e164 AND a.ctid < b.ctid")
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (e164)")
        conn.execute(f"ANALYZE {table}")

    def drop_replaced_at_switch(self) -> bool:
        # Each statement sees the latest commit: a check that has just read
        # the old snapshot's id would probe a table dropped under it.
        return False

    def secure_delete(self, conn: Tx, on: bool | None) -> None:
        """Nothing per statement: PostgreSQL frees deleted rows by VACUUM
        (`checkpoint` runs one after an erasure)."""

    def stream(self, conn: Tx, sql: str, params: Any, chunk: int) -> tuple[list[str],
                                                                          Iterator[Any]]:
        assert isinstance(conn, PgTx)
        cur = conn.raw.cursor(name="sentinelle_stream")
        cur.itersize = chunk
        cur.execute(pg_sql(sql, True), params)
        columns = [c.name for c in cur.description or ()]

        def rows() -> Iterator[Any]:
            try:
                while batch := cur.fetchmany(chunk):
                    yield from batch
            finally:
                with contextlib.suppress(psycopg.Error):
                    cur.close()

        return columns, rows()

    def copy_rows(self, conn: Tx, table: str, columns: Sequence[str],
                  rows: Iterable[Sequence[Any]]) -> None:
        assert isinstance(conn, PgTx)
        with conn.raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def restart_ids(self, conn: Tx, table: str) -> None:
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                     f" (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)")

    def check_integrity(self) -> list[str]:
        """What PostgreSQL's own guarantees leave to check: the schema this
        sentinelle expects, the decision log's append-only trigger, and a
        table behind every current Bloctel snapshot."""
        with self.transaction(immediate=False) as tx:
            return pg_schema.problems(tx)

    def checkpoint(self) -> bool:
        """After an erasure: VACUUM the tables that held the number, so its
        deleted rows are freed; old WAL segments age out on their own."""
        if self._pool is None:
            raise StoreError(f"store closed: {self.path}")
        try:
            with self._pool.connection(timeout=max(self.busy_timeout_ms, 1) / 1000) as conn:
                for table in pg_schema.PERSONAL_TABLES:
                    conn.execute(f"VACUUM {table}")
        except (psycopg.Error, PoolTimeout) as exc:
            raise store_error(exc, self.path) from exc
        return True
