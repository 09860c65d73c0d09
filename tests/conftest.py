"""Shared fixtures: a real config file, a real SQLite store in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinelle.config import Config, load_config
from sentinelle.store import Store
from tests.helpers.testconfig import CONFIG


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "sentinelle.toml"
    path.write_text(CONFIG)
    return path

@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(str(config_path))

@pytest.fixture
def store(config: Config) -> Store:
    s = Store(config.store.path, create=True)
    yield s
    s.close()
