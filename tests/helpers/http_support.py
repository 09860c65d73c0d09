"""A real `sentinelle serve` with its HTTP API on, a real store, and httpx
clients holding the tokens of three API clients (tests/test_http_*.py)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.hardening_support import FROZEN, NPV, Serve, free_port

TOKENS = {
    "crm": ("consents:write,refusals:write,check:read,scrub", "crm-" + "c" * 40),
    "dialer": ("refusals:write", "dialer-" + "d" * 40),
    "reader": ("check:read", "reader-" + "r" * 40),
}
__all__ = ["FROZEN", "NPV", "TOKENS", "HttpServe", "http_service"]


class HttpServe(Serve):
    def __init__(self, workdir: Path, *, http_extra: str = "", **kw) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        tokens = workdir / "tokens"
        tokens.write_text("# name scopes token\n" + "".join(
            f"{name} {scopes} {token}\n" for name, (scopes, token) in TOKENS.items()))
        os.chmod(tokens, 0o600)
        self.http_port = free_port()
        extra = kw.pop("extra", "")
        super().__init__(workdir, extra=f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
                                        f'tokens_file = "{tokens}"\n{http_extra}\n{extra}', **kw)
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    def start(self, *args: str) -> HttpServe:
        super().start(*args)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                return self
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"HTTP API did not listen: {self.log.read_text()}") from exc
                time.sleep(0.02)

    def client(self, name: str | None = "crm", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[name][1]}"} if name else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kw)


@contextmanager
def http_service(workdir: Path, **kw) -> Iterator[HttpServe]:
    svc = HttpServe(workdir, **kw)
    assert svc.cli("init").returncode == 0
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def consent_body(number: str = "0612345678", **kw) -> dict:
    return {"number": number, "campaign": "promo", "given_at": "2026-11-01T10:00:00+01:00",
            "source": "web form", "channel": "web", "wording": "v3", "evidence_ref": "form-42",
            **kw}

