"""Shared fixtures: a real config file and a real store, on both backends.

Every test that takes the `config` or `store` fixture (directly or through
another fixture) runs twice: on a SQLite file in tmp_path, and on a
PostgreSQL schema of its own in a throwaway cluster (scripts/test starts
one and exports SENTINELLE_TEST_PG_URL; without it the session starts its
own with scripts/lib/pgcluster.py). A test about SQLite's own file faults
(WAL, header, locks) is marked `sqlite_only`, one about what only
PostgreSQL does `postgres_only`; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinelle.config import Config, load_config
from sentinelle.store import AnyStore, open_store
from tests.helpers.pgserver import config_text, throwaway_cluster
from tests.helpers.testconfig import CONFIG

BACKENDS = ("sqlite", "postgresql")
PG_URL_ENV = "SENTINELLE_TEST_PG_URL"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: about SQLite's own files, not a backend feature")
    config.addinivalue_line("markers", "postgres_only: about what only the PostgreSQL backend does")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = list(BACKENDS)
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = ["sqlite"]
        elif metafunc.definition.get_closest_marker("postgres_only"):
            backends = ["postgresql"]
        metafunc.parametrize("backend", backends)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL database the tests may fill (one schema each)."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        yield url
        return
    with throwaway_cluster() as (_, _, url):
        yield url


@pytest.fixture
def config_path(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Path:
    path = tmp_path / "sentinelle.toml"
    path.write_text(config_text(backend, request, CONFIG))
    return path


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(str(config_path))


@pytest.fixture
def store(config: Config) -> Iterator[AnyStore]:
    s = open_store(config.store, create=True)
    yield s
    s.close()
