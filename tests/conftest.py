"""Shared fixtures: a real config file, a real SQLite store in tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sentinelle.config import Config, load_config
from sentinelle.store import Store

sys.path.insert(0, str(Path(__file__).parent))  # fakeasterisk, pbx helpers

CONFIG = """
[store]
path = "sentinelle.db"

[policy]
regime = "auto"
consent_max_age_days = 365
foreign = "block"

[professionals.acme]
caller_ids = ["0142000000"]

[professionals.other]

[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"

[campaigns.promo2]
professional = "acme"

[campaigns.manual]
professional = "acme"
dialing = "manual"

[campaigns.press]
professional = "acme"
purpose = "press"

[campaigns.service]
professional = "acme"
purpose = "service"

[campaigns.elsewhere]
professional = "other"
"""

NPV = "0162000000"  # an Arcep multi-purpose number: valid caller ID for automated dialing


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
