"""The newcomer's demo: a real Asterisk guarded by `sentinelle serve`.

Places a scripted series of calls with sipp (agents and carrier) and prints
one line per call with what the agent's phone saw and what sentinelle
decided. The clock is frozen on a Tuesday at 10:30 Paris time so the demo
tells the same story whatever day it runs.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # a script, not a test: tests.pbx from the repository root

from tests.pbx import Pbx, free_ports  # noqa: E402

from sentinelle.logs import read_events  # noqa: E402

AT = "2026-12-01T10:30:00+01:00"
EXE = str(REPO / ".venv" / "bin" / "sentinelle")
NPV = "0162000000"

# (label, number, call options)
CALLS = [
    ("consent on file", "0612345678", {}),
    ("no consent (opt-in regime)", "0687654321", {}),
    ("mobile caller ID", "0611111111", {"caller_id": "0611223344"}),
    ("masked caller ID", "0611111111", {"masked": True}),
    ("2nd attempt", "0612345678", {}),
    ("3rd attempt", "0612345678", {}),
    ("4th attempt", "0612345678", {}),
    ("5th attempt in 30 days", "0612345678", {}),
    ("callee refused last week", "0622222222", {}),
    ("Reunion: 13:30 local, lunch break", "0692123456", {}),
    ("emergency number", "112", {}),
]


def cli(config: Path, *args: str) -> None:
    subprocess.run([EXE, "--config", str(config), *args], check=True, capture_output=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sentinelle-demo-"))
    config = work / "sentinelle.toml"
    port = free_ports(1)[0]
    text = (REPO / "dialplan" / "demo.toml").read_text()
    config.write_text(text.replace("127.0.0.1:4573", f"127.0.0.1:{port}"))
    for number in ("0612345678", "0611111111", "0622222222", "0692123456"):
        cli(config, "consent", "add", number, "--campaign", "promo", "--source", "demo-web-form",
            "--channel", "web", "--at", "2026-11-02T09:00")
    cli(config, "refusal", "add", "0622222222", "--campaign", "promo", "--at", "2026-11-24T11:00")

    log = work / "serve.log"
    serve = subprocess.Popen([EXE, "--config", str(config), "--log-level", "INFO", "serve",
                              "--at", AT], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"sentinelle serve on 127.0.0.1:{port}, clock frozen at {AT}, store {work}/sentinelle.db")
        with Pbx(agi_url=f"agi://127.0.0.1:{port}", campaign="promo") as pbx, \
                pbx.carrier(response=200, call_ms=200) as carrier:
            print(f"Asterisk {pbx.cli('core show version').split()[1]} running; placing calls\n")
            print(f"{'call':<36}{'number':<13}{'agent saw':<14}{'verdict':<8}rules / reason")
            seen = 0
            for label, number, opts in CALLS:
                r = pbx.call(number, caller_id=opts.get("caller_id", NPV),
                             masked=opts.get("masked", False), hold_ms=200)
                decisions = _decisions(log)
                while len(decisions) <= seen:
                    time.sleep(0.05)
                    decisions = _decisions(log)
                d = decisions[seen]
                seen = len(decisions)
                sip = f"{r.status}" + (f" cause {r.q850}" if r.status != 200 and r.q850 else "")
                print(f"{label:<36}{number:<13}{sip:<14}{d['verdict'].upper():<8}"
                      + "\n".join(demo_lines(d, indent=" " * 71)))
            print(f"\ncarrier received {carrier.count()} INVITE(s): {', '.join(carrier.numbers())}")
    finally:
        serve.terminate()
        serve.wait(10)
    print(f"decision log: {EXE} --config {config} history 0612345678")
    return 0


def demo_lines(d: dict, indent: str) -> list[str]:
    """Every blocking rule with its whole reason, one per line (a reason cut
    mid-token, or a second rule left out, misleads the admin watching), or
    the first note of an allowed call."""
    lines = list(d["reasons"]) or [(d.get("notes") or ["-"])[0]]
    return [lines[0], *(indent + line for line in lines[1:])]


def _decisions(log: Path) -> list[dict]:
    return read_events(log.read_text().splitlines(), "decision")

if __name__ == "__main__":
    sys.exit(main())
