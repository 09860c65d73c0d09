"""Transfers between agents (issue #12, 1d) on the real Asterisk, with the
shipped dialplan/extensions_transfer.conf: an agent dials out (topology a),
the callee answers, and the agent hands the call to a second agent, by a
blind transfer (`#1` + extension) for one call and an attended one (`*2` +
extension, then hanging up) for the other, both keyed as DTMF (SIP INFO) on
the first agent's phone, as features.conf maps them. The second agents then
key `*9` (refusal) and `*83` (callback), and each must land on the attempt
of the callee transferred to them.

Two calls to two callees at once, so that a mix-up would show; run twice
with the codes swapped, so that the refusal is keyed after a blind and after
an attended transfer. The second agents key only once the test has seen the
transfer done (an in-dialog NOTIFY cues their SIPp phones).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from sentinelle.pbx import channelvars
from tests.e2e.conftest import Service
from tests.e2e.test_outcome_handler_e2e import hang_up_agents, serve_consented, wait_until
from tests.pbx import Pbx, agent_phones, free_ports, with_ari_channelvars
from tests.pbx.pbx import DIALPLAN_DIR

CONSENT_AT = "2026-11-01T10:00:00+01:00"
LATER = "2026-12-01T11:00:00+01:00"  # the service runs at 10:30 (tests.helpers FROZEN)
# first agent, callee, transfer keys, second agent (README "Transfers").
CALLS = (
    ("2001", "0612345721", "#12101", "2101", "BlindTransfer"),
    ("2002", "0612345722", "*22102", "2102", "AttendedTransfer"),
)
CALLEES = tuple(callee for _, callee, *_ in CALLS)
CODES = {"*9": ("refused", True), "*83": ("callback", False)}
FEATUREMAP = "[featuremap]\nblindxfer => #1\natxfer => *2\n"


class TransferPbx(Pbx):
    """The harness's Asterisk plus the agents (by extension), the transfer
    keys and the repository's dialplan/extensions_transfer.conf (as shipped)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, extra_dialplan="#include extensions_transfer.conf\n",
                         phone_context="transfer-outbound", **kwargs)

    def _configs(self) -> dict[str, str]:
        configs = super()._configs()
        configs["pjsip.conf"] += "".join(
            f"\n[{first}](agent-tpl)\ncontext = transfer-outbound\n" for first, *_ in CALLS)
        configs["features.conf"] += "\n" + FEATUREMAP
        configs["ari.conf"] = with_ari_channelvars(configs["ari.conf"], channelvars.ATTEMPT)
        return configs

    def write_config(self) -> None:
        super().write_config()
        shutil.copy(DIALPLAN_DIR / "extensions_transfer.conf", self.etc_dir)


@pytest.fixture
def transfer_pbx(service: Service) -> Iterator[TransferPbx]:
    targets = [second for *_, second, _ in CALLS]
    ports = dict(zip(targets, free_ports(len(targets), kind=socket.SOCK_DGRAM), strict=True))
    with TransferPbx(agi_url=service.agi_url, campaign="promo", phone_ports=ports) as pbx:
        yield pbx


@pytest.mark.parametrize(("blind_keys", "attended_keys", "listener"), [
    ("*9", "*83", "none"), ("*83", "*9", "none"), ("*9", "*83", "connected")],
    ids=["refusal-after-blind", "refusal-after-attended", "refusal-after-blind-listener"])
def test_the_second_agents_keys_are_filed_on_the_transferred_callee(
        service: Service, transfer_pbx: TransferPbx, tmp_path: Path, blind_keys: str,
        attended_keys: str, listener: str) -> None:
    pbx = transfer_pbx
    keys = dict(zip((second for *_, second, _ in CALLS), (blind_keys, attended_keys),
                    strict=True))
    serve_consented(service, pbx, tmp_path, CALLEES, CONSENT_AT, listener == "connected")

    def timeline(number: str) -> dict:
        return json.loads(service.cli("history", number, "--json").stdout)

    seconds: dict[str, str] = {}
    # the callees stay until the second agents leave
    with (agent_phones(pbx, {name: [key] for name, key in keys.items()}, on_notify=True) as phones,
          pbx.carrier(response=200)):
        # Two calls at once; the first agent of the attended transfer
        # hangs up 4 s after keying it, which completes it.
        firsts = pbx.calls([dict(number=callee, agent=first, send_dtmf=xfer, hold_ms=4000,
                                 campaign="promo")
                            for first, callee, xfer, *_ in CALLS])
        transferred = time.monotonic()  # both first agents have left by now
        assert all(r.answered for r in firsts), [(r.status, r.log) for r in firsts]
        for first, callee, _, second, event in CALLS:
            pbx.ami.wait_event(lambda e, ev=event: e.get("Event") == ev
                               and e.get("Result") == "Success", timeout=30)
            seconds[second] = pbx.ami.wait_event(
                lambda e, s=second: e.get("Event") == "BridgeEnter"
                and e.get("Channel", "").startswith(f"PJSIP/{s}-"), timeout=30)["Channel"]
            (attempt,) = timeline(callee)["attempts"]
            # What the second agent's keys will be filed on: the
            # callee's attempt, inherited through the transfer.
            assert pbx.getvar(seconds[second], channelvars.ATTEMPT) == str(attempt["id"]), (
                first, second)
        legs = {e["Channel"] for e in pbx.ami.events("BridgeEnter")
                if e.get("Channel", "").startswith("PJSIP/trunk-")}
        assert len(legs) == len(CALLS), legs
        for leg in legs:  # the callee's keys file nothing, transferred or not
            assert not pbx.getvar(leg, "DYNAMIC_FEATURES"), leg
        for channel in seconds.values():
            pbx.notify_channel(channel)  # now key
        wait_until(lambda: all(t["attempts"][0]["disposition"]
                               for t in map(timeline, CALLEES)), 30, "dispositions filed")
        talked = time.monotonic() - transferred  # the conversations lasted longer
        # the second agents hang up
        hang_up_agents(pbx, seconds.values(), phones.values(), timeline, CALLEES)

    right = 0
    reports = [e for e in service.log_lines() if e.get("msg") == "outcome reported"]
    for first, callee, _, second, event in CALLS:
        disposition, refusal = CODES[keys[second]]
        t = timeline(callee)
        (attempt,) = t["attempts"]
        assert attempt["disposition"] == disposition, (event, second, t)
        assert attempt["outcome"] == "answered" and attempt["cause"] == 16, attempt
        assert attempt["answered_at"] and attempt["ended_at"], attempt
        if refusal:
            (r,) = t["refusals"]
            assert r["attempt_id"] == attempt["id"], (event, second, t)
        else:
            assert not t["refusals"], (event, second, t)
        # One outcome, from the hangup handler on the first agent's channel
        # at the transfer; then the second agent's moves its end to the end
        # of the conversation (with the listener connected, the listener may
        # have written that end first).
        mine = [e for e in reports if str(e.get("attempt")) == str(attempt["id"])]
        assert [e.get("reason") for e in mine if e.get("reason") == "recorded"] == ["recorded"]
        assert [e.get("status") for e in mine] == ["answered", "answered"], mine
        if listener == "none":
            assert mine[1].get("reason") == "end extended", mine
        answered_at, ended_at = (datetime.fromisoformat(attempt[k])
                                 for k in ("answered_at", "ended_at"))
        assert (ended_at - answered_at).total_seconds() >= talked, (attempt, talked)
        right += 1
        print(f"{event}: {first} -> {second} keyed {keys[second]}: answered_at "
              f"{attempt['answered_at']} ended_at {attempt['ended_at']}")
    print(f"transfer topology ({listener} listener): {right}/{len(CALLS)} dispositions "
          f"and outcomes on the right attempt")
    log = pbx.messages_log.read_text(errors="replace")
    assert "NOT recorded" not in log and "NOT extended" not in log, log[-3000:]
    for _, callee, _, second, _ in CALLS:
        decision = service.check_json(callee, at=LATER)
        assert ("R-31" in decision["rules"]) == CODES[keys[second]][1], (second, callee, decision)
