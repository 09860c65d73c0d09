"""The store's boundary: the `Backend` protocol the SQLite `Store`
implements (a PostgreSQL backend will implement it next)."""

from __future__ import annotations

import inspect

from sentinelle.store import Backend, Store


def _members(protocol: type) -> list[str]:
    public = [name for name in vars(protocol) if not name.startswith("_")]
    return public + [name for name in ("__enter__", "__exit__") if name in vars(protocol)]


def test_store_implements_the_backend_protocol(store):
    assert isinstance(store, Backend)
    for name in _members(Backend):
        assert hasattr(store, name), name
        if inspect.isfunction(getattr(Backend, name)):
            theirs = inspect.signature(getattr(Backend, name))
            ours = inspect.signature(getattr(Store, name))
            assert list(ours.parameters) == list(theirs.parameters), name
