"""The agent conference topology (issue #12, 1c) on the real Asterisk, with
the shipped dialplan/extensions_conference.conf and confbridge_sentinelle.conf:
agents wait in ConfBridge rooms (their phones, SIPp, are called into them),
the dialer originates `Local/NUMBER@conference-outbound/n` (the check on the
Local channel before Dial()) and names the agent's room in SENTINELLE_ROOM;
the answered callee is sent into that room.

Two calls to two callees at once, each into another agent's room, and the
two agents key different codes (`*9`, a refusal; `*83`, a callback), so that
a refusal filed on the wrong attempt would show. Never a guess: a third
agent keys `*9` in a room no callee was sent to, a fourth in a room the
dialer sent two callees to; nothing may be filed, and those agents must hear
the error tone (the dialplan's NOTICE says so). A callee sent to a room
nobody waits in is not left there. The agents key only once the
test has seen their callee join the room (an in-dialog NOTIFY cues the SIPp
phone), not after a delay a loaded machine could overrun.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinelle.pbx import channelvars
from tests.e2e.conftest import Service
from tests.e2e.test_outcome_handler_e2e import hang_up_agents, serve_consented, wait_until
from tests.pbx import Pbx, agent_phones, free_ports, with_ari_channelvars
from tests.pbx.pbx import DIALPLAN_DIR

CONSENT_AT = "2026-11-01T10:00:00+01:00"
LATER = "2026-12-01T11:00:00+01:00"  # the service runs at 10:30 (tests.helpers FROZEN)
PRESENTED = "0162000000"  # the professional's number, in an Arcep NPV range
# agent: (room, callees the dialer sends to that room, keys, what the store
# must then say for a lone callee: disposition and refusal)
AGENTS = {
    "cagent1": ("601", ("0612345711",), "*9", ("refused", True)),
    "cagent2": ("602", ("0612345712",), "*83", ("callback", False)),
    # Never a guess: a key in a room with no callee, or with two (a dialer
    # fault), files nothing.
    "cagent3": ("603", (), "*9", None),
    "cagent4": ("604", ("0612345714", "0612345715"), "*9", None),
}
NO_AGENT = ("609", "0612345719")  # a room nobody waits in: the callee is not left there
CALLEES = (*(c for _, callees, *_ in AGENTS.values() for c in callees), NO_AGENT[1])
FILES = ("extensions_conference.conf", "confbridge_sentinelle.conf")


class ConferencePbx(Pbx):
    """The harness's Asterisk plus app_confbridge, the agents' endpoints and
    the repository's conference dialplan and ConfBridge profiles (as shipped)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, extra_dialplan="#include extensions_conference.conf\n",
                         phone_context="conference-agent", **kwargs)

    def _configs(self) -> dict[str, str]:
        configs = super()._configs()
        configs["modules.conf"] = configs["modules.conf"].replace(
            "noload => app_confbridge.so\n", "")
        configs["confbridge.conf"] = "[general]\n\n#include confbridge_sentinelle.conf\n"
        configs["ari.conf"] = with_ari_channelvars(configs["ari.conf"], channelvars.ATTEMPT)
        return configs

    def write_config(self) -> None:
        super().write_config()
        for name in FILES:
            shutil.copy(DIALPLAN_DIR / name, self.etc_dir / name)


@pytest.fixture
def conference_pbx(service: Service) -> Iterator[ConferencePbx]:
    ports = dict(zip(AGENTS, free_ports(len(AGENTS), kind=socket.SOCK_DGRAM), strict=True))
    with ConferencePbx(agi_url=service.agi_url, campaign="promo", phone_ports=ports) as pbx:
        yield pbx


def joined(pbx: Pbx, room: str, prefix: str) -> str:
    """The channel (name starting with `prefix`) that joined `room`."""
    event = pbx.ami.wait_event(lambda e: e.get("Event") == "ConfbridgeJoin"
                               and e.get("Conference") == room
                               and e.get("Channel", "").startswith(prefix), timeout=30)
    return event["Channel"]


@pytest.mark.parametrize("listener", ["none", "connected"])
def test_keys_in_a_room_are_filed_on_the_callee_in_that_room(
        service: Service, conference_pbx: ConferencePbx, tmp_path: Path, listener: str) -> None:
    pbx = conference_pbx
    serve_consented(service, pbx, tmp_path, CALLEES, CONSENT_AT, listener == "connected")

    def timeline(number: str) -> dict:
        return json.loads(service.cli("history", number, "--json").stdout)

    dtmf = {name: [key] for name, (_, _, key, _) in AGENTS.items()}
    with agent_phones(pbx, dtmf, on_notify=True) as phones:
        # The agents' phones are called into their rooms (README: the dialer
        # may do it, or the agent dials the room).
        seats = {}
        for name, (room, *_) in AGENTS.items():
            assert pbx.ami.action("Originate", Channel=f"PJSIP/{name}", Context="conference-agent",
                                  Exten=room, Priority="1", Async="true",
                                  Timeout="30000").get("Response") == "Success"
        for name, (room, *_) in AGENTS.items():
            seats[name] = joined(pbx, room, f"PJSIP/{name}-")
        with pbx.carrier(response=200):  # the callees stay until the agents leave
            # The calls at once, each to its room (what the dialer sends).
            sent = [(room, c) for room, callees, *_ in AGENTS.values() for c in callees]
            for room, callee in [*sent, NO_AGENT]:
                assert pbx.ami.action(
                    "Originate", Channel=f"Local/{callee}@conference-outbound/n",
                    Context="conference-answered", Exten=callee, Priority="1",
                    CallerID=f"<{PRESENTED}>", Async="true", Timeout="30000",
                    Variable=[f"{channelvars.CAMPAIGN}=promo", f"{channelvars.ROOM}={room}"],
                ).get("Response") == "Success"
            for room, callee in sent:
                joined(pbx, room, f"Local/{callee}@conference-outbound-")
            for seat in seats.values():
                pbx.notify_channel(seat)  # now key

            def keyed() -> bool:
                messages = pbx.messages_log.read_text(errors="replace")
                return all(f"room={room}" in messages for room in ("603", "604")) and all(
                    timeline(c)["attempts"] and timeline(c)["attempts"][0]["disposition"]
                    for _, callees, _, expect in AGENTS.values() if expect for c in callees)

            wait_until(keyed, 30, "the agents' keys filed or refused")
            for seat in seats.values():
                # The attempt was the agent's for the key only (LOCAL): the
                # next callee in the room cannot inherit it.
                assert not pbx.getvar(seat, channelvars.ATTEMPT), seat
            # the agents leave: their callees with them
            hang_up_agents(pbx, seats.values(), phones.values(), timeline, CALLEES)

    right = 0
    for name, (_, callees, keys, expect) in AGENTS.items():
        assert phones[name].sent_infos_answered() == len(keys), name
        for callee in callees:
            t = timeline(callee)
            (attempt,) = t["attempts"]
            assert attempt["outcome"] == "answered" and attempt["cause"] == 16, attempt
            assert attempt["answered_at"] and attempt["ended_at"], attempt
            if expect is None:  # the key was not filed: not here, not anywhere
                assert attempt["disposition"] is None and not t["refusals"], (name, callee, t)
                continue
            disposition, refusal = expect
            assert attempt["disposition"] == disposition, (name, callee, t)
            if refusal:
                (r,) = t["refusals"]
                assert r["attempt_id"] == attempt["id"], (name, callee, t)
            else:
                assert not t["refusals"], (name, callee, t)
            right += 1
    (alone,) = timeline(NO_AGENT[1])["attempts"]
    assert alone["outcome"] == "answered" and alone["disposition"] is None, alone
    print(f"conference topology ({listener} listener): {right}/2 dispositions and outcomes "
          f"on the right attempt; keys in an empty room and a room with two callees: "
          f"0 filed")
    messages = pbx.messages_log.read_text(errors="replace")
    not_recorded = sorted(line.split("room=")[1] for line in messages.splitlines()
                          if "NOT recorded" in line)
    # The keys in rooms 603 and 604: refused out loud, and nowhere filed.
    assert len(not_recorded) == 2, not_recorded
    assert not_recorded[0].startswith("603 ") and "reason=0 callees" in not_recorded[0]
    assert not_recorded[1].startswith("604 ") and "reason=2 callees" in not_recorded[1]
    assert f"no agent in room {NO_AGENT[0]} for {NO_AGENT[1]}" in messages
    for name, (_, callees, _, expect) in AGENTS.items():
        for callee in callees:
            decision = service.check_json(callee, at=LATER)
            assert ("R-31" in decision["rules"]) == bool(expect and expect[1]), (name, decision)
