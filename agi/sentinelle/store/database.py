"""What the store's jobs (hot path, facts, outcomes, snapshots, evidence,
retention, audit) need from a database engine, and where engines differ.

Each job is written once, in SQL both engines run: `?` and `:name`
parameters, `INSERT ... ON CONFLICT`, `RETURNING id`, `count(*) FILTER`,
timestamps as fixed-format UTC text (so comparing text is comparing time,
on both). What cannot be said the same way (how a key is serialised across
processes, how a Bloctel batch is bulk-loaded, a JSON field, how deleted
bytes are scrubbed) is a method here, which `SqliteDatabase` and
`PostgresDatabase` implement. One copy of each query means the two backends
cannot drift apart in meaning: the same tests run on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A connection inside one transaction: statements with `?` or `:name` parameters."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...


def key_lock_id(professional: str, e164: str) -> int:
    """A signed 64-bit id for the (professional, callee) pair, the same on every
    host and process (Python's hash() is salted per process): the key of
    PostgreSQL's advisory lock that serialises check-and-record (R-30).
    hashlib is imported here: it loads OpenSSL (~3 ms), which a classic
    AGI process on SQLite never needs."""
    import hashlib

    digest = hashlib.blake2b(f"{professional}\x00{e164}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Database:
    """The engine seam under the store's jobs. Methods raise NotImplementedError
    here; a backend class placed before this one in the MRO provides them."""

    path: str
    #: whether `transaction(immediate=True)` already serialises every writer
    #: (SQLite's one write lock); if not, `lock_key` does it per key.
    serialises_writers: bool = True
    #: how many times this connection met a lock it did not wait out
    #: (StoreBusy raised), whatever the caller then did with the error: the
    #: FastAGI server's no-wait try on the event loop reads it, so that
    #: work which turned StoreBusy into an answer is still run again where
    #: it may wait (a refusal must not be answered "not recorded" because
    #: of a lock the store thread would have waited out).
    busy_raised: int = 0

    def transaction(self, immediate: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def run(self, fn: Callable[[Tx], T], immediate: bool = False) -> T:
        """For tests and benchmarks that need a raw statement; the program
        itself goes through the store's named methods."""
        with self.transaction(immediate=immediate) as conn:
            return fn(conn)

    # -- where the engines differ ----------------------------------------------

    def lock_key(self, conn: Tx, professional: str, e164: str) -> None:
        """Serialise this transaction with every other one on the same key,
        whatever process or host runs it (R-30: check and record are one step)."""
        raise NotImplementedError

    def execute_late(self, conn: Tx, sql: str, parameters: Any) -> None:
        """Run a statement whose result is not read, at the latest before the
        commit (PostgreSQL sends it with the next one: one round trip less)."""
        raise NotImplementedError

    def json_text(self, column: str, *path: str) -> str:
        """An SQL expression: the text at `path` in the JSON of `column`."""
        raise NotImplementedError

    def snapshot_ddl(self, table: str) -> str:
        """CREATE TABLE for one Bloctel snapshot: numbers as 64-bit integer keys."""
        raise NotImplementedError

    def load_numbers(self, conn: Tx, table: str, numbers: Sequence[int]) -> None:
        """Bulk-load one batch of numbers into a snapshot table; duplicates harmless."""
        raise NotImplementedError

    def seal_snapshot(self, conn: Tx, table: str) -> None:
        """Make a loaded snapshot table ready for probes (keys, statistics)."""
        raise NotImplementedError

    def drop_replaced_at_switch(self) -> bool:
        """Whether a replaced snapshot's table may be dropped in the switch's own
        transaction (no reader can still be about to probe it)."""
        raise NotImplementedError

    def secure_delete(self, conn: Tx, on: bool | None) -> None:
        """Ask the engine to overwrite what is deleted next (None: its default)."""
        raise NotImplementedError

    def stream(self, conn: Tx, sql: str, params: Any, chunk: int) -> tuple[list[str],
                                                                          Iterator[Any]]:
        """Columns and rows of a large result, read `chunk` rows at a time."""
        raise NotImplementedError

    def copy_rows(self, conn: Tx, table: str, columns: Sequence[str],
                  rows: Iterable[Sequence[Any]]) -> None:
        """Append many rows to `table` as fast as the engine allows (PostgreSQL:
        COPY). Plain appends: a conflicting row fails the whole transaction."""
        raise NotImplementedError

    def restart_ids(self, conn: Tx, table: str) -> None:
        """After rows were written with explicit ids: new rows get ids above them."""
        raise NotImplementedError
