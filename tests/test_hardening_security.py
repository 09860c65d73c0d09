"""Security: exposure, secrets, SQL built from input, the systemd unit.

- The FastAGI listener binds loopback by default; a non-loopback listen
  address without `server.allow` stops the service at start-up (exit 2), and a
  dual-stack `[::]` listener matches IPv4 peers against an IPv4 allow list.
- The ARI password (file, environment or URL) never reaches a log line, even
  at DEBUG and even when the server echoes the request back; a world-readable
  secret file (or a world-readable config that holds the password, or a
  world-writable config) is warned about at start-up.
- No SQL is built by string formatting from input: ruff's S608 is clean on
  agi/, and every f-string that builds SQL interpolates only table names
  (fixed, or from an integer id), never a value that came from outside.
- deploy/sentinelle.service runs as an unprivileged user with a read-only
  system, a writable store directory only, no capabilities (checked with
  `systemd-analyze verify` and `security --offline`), and sentinelle itself
  runs as an unprivileged user.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from sentinelle.config import (
    ConfigError,
    load_config,
    parse_config,
    permission_warnings,
    validate_for_serving,
)
from tests.helpers.hardening_support import REPO, Serve, free_port, probe, sentinelle_exe

AGI = REPO / "agi"
UNIT = REPO / "deploy" / "sentinelle.service"
RUFF = Path(sentinelle_exe()).parent / "ruff"


# -- exposure -------------------------------------------------------------------

def test_default_listen_is_loopback(tmp_path):
    config = parse_config({})
    assert config.server.listen == "127.0.0.1:4573" and config.server.allow == ()
    validate_for_serving(config)  # accepted as is
    (tmp_path / "c.toml").write_text('[store]\npath = "s.db"\n')
    r = subprocess.run([sentinelle_exe(), "--config", str(tmp_path / "c.toml"), "serve",
                        "--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "listen 127.0.0.1:4573" in r.stdout, r.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "", "192.0.2.7", "pbx.example.org",
                                  "127.0.0.1.nip.io"])
def test_exposed_listen_without_allow_list_is_refused_at_start(tmp_path, host):
    svc = Serve(tmp_path)
    for args in (["serve", "--listen", f"{host}:{svc.port}"],
                 ["serve", "--listen", f"{host}:{svc.port}", "--check-config"]):
        r = svc.cli(*args, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "server.allow" in r.stderr and "not loopback" in r.stderr, r.stderr
    with pytest.raises(ConfigError, match=r"server\.allow"):
        validate_for_serving(parse_config({"server": {"listen": f"{host}:4573"}}))


def test_ipv6_listener_applies_the_allow_list(tmp_path):
    """`[::]` with an allow list: a listed peer is served, any other refused."""
    ok = Serve(tmp_path / "ok", server_extra='allow = ["::1/128"]')
    other = Serve(tmp_path / "other", server_extra='allow = ["192.0.2.0/24", "2001:db8::/32"]')
    for svc in (ok, other):
        svc.config.write_text(svc.config.read_text().replace("127.0.0.1:", "[::]:"))
        svc.host = "::1"
    with ok.start(), other.start():
        allowed = asyncio.run(probe(ok.port, "112", host="::1"))
        refused = asyncio.run(probe(other.port, "112", host="::1"))
    assert allowed.verdict == "ALLOW", allowed
    assert refused.verdict is None
    assert any(d.get("msg", "").startswith("connection refused: peer not in server.allow")
               for d in other.log_lines())


@pytest.mark.parametrize(("peer", "allow", "ok"), [
    ("127.0.0.1", (), True), ("::1", (), True), ("::ffff:127.0.0.1", (), True),
    ("10.1.2.3", (), False), ("::ffff:10.1.2.3", ("10.0.0.0/8",), True),
    ("10.1.2.3", ("10.0.0.0/8",), True), ("10.1.2.3", ("192.0.2.0/24",), False),
    ("fe80::1%eth0", ("fe80::/10",), True), ("?", (), False), ("", ("0.0.0.0/0",), False),
])
def test_peer_matching(peer, allow, ok):
    """IPv4-mapped peers (a dual-stack socket) match IPv4 networks; anything
    unparsable is refused."""
    import dataclasses

    from sentinelle.core.clock import system_clock
    from sentinelle.pbx.server import FastAgiServer

    config = parse_config({})
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, allow=allow))
    assert FastAgiServer(config, system_clock)._allowed_peer(peer) is ok


# -- secrets ----------------------------------------------------------------------

class EchoAri(BaseHTTPRequestHandler):
    """An ARI that refuses everyone and echoes the request (headers included)
    back in the body: a client that logs response bodies would leak."""

    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        EchoAri.seen.append(str(self.headers.get("Authorization", "")))
        body = (f"{self.requestline}\n{self.headers}").encode()
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_ari():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoAri)
    EchoAri.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _leaks(text: str, secrets: list[str]) -> list[str]:
    forms = []
    for s in secrets:
        forms += [s, base64.b64encode(f"sentinelle:{s}".encode()).decode(),
                  base64.b64encode(s.encode()).decode()[:-2]]
    return [f for f in forms if f in text]


def test_ari_password_never_logged(tmp_path, echo_ari):
    file_secret, url_secret, env_secret = "Fi1e-s3cret-9f2", "Ur1-s3cret-7d1", "Env-s3cret-4c8"
    secrets = [file_secret, url_secret, env_secret]
    (tmp_path / "ari.secret").write_text(file_secret + "\n")
    os.chmod(tmp_path / "ari.secret", 0o600)
    ari = (f'[ari]\nurl = "http://sentinelle:{url_secret}@127.0.0.1:{echo_ari}"\n'
           f'user = "sentinelle"\n')
    runs = []
    # 1. password_file (and a password in the URL, unused but present in the config)
    svc = Serve(tmp_path / "file", extra=ari + f'password_file = "{tmp_path / "ari.secret"}"\n')
    os.chmod(svc.config, 0o600)
    runs.append(svc)
    # 2. environment, with `sentinelle listen`
    env = dict(os.environ, SENTINELLE_ARI_PASSWORD=env_secret)
    svc_env = Serve(tmp_path / "env", extra=ari, env=env)
    os.chmod(svc_env.config, 0o600)
    runs.append(svc_env)
    with svc.start():
        time.sleep(2.5)  # several reconnect rounds against the 401 server
    listen = subprocess.Popen([sentinelle_exe(), "--config", str(svc_env.config), "--log-level",
                               "DEBUG", "listen"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    time.sleep(2.5)
    listen.terminate()
    listen_out = listen.communicate(timeout=20)[0].decode(errors="replace")
    check = subprocess.run([sentinelle_exe(), "--config", str(svc.config), "--log-level", "DEBUG",
                            "serve", "--check-config"], capture_output=True, text=True, timeout=60)
    debug_serve = subprocess.Popen([sentinelle_exe(), "--config", str(svc.config), "--log-level",
                                    "DEBUG", "serve", "--listen", f"127.0.0.1:{free_port()}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2.5)
    debug_serve.terminate()
    debug_out = debug_serve.communicate(timeout=20)[0].decode(errors="replace")
    logs = svc.log.read_text() + listen_out + check.stdout + check.stderr + debug_out
    # The secrets were really used (the test is not vacuous)...
    used = {base64.b64decode(a.split()[1]).decode() for a in EchoAri.seen if a.startswith("Basic ")}
    assert f"sentinelle:{file_secret}" in used and f"sentinelle:{env_secret}" in used, used
    assert "ARI" in logs and len(logs.splitlines()) > 5, logs[:2000]
    # ... and never written anywhere.
    assert not _leaks(logs, secrets), _leaks(logs, secrets)


def test_permission_warnings(tmp_path):
    secret = tmp_path / "ari.secret"
    secret.write_text("pw\n")
    cfg = tmp_path / "c.toml"

    def load(text: str, cfg_mode: int, secret_mode: int) -> list[str]:
        cfg.write_text(text)
        os.chmod(cfg, cfg_mode)
        os.chmod(secret, secret_mode)
        return permission_warnings(load_config(str(cfg)))

    ari_file = f'[ari]\nurl = "http://127.0.0.1:8088"\nuser = "s"\npassword_file = "{secret}"\n'
    ari_inline = '[ari]\nurl = "http://127.0.0.1:8088"\nuser = "s"\npassword = "pw"\n'
    ari_in_url = '[ari]\nurl = "http://s:pw@127.0.0.1:8088"\nuser = "s"\n'
    assert load(ari_file, 0o644, 0o600) == []  # the usual /etc layout: fine
    assert load(ari_file, 0o640, 0o640) == []  # group sentinelle may read the secret
    [w] = load(ari_file, 0o644, 0o644)
    assert str(secret) in w and "chmod 600" in w
    [w] = load(ari_inline, 0o644, 0o600)
    assert "holds the ARI password" in w
    [w] = load(ari_in_url, 0o604, 0o600)
    assert "holds the ARI password" in w
    assert load(ari_inline, 0o640, 0o600) == []
    [w] = load("", 0o666, 0o600)
    assert "world-writable" in w


def test_world_readable_secret_is_warned_at_start(tmp_path, echo_ari):
    secret = tmp_path / "ari.secret"
    secret.write_text("pw\n")
    os.chmod(secret, 0o644)
    svc = Serve(tmp_path, extra=f'[ari]\nurl = "http://127.0.0.1:{echo_ari}"\nuser = "s"\n'
                                f'password_file = "{secret}"\n')
    with svc.start():
        time.sleep(0.3)
    warnings = [d["msg"] for d in svc.log_lines() if d.get("level") == "warning"]
    assert any(str(secret) in w and "world-readable" in w for w in warnings), warnings


# -- SQL ---------------------------------------------------------------------------

def test_ruff_s608_is_clean_on_agi():
    r = subprocess.run([str(RUFF), "check", "--select", "S608", "--output-format", "concise",
                        str(AGI)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|PRAGMA|REPLACE|WITH|ALTER)\b",
                  re.IGNORECASE)
# Names that carry outside input somewhere in sentinelle: never inside SQL text.
_INPUT_NAMES = {"dialled", "number", "raw", "campaign", "caller_id", "e164", "source", "text",
                "line", "value", "values", "data", "req", "request", "headers", "event",
                "professional", "product", "department", "code", "name", "path", "url", "user",
                "password", "reason", "row", "fields", "proof", "inputs", "args", "kwargs"}
_SAFE_WRAPPERS = {"snapshot_table", "int"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _unsafe_parts(node: ast.JoinedStr) -> list[str]:
    bad = []
    for part in node.values:
        if not isinstance(part, ast.FormattedValue):
            continue
        expr = part.value
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) \
                and expr.func.id in _SAFE_WRAPPERS:
            continue  # an integer, or a table name built from one
        if isinstance(expr, ast.Constant):
            continue
        leaked = _names(expr) & _INPUT_NAMES
        if leaked:
            bad.append(f"{ast.unparse(expr)} (uses {', '.join(sorted(leaked))})")
    return bad


def test_no_sql_text_is_formatted_from_input():
    """Every f-string, %-format or .format() that builds SQL in agi/ only
    interpolates table names (fixed vocabularies or integer ids)."""
    problems, sites = [], 0
    for path in sorted(AGI.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.JoinedStr):
                head = "".join(v.value for v in node.values
                               if isinstance(v, ast.Constant) and isinstance(v.value, str))
                if _SQL.match(head):
                    sites += 1
                    problems += [f"{where}: {p}" for p in _unsafe_parts(node)]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) \
                    and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                    and _SQL.match(node.left.value):
                problems.append(f"{where}: SQL built with % formatting")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "format" and isinstance(node.func.value, ast.Constant) \
                    and isinstance(node.func.value.value, str) and _SQL.match(node.func.value.value):
                problems.append(f"{where}: SQL built with str.format")
    assert sites > 0  # the scan sees the store's dynamic table names
    assert not problems, "\n".join(problems)


# -- the service user and the systemd unit -------------------------------------------

def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_systemd_unit_runs_unprivileged_and_confined(tmp_path):
    unit = _unit()
    assert unit["User"] == ["sentinelle"] and unit["Group"] == ["sentinelle"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == ["/var/lib/sentinelle"]
    assert unit["StateDirectory"] == ["sentinelle"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictSUIDSGID": "yes", "UMask": "0027"}.items():
        assert unit[key] == [value], key
    assert "AF_PACKET" not in " ".join(unit["RestrictAddressFamilies"])
    assert not any("PASSWORD" in e.upper() for e in unit.get("Environment", [])), \
        "a secret in Environment= is readable by every user through systemctl show"
    assert all(e.endswith(("serve", "serve --check-config --files-only")) for e in
               unit["ExecStart"] + unit["ExecStartPre"])
    local = tmp_path / "sentinelle.service"
    local.write_text(UNIT.read_text().replace("/opt/sentinelle/venv/bin/sentinelle",
                                              sentinelle_exe()))
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed to check the unit (package systemd)"
    r = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([analyze, "security", "--offline=yes", "--json=short", str(local)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    exposure = _exposure(r.stdout, analyze, local)
    assert exposure <= 2.0, f"systemd exposure {exposure} (0 = locked down, 10 = exposed)"


def _exposure(json_out: str, analyze: str, local: Path) -> float:
    """`security --json` lists checks; the overall figure is in the text output."""
    r = subprocess.run([analyze, "security", "--offline=yes", str(local)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout[-500:] + json_out[:200]
    return float(m.group(1))


def test_serve_runs_as_an_unprivileged_user():
    """What the unit's User= relies on: sentinelle needs no root (it never
    binds a privileged port, and writes only its store directory)."""
    work = Path(tempfile.mkdtemp(prefix="sentinelle-nobody-", dir="/tmp"))
    try:
        os.chmod(work, 0o750)  # noqa: S103 - the service user must traverse its own directory
        os.chown(work, 65534, 65534)
        svc = Serve(work / "svc")
        os.chown(work / "svc", 65534, 65534)
        os.chmod(svc.config, 0o644)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
               sentinelle_exe(), "--config", str(svc.config), "--log-level", "INFO", "serve",
               "--at", "2026-12-01T10:30:00+01:00"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd="/")
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.communicate()[0].decode()
                try:
                    socket.create_connection(("127.0.0.1", svc.port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "serve did not listen as nobody"
                    time.sleep(0.05)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
            assert uids and uids.groups() == ("65534", "65534"), status
            res = asyncio.run(probe(svc.port, "0612345678"))
            assert res.verdict == "BLOCK" and res.rules == "R-11", res  # a real store decision
            assert svc.store.stat().st_uid == 65534
        finally:
            proc.terminate()
            out = proc.communicate(timeout=20)[0].decode(errors="replace")
        assert proc.returncode == 0, out
        assert all(json.loads(line).get("level") != "error" for line in out.splitlines()
                   if line.startswith("{")), out
    finally:
        shutil.rmtree(work, ignore_errors=True)
