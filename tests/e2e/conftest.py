"""End-to-end fixtures: a real Asterisk (tests/pbx), a real `sentinelle serve`
process, real sipp. Nothing here is skipped: if the PBX root cannot be built
or Asterisk cannot start, the tests fail with the harness's message."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinelle.logs import read_events
from tests.helpers.hardening_support import FROZEN, NPV, Serve
from tests.pbx import Pbx


class Service(Serve):
    """`sentinelle serve` for the end-to-end tests (the subprocess handling is
    hardening_support.Serve's), with the helpers these tests use."""

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True,  # type: ignore[override]
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = super().cli(*args, timeout=timeout)
        if check and r.returncode not in (0, 1):
            raise AssertionError(f"sentinelle {' '.join(args)} failed: {r.stderr}")
        return r

    def check_json(self, number: str, at: str = FROZEN) -> dict:
        r = self.cli("check", number, "--campaign", "promo", "--caller-id", NPV, "--at", at,
                     "--json")
        return json.loads(r.stdout)

    def consent(self, number: str) -> None:
        self.cli("consent", "add", number, "--campaign", "promo", "--source", "e2e-web-form",
                 "--at", "2026-11-01T10:00:00+01:00")

    def decisions(self) -> list[dict]:
        """Structured decision log lines written by the service."""
        return read_events(self.log.read_text().splitlines(), "decision")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    svc.cli("init")
    yield svc
    svc.stop()


@pytest.fixture
def pbx(service: Service) -> Iterator[Pbx]:
    with Pbx(agi_url=service.agi_url, campaign="promo") as p:
        yield p


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (debootstrap, chroot, namespaces)")
