"""The README's first command runs this demo: it must place the allowed calls
through the real Asterisk (a broken dialplan snippet once made every call of
the demo fail with cause 21 while the service answered ALLOW)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_places_the_allowed_calls_and_blocks_the_rest():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], capture_output=True,
                       text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = r.stdout.splitlines()
    allowed = [line for line in rows if " ALLOW " in line]
    blocked = [line for line in rows if " BLOCK " in line]
    assert len(allowed) == 5 and len(blocked) == 6, r.stdout
    assert all(" 200 " in line for line in allowed), r.stdout
    assert all("403 cause 21" in line for line in blocked), r.stdout
    assert "carrier received 5 INVITE(s)" in r.stdout
    refused = r.stdout.split("callee refused last week", 1)[1].splitlines()
    assert "R-11:" in refused[0] and refused[1].strip().startswith("R-31:"), r.stdout
