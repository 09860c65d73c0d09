"""The self-healing store handle of the services (store/handle.py), on real
SQLite files: a missing store, a store replaced under it, lock waits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinelle.config import StoreConfig
from sentinelle.store import Store, StoreError
from sentinelle.store.handle import StoreHandle


def _settings(tmp_path: Path) -> StoreConfig:
    return StoreConfig(path=str(tmp_path / "handle.db"), busy_timeout_ms=1500)


def _pragma(store: Store, name: str) -> int:
    return int(store.conn.execute(f"PRAGMA {name}").fetchone()[0])


def test_opens_lazily_and_fails_with_the_reason_until_the_store_exists(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    handle = StoreHandle(settings)
    assert handle.opened == 0 and not handle.is_open
    with pytest.raises(StoreError, match="store missing"):
        handle.get()
    Store(settings.path, create=True).close()
    assert handle.run(lambda s: s.count("decisions")) == 0
    assert handle.is_open and handle.opened == 1
    handle.close()
    assert not handle.is_open


def test_a_poisoned_store_is_dropped_and_a_fresh_one_opened(tmp_path: Path) -> None:
    """The file deleted under a running service: that call fails (fail
    closed), the handle forgets the dead store, and once the file is back the
    next call opens a new one without anybody restarting anything."""
    settings = _settings(tmp_path)
    Store(settings.path, create=True).close()
    handle = StoreHandle(settings)
    first = handle.get()
    os.remove(settings.path)
    with pytest.raises(StoreError, match="disappeared"):
        handle.run(lambda s: s.count("decisions"))
    assert not first.is_open and not handle.is_open
    assert handle.peek() is None
    Store(settings.path, create=True).close()
    second = handle.get()
    assert second is not first and second.count("decisions") == 0
    assert handle.opened == 2


def test_peek_never_opens(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    Store(settings.path, create=True).close()
    handle = StoreHandle(settings)
    assert handle.peek(0) is None and handle.opened == 0
    store = handle.get()
    assert handle.peek(0) is store


def test_busy_timeout_applied_when_it_changes(tmp_path: Path) -> None:
    """A PRAGMA per check is not free on the FastAGI hot path: the store
    sends one only when the timeout asked for differs from its own."""
    settings = _settings(tmp_path)
    Store(settings.path, create=True).close()
    handle = StoreHandle(settings, wal_autocheckpoint=0)
    store = handle.get()
    assert _pragma(store, "busy_timeout") == 1500
    assert _pragma(store, "wal_autocheckpoint") == 0
    sent: list[str] = []
    store.conn.set_trace_callback(sent.append)

    def pragmas() -> list[str]:
        return [s for s in sent if s.startswith("PRAGMA busy_timeout =")]

    for _ in range(3):
        assert handle.get(0) is store
    assert pragmas() == ["PRAGMA busy_timeout = 0"]
    handle.get(250)
    assert pragmas()[1:] == ["PRAGMA busy_timeout = 250"]
    handle.get()  # the settings' default again
    assert pragmas()[2:] == ["PRAGMA busy_timeout = 1500"]
    assert _pragma(store, "busy_timeout") == 1500


def test_run_keeps_a_healthy_store_after_an_error(tmp_path: Path) -> None:
    """An error that leaves the connection open (a bad query, a lock) is the
    caller's: the store is kept, not reopened."""
    settings = _settings(tmp_path)
    Store(settings.path, create=True).close()
    handle = StoreHandle(settings)
    with pytest.raises(ValueError):
        handle.run(lambda s: s.count("no such table"))
    assert handle.is_open
    handle.run(lambda s: s.count("decisions"))
    assert handle.opened == 1
