"""A throwaway PostgreSQL cluster for the tests: its own data directory, port
and socket directory, run as the `postgres` system user (PostgreSQL refuses
to run as root), trust authentication on loopback only, stopped at the end.

    python3 scripts/lib/pgcluster.py start DIR   # prints the URL to use
    python3 scripts/lib/pgcluster.py stop DIR

`halt(DIR)` and `resume(DIR)` stop and restart the same cluster (same data,
port and socket): the tests of a database outage use them.

Why not the distribution's own cluster: CI and developers' machines may run
one of their own; a cluster of ours cannot clash with it, and nothing of it
survives the run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

DB, ROLE = "sentinelle", "sentinelle"


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]))
    if not found:
        sys.exit("pgcluster: PostgreSQL is not installed (Debian package postgresql)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*prefix, *map(str, cmd)], check=check, capture_output=True, text=True)


def start(base: Path) -> str:
    bin_ = bindir()
    base.mkdir(parents=True, exist_ok=True)
    data, sock = base / "data", base / "sock"
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for d in (base, sock):
            d.mkdir(exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
    else:
        sock.mkdir(exist_ok=True)
    port = free_port()
    as_postgres(bin_ / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync")
    (base / "port").write_text(str(port))
    resume(base)
    psql = [bin_ / "psql", "-h", sock, "-p", str(port), "-U", "postgres", "-v",
            "ON_ERROR_STOP=1", "-q", "-c"]
    as_postgres(*psql, f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
    as_postgres(*psql, f"CREATE DATABASE {DB} OWNER {ROLE}")
    return f"postgresql://{ROLE}@127.0.0.1:{port}/{DB}"


def resume(base: Path) -> None:
    """Start the cluster of `base` (again), on its port, and wait until it answers."""
    data, sock, port = base / "data", base / "sock", (base / "port").read_text().strip()
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=200 -c shared_buffers=128MB")
    r = as_postgres(bindir() / "pg_ctl", "-D", data, "-l", base / "server.log", "-o", opts,
                    "-w", "start", check=False)
    if r.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        sys.exit(f"pgcluster: start failed: {r.stderr}\n{log}")


def halt(base: Path) -> None:
    """Stop the server at once, as a crash or a failover would (-m immediate)."""
    as_postgres(bindir() / "pg_ctl", "-D", base / "data", "-m", "immediate", "-w", "stop")


def stop(base: Path) -> None:
    if (base / "data").exists():
        as_postgres(bindir() / "pg_ctl", "-D", base / "data", "-m", "immediate", "stop",
                    check=False)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    target = Path(sys.argv[2])
    if sys.argv[1] == "start":
        print(start(target))
    else:
        stop(target)
