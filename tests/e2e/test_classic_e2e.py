"""The classic per-call AGI through a real Asterisk 22 (issue #15): the
dialplan's AGI() starts sentinelle's classic entry for each call, over
pipes, with no `sentinelle serve` running. An allowed call reaches the
carrier, a blocked one is answered SIP 403 / Q.850 cause 21 and never
reaches it, and the store holds the decisions with `source=agi`."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from tests.e2e.conftest import Service
from tests.helpers.hardening_support import FROZEN
from tests.pbx import Pbx

NUMBER = "0612345678"


def _classic(pbx: Pbx, service: Service) -> None:
    """Asterisk runs in a chroot without Python: its `check` AGI script
    chroots back into the host's root (bind-mounted by the harness) and runs
    the venv's `sentinelle agi`, clock frozen as the service's would be."""
    # The run dir is mkdtemp's (0700): Asterisk's AGI child got EACCES
    # executing a script under it, as bench_pbx's 0755 run dir never did.
    pbx.run_dir.chmod(0o755)
    script = pbx.run_dir / "classic" / "check"
    script.parent.mkdir(exist_ok=True)
    exe = Path(sys.executable).parent / "sentinelle"
    script.write_text("#!/bin/sh\n"
                      f"exec /usr/sbin/chroot /run/sentinelle/host /usr/bin/env -i {exe} "
                      f"--config {service.config} agi --at {FROZEN} \"$@\"\n")
    script.chmod(0o755)
    # The shipped subroutines call <dir>/disposition and <dir>/outcome too:
    # the same program, which takes its route from the script's name.
    for route in ("disposition", "outcome"):
        (script.parent / route).symlink_to("check")
    pbx.set_global("SENTINELLE_AGI", "/run/sentinelle/classic")


def test_classic_agi_allows_and_blocks_through_asterisk(service: Service) -> None:
    service.consent(NUMBER)
    with Pbx(agi_url=service.agi_url, campaign="promo", host_root=True) as pbx:
        _classic(pbx, service)
        with pbx.carrier(response=200) as carrier:
            assert pbx.call(NUMBER).status == 200
            blocked = pbx.call("0698765432")  # no consent: R-11
            assert (blocked.status, blocked.q850) == (403, 21)
            masked = pbx.call(NUMBER, masked=True)  # withheld caller ID: R-40
            assert (masked.status, masked.q850) == (403, 21)
            assert carrier.numbers() == [NUMBER]
    db = sqlite3.connect(service.store)
    try:
        rows = db.execute("SELECT source, verdict, rules, attempt_id IS NOT NULL "
                          "FROM decisions ORDER BY id").fetchall()
    finally:
        db.close()
    assert rows == [("agi", "allow", "", 1), ("agi", "block", "R-11", 0),
                    ("agi", "block", "R-40", 0)]


def test_classic_agi_records_the_refusal_and_the_outcome_without_a_service(service: Service
                                                                           ) -> None:
    """No `sentinelle serve` at all: the agent's `*9` runs <dir>/disposition
    and the hangup handler <dir>/outcome, both the classic AGI, and the
    store holds the refusal on the call's attempt and the call's outcome."""
    service.consent(NUMBER)
    with Pbx(agi_url=service.agi_url, campaign="promo", host_root=True) as pbx:
        _classic(pbx, service)
        with pbx.carrier(response=200):
            r = pbx.call(NUMBER, send_dtmf="*9", hold_ms=800)
            assert r.status == 200
        log = pbx.messages_log.read_text(errors="replace")
    assert "NOT recorded" not in log
    timeline = json.loads(service.cli("history", NUMBER, "--json").stdout)
    (attempt,) = timeline["attempts"]
    (refusal,) = timeline["refusals"]
    assert (refusal["source"], refusal["attempt_id"]) == ("agi disposition:refused", attempt["id"])
    assert attempt["outcome"] == "answered"
    assert service.check_json(NUMBER)["verdict"] == "block"  # R-31 now
