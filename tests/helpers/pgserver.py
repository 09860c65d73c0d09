"""PostgreSQL for the tests: throwaway clusters and a fresh schema per test.

The clusters are scripts/lib/pgcluster.py's (own data directory, port and
socket directory, run as the postgres user), so a test never touches a
cluster of the machine's own."""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from sentinelle.config import StoreConfig

REPO = Path(__file__).resolve().parents[2]


def pgcluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pgcluster", REPO / "scripts/lib/pgcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def throwaway_cluster(prefix: str = "sentinelle-pg-") -> Iterator[tuple[ModuleType, Path, str]]:
    """(the pgcluster module, the cluster's directory, its URL), stopped and
    removed at the end. Not under pytest's tmp dir: the postgres user must
    reach the data directory."""
    cluster = pgcluster()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield cluster, base, cluster.start(base)
    finally:
        cluster.stop(base)


def pg_schema_url(server: str) -> str:
    """A URL whose search_path is a new, empty schema: a fresh store per test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server else "?"
    return f"{server}{sep}options=-csearch_path%3D{schema}"


def config_text(backend: str, request: Any, text: str) -> str:
    """`text` (a config with a [store] table) pointed at a fresh PostgreSQL
    schema when the backend is PostgreSQL (the SQLite path stays, unused)."""
    if backend != "postgresql":
        return text
    url = pg_schema_url(request.getfixturevalue("pg_server"))
    return text.replace("[store]\n", f'[store]\nurl = "{url}"\n', 1)


def fresh_store(backend: str, request: Any, sqlite_path: Path) -> StoreConfig:
    """Where a test opens a store of its own: the SQLite file, or a new
    PostgreSQL schema."""
    if backend != "postgresql":
        return StoreConfig(path=str(sqlite_path))
    return StoreConfig(url=pg_schema_url(request.getfixturevalue("pg_server")))
