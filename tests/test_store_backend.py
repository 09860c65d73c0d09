"""The store's boundary: the `Backend` protocol the SQLite `Store`
implements (a PostgreSQL backend will implement it next), and no SQL
driver anywhere else in the program."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from sentinelle.store import Backend, Store
from sentinelle.store.backend import AuditSource

AGI = Path(__file__).resolve().parent.parent / "agi" / "sentinelle"
DRIVERS = {"sqlite3", "sqlite_utils"}


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


def test_audit_view_implements_the_audit_source_protocol(store):
    with store.audit_view() as view:
        for name in _members(AuditSource):
            theirs = inspect.signature(getattr(AuditSource, name))
            ours = inspect.signature(getattr(view, name))
            assert list(ours.parameters) == list(theirs.parameters)[1:], name


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_the_store_imports_a_database_driver():
    """All SQL lives in store/: a module elsewhere that talks to SQLite would
    bypass the fail-closed errors, the file identity check and the backend seam."""
    store_pkg = AGI / "store"
    offenders = [f"{path.relative_to(AGI)}: {', '.join(sorted(_imports(path) & DRIVERS))}"
                 for path in sorted(AGI.rglob("*.py"))
                 if store_pkg not in path.parents and _imports(path) & DRIVERS]
    assert not offenders, offenders
    assert _imports(store_pkg / "connection.py") & DRIVERS  # the scan does see imports
