"""Which store a configuration names, and opening it.

`store.url` names a PostgreSQL store (several PBXs); without it the store
is the SQLite file at `store.path`. Every part of sentinelle opens its store
here, so a site switches backends in its config and nowhere else. The
PostgreSQL driver is imported only when used: a per-call classic AGI on a
SQLite store must not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias

from sentinelle.store.sqlite import Store

if TYPE_CHECKING:
    from sentinelle.store.postgres import PgStore

# Either backend: the same jobs over another engine. mypy checks that a
# caller only uses what both have.
AnyStore: TypeAlias = "Store | PgStore"


class StoreSettings(Protocol):
    """Where the store is and how to open it (config.StoreConfig fits)."""

    @property
    def path(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def password_file(self) -> str: ...
    @property
    def pool_size(self) -> int: ...
    @property
    def busy_timeout_ms(self) -> int: ...
    @property
    def synchronous(self) -> str: ...


def is_postgres(settings: StoreSettings) -> bool:
    return bool(getattr(settings, "url", ""))


def open_store(settings: StoreSettings, *, create: bool = False,
               busy_timeout_ms: int | None = None, wal_autocheckpoint: int | None = None,
               pool_size: int | None = None) -> AnyStore:
    """The store, opened (and created or upgraded if `create`). Raises
    StoreError when it cannot be: the caller blocks (fail closed)."""
    wait_ms = settings.busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
    if is_postgres(settings):
        from sentinelle.store.postgres import PgStore

        return PgStore(settings.url, create=create, busy_timeout_ms=wait_ms,
                       password_file=settings.password_file,
                       pool_size=pool_size or settings.pool_size)
    return Store(settings.path, create=create, busy_timeout_ms=wait_ms,
                 synchronous=settings.synchronous, wal_autocheckpoint=wal_autocheckpoint)
