"""A store connection that heals itself, for the long-running services.

`sentinelle serve` and `listen` run for months beside Asterisk; the store
under them may be missing at start, replaced, or hit a fault that makes the
`Store` close its connection (it marks itself poisoned: `is_open` is False).
A service must neither crash nor keep using a dead handle, and must recover
by itself once the file is fixed. This handle opens the store lazily, drops
one that the store marked poisoned and opens a fresh one next time; when the
store cannot be opened, the caller gets the StoreError (its text is the
reason of a fail-closed SYS-STORE decision).

Opening, healing and closing are serialised by a lock of the handle: the
FastAGI server on PostgreSQL uses one handle from several threads (the
store itself, a connection pool, is thread-safe); on SQLite it serialises
its callers itself, and the ARI listener uses it from its one store thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sentinelle.store.backends import AnyStore, StoreSettings, open_store

T = TypeVar("T")


class StoreHandle:
    def __init__(self, settings: StoreSettings, *, wal_autocheckpoint: int | None = None) -> None:
        """`wal_autocheckpoint` is passed to every Store opened (0 when
        another thread checkpoints the WAL, see `Checkpointer`)."""
        self.settings = settings
        self.wal_autocheckpoint = wal_autocheckpoint
        self.opened = 0  # stores opened so far: a reopen after a fault counts too
        self._store: AnyStore | None = None
        self._lock = threading.RLock()

    @property
    def is_open(self) -> bool:
        """A usable store is at hand without opening one."""
        return self._store is not None and self._store.is_open

    def get(self, busy_timeout_ms: int | None = None) -> AnyStore:
        """The store, opened now if needed. `busy_timeout_ms` (default: the
        settings') is how long its statements wait for a lock (the store
        skips the change when it is the same). Raises StoreError when the
        store cannot be opened."""
        wait_ms = self.settings.busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        with self._lock:
            store = self.peek(wait_ms)
            if store is None:
                store = open_store(self.settings, busy_timeout_ms=wait_ms,
                                   wal_autocheckpoint=self.wal_autocheckpoint)
                self._store = store
                self.opened += 1
            return store

    def peek(self, busy_timeout_ms: int | None = None) -> AnyStore | None:
        """The open store, or None: never opens one (opening may wait on a
        lock or a migration, which the event loop must not)."""
        with self._lock:
            self.heal()
            store = self._store
        if store is not None and busy_timeout_ms is not None:
            store.set_busy_timeout(busy_timeout_ms)
        return store

    def run(self, fn: Callable[[AnyStore], T], busy_timeout_ms: int | None = None) -> T:
        """`fn(store)`, then drop the store if `fn` left it poisoned, whether
        it returned or raised."""
        try:
            return fn(self.get(busy_timeout_ms))
        finally:
            self.heal()

    def heal(self) -> None:
        """Forget a store that closed itself after a fault: the next `get`
        opens a fresh one rather than keep a poisoned connection."""
        with self._lock:
            if self._store is not None and not self._store.is_open:
                self._store = None

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
