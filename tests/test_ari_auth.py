"""An ARI listener that Asterisk refuses (wrong user or password) is said so
loudly (issue #12, section 2): `serve --check-config` exits 2 naming the
problem, the client logs an ERROR and the metric `sentinelle_ari_auth_failed`
is 1. Before, the listener retried forever behind a warning a minute while
calls went on being allowed.

The ARI here is a small HTTP server that checks Basic credentials like
Asterisk's http server does (401 on a wrong password, on the websocket
upgrade as on REST); the real Asterisk answers the same in
tests/e2e/test_outcome_handler_e2e.py."""

from __future__ import annotations

import base64
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import fake_ari
from tests.test_metrics import _free_port, _value, _wait_port

EXE = str(Path(sys.executable).parent / "sentinelle")
USER, PASSWORD = "sentinelle", "s3cret/with+chars"

pytestmark = pytest.mark.sqlite_only  # about ARI, not the store


class _Ari(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the websocket client accepts nothing older

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Asterisk REST Interface"')
            body = b'{"error": "Authentication required"}'
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            body = b'{"system": {"version": "22"}}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ari() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ari)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def with_ari(config_path: Path, url: str, password: str, extra: str = "") -> Path:
    config_path.write_text(config_path.read_text() + extra + f"""
[ari]
url = "{url}"
user = "{USER}"
password = "{password}"
""")
    return config_path


def check_config(config_path: Path, command: str = "serve") -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "--config", str(config_path), command, "--check-config"],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", ["serve", "listen"])
def test_check_config_exits_2_when_asterisk_refuses_the_credentials(config_path, ari, command):
    url = f"http://127.0.0.1:{ari.server_address[1]}/ari"
    r = check_config(with_ari(config_path, url, "wrong-password"), command)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "refused the credentials (HTTP 401)" in r.stderr and "config ok" not in r.stdout
    assert "wrong-password" not in r.stderr + r.stdout
    assert ari.paths == ["/ari/asterisk/info"]


def test_check_config_passes_with_the_right_credentials(config_path):
    """Against the fuller fake (the live check follows the credentials': see
    tests/test_livecheck.py), which checks the same credentials."""
    assert (fake_ari.USER, fake_ari.PASSWORD) == (USER, PASSWORD)
    with fake_ari.running(fake_ari.FakePbx()) as url:
        r = check_config(with_ari(config_path, url, PASSWORD))
    assert r.returncode == 0, r.stderr
    assert "config ok" in r.stdout and "warning: ARI" not in r.stderr


def test_check_config_only_warns_when_asterisk_does_not_answer(config_path):
    """The service may start before the PBX: that is no reason to refuse it."""
    r = check_config(with_ari(config_path, f"http://127.0.0.1:{_free_port()}/ari", PASSWORD))
    assert r.returncode == 0, r.stderr
    assert "warning: ARI at" in r.stderr and "not checked" in r.stderr


def test_serve_says_it_in_the_log_and_the_metrics(config_path, ari):
    agi_port, metrics_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{ari.server_address[1]}/ari"
    with_ari(config_path, url, "wrong-password",
             extra=f'\n[server]\nlisten = "127.0.0.1:{agi_port}"\n\n'
                   f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    subprocess.run([EXE, "--config", str(config_path), "init"], check=True, capture_output=True)
    log = config_path.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([EXE, "--config", str(config_path), "serve"], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_port(metrics_port, proc)
        deadline = time.monotonic() + 60
        while True:
            body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            if _value(body, "sentinelle_ari_auth_failed") == 1:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    text = log.read_text()
    assert '"level": "error"' in text.replace('"level":"error"', '"level": "error"'), text
    assert "ARI authentication failed" in text and "wrong-password" not in text


def test_files_only_check_does_not_ask_asterisk(config_path, ari):
    """The unit's ExecStartPre: wrong ARI credentials must not keep the guard
    from starting (the running service reports them)."""
    url = f"http://127.0.0.1:{ari.server_address[1]}/ari"
    r = subprocess.run([EXE, "--config", str(with_ari(config_path, url, "wrong-password")),
                        "serve", "--check-config", "--files-only"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "config ok" in r.stdout and ari.paths == []
