"""The dialer topology (issue #12, 1b) on the real Asterisk, with the shipped
example dialplan/extensions_dialer.conf: AMI Originate of
`Local/NUMBER@dialer-outbound/n`, the check on the Local channel before
Dial(), the answered callee into Queue() with two agents (SIPp phones) as
PJSIP queue members.

Two calls to two callees at once, and the two agents key different codes
(one `*9`, a refusal; the other `*83`, a callback, which is no refusal), so
that a refusal filed on the wrong attempt would show: each agent's phone
says which callee it was given (the caller ID it received), and the store
must hold the refusal on that callee's attempt and the callback on the
other's. Without an ARI listener the refusal is recorded by the
`disposition` route and the outcome by the hangup handler on the Local
channel that ran the check; with the listener connected, both report.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import statistics
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Service
from tests.e2e.test_outcome_handler_e2e import serve_consented
from tests.pbx import Pbx, agent_phones, free_ports
from tests.pbx.pbx import DIALPLAN_DIR, PbxError

CONSENT_AT = "2026-11-01T10:00:00+01:00"
LATER = "2026-12-01T11:00:00+01:00"  # the service runs at 10:30 (tests.helpers FROZEN)
CALLEES = ("0612345701", "0612345702")
PRESENTED = "0162000000"  # the professional's number, in an Arcep NPV range
# Which agent keys what, and what the store must then say for its callee.
KEYS = {"qagent1": "*9", "qagent2": "*83"}
EXPECT = {"qagent1": ("refused", True), "qagent2": ("callback", False)}

QUEUES = """[general]

[prospecting]
strategy = linear
ringinuse = no
autofill = yes
timeout = 15
retry = 1
wrapuptime = 0
joinempty = yes
leavewhenempty = no
member => PJSIP/qagent1
member => PJSIP/qagent2
"""


# The example's guarded context with the guard replaced by a no-op, for the
# post-dial delay baseline (issue #12: "beside the same calls with the guard
# replaced by a no-op, in the same run").
NOOP_GUARD = """
[dialer-outbound-noop]
exten => _[0+].,1,NoOp(no-op guard: call to ${EXTEN} campaign=${SENTINELLE_CAMPAIGN})
 same => n,GoSub(noop-guard,s,1(${EXTEN},${SENTINELLE_CAMPAIGN}))
 same => n,Dial(PJSIP/${EXTEN}@trunk,30)
 same => n,Hangup()

[noop-guard]
exten => s,1,Return()
"""


class DialerPbx(Pbx):
    """The harness's Asterisk plus app_queue, the queue, its agents and the
    repository's dialplan/extensions_dialer.conf (as shipped)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, extra_dialplan="#include extensions_dialer.conf\n" + NOOP_GUARD,
                         **kwargs)

    def _configs(self) -> dict[str, str]:
        configs = super()._configs()
        configs["modules.conf"] = configs["modules.conf"].replace("noload => app_queue.so\n", "")
        trunk = "[trunk]\ntype = endpoint\n"
        assert trunk in configs["pjsip.conf"]
        # As README "Dialer topology" says: when the queue bridges the agent,
        # Asterisk would otherwise re-INVITE the callee with the agent's
        # identity (a connected-line update through the Local channel).
        configs["pjsip.conf"] = configs["pjsip.conf"].replace(
            trunk, trunk + "send_connected_line = no\n")
        configs["queues.conf"] = QUEUES
        # README "Dialer topology": the attempt in every ARI channel snapshot,
        # so the listener knows the queue agent's channel.
        general = "[general]\nenabled = yes\n"
        assert general in configs["ari.conf"]
        configs["ari.conf"] = configs["ari.conf"].replace(
            general, general + "channelvars = SENTINELLE_ATTEMPT\n")
        return configs

    def write_config(self) -> None:
        super().write_config()
        shutil.copy(DIALPLAN_DIR / "extensions_dialer.conf", self.etc_dir / "extensions_dialer.conf")


@pytest.fixture
def dialer_pbx(service: Service):
    ports = dict(zip(KEYS, free_ports(len(KEYS), kind=socket.SOCK_DGRAM),
                     strict=True))
    with DialerPbx(agi_url=service.agi_url, campaign="promo", phone_ports=ports) as pbx:
        yield pbx


def originate(pbx: Pbx, number: str, context: str = "dialer-outbound") -> dict[str, str]:
    """What a dialer sends (README, "Dialer topology")."""
    return pbx.ami.action(
        "Originate", Channel=f"Local/{number}@{context}/n", Context="dialer-answered",
        Exten=number, Priority="1", CallerID=f"<{PRESENTED}>",
        Variable="SENTINELLE_CAMPAIGN=promo", Async="true", Timeout="30000")


@pytest.mark.parametrize("listener", ["none", "connected"])
def test_refusal_and_outcome_are_filed_on_the_right_attempt(service: Service, dialer_pbx: Pbx,
                                                             tmp_path: Path, listener: str) -> None:
    """With the listener connected too, both sources report each call and
    must agree: one refusal, the same dispositions and outcomes."""
    pbx = dialer_pbx
    serve_consented(service, pbx, tmp_path, CALLEES, CONSENT_AT, listener == "connected")
    if "app_queue.so" not in pbx.cli("module show like app_queue"):
        raise PbxError("app_queue is not loaded")
    with agent_phones(pbx, dict(KEYS)) as by_name:
        phones = list(by_name.values())
        with pbx.carrier(response=200, call_ms=6000):  # the callee hangs up after 6 s
            for number in CALLEES:
                assert originate(pbx, number).get("Response") == "Success"
            deadline = time.monotonic() + 60
            while any(p.proc.poll() is None for p in phones):
                assert time.monotonic() < deadline, "the agents' calls did not end"
                time.sleep(0.2)

    given = {p.name: p.callees() for p in phones}
    # Each agent was given one callee, a different one: a mix-up could show.
    assert sorted(c for cs in given.values() for c in cs) == sorted(CALLEES), given

    def timeline(number: str) -> dict:
        return json.loads(service.cli("history", number, "--json").stdout)

    deadline = time.monotonic() + 30
    while not all(timeline(n)["attempts"] and timeline(n)["attempts"][0]["outcome"]
                  for n in CALLEES):
        assert time.monotonic() < deadline, [timeline(n) for n in CALLEES]
        time.sleep(0.3)
    filed = 0
    for agent, (callee,) in given.items():
        t = timeline(callee)
        (attempt,) = t["attempts"]
        disposition, refusal = EXPECT[agent]
        assert attempt["disposition"] == disposition, (agent, callee, t)
        assert attempt["outcome"] == "answered" and attempt["cause"] == 16, attempt
        if refusal:
            (r,) = t["refusals"]
            assert r["attempt_id"] == attempt["id"], (agent, callee, t)
        else:
            assert not t["refusals"], (agent, callee, t)
        filed += 1
    print(f"dialer topology: {filed}/{len(CALLEES)} dispositions and outcomes on the right attempt")
    if listener == "connected":
        # The listener saw the agent's *9 too (its channel known through
        # channelvars) and filed it on the same attempt: still one refusal.
        by_dtmf = {e["attempt"] for e in service.log_lines()
                   if e.get("msg") in ("refusal recorded", "refusal already recorded")
                   and e.get("source") == "dtmf"}
        refusing = [callee for agent, (callee,) in given.items() if EXPECT[agent][1]]
        assert by_dtmf == {timeline(c)["attempts"][0]["id"] for c in refusing}, by_dtmf
    log = pbx.messages_log.read_text(errors="replace")
    assert "NOT recorded" not in log, log[-3000:]
    for agent, (callee,) in given.items():
        # Later than the frozen clock: under `serve --at` the listener dates
        # a refusal at the frozen instant plus the seconds since start.
        decision = service.check_json(callee, at=LATER)
        assert ("R-31" in decision["rules"]) == EXPECT[agent][1], (agent, callee, decision)



_EXECUTING = re.compile(r"^\[([0-9-]+ [0-9:.]+)\] VERBOSE.*Executing \[([0-9+]+)@(dialer-outbound(?:-noop)?):"
                        r"(\d+)\] (NoOp|Dial)\(")


def dial_delays(full_log: str) -> dict[str, list[float]]:
    """Per guarded context, the time from entering it to Dial() (seconds),
    from Asterisk's own log: the post-dial delay the guard adds."""
    entered: dict[tuple[str, str], datetime] = {}
    delays: dict[str, list[float]] = {"dialer-outbound": [], "dialer-outbound-noop": []}
    for line in full_log.splitlines():
        m = _EXECUTING.match(line)
        if not m:
            continue
        at, number, context, _, app = m.groups()
        when = datetime.strptime(at, "%Y-%m-%d %H:%M:%S.%f")
        if app == "NoOp":
            entered[(context, number)] = when
        elif (context, number) in entered:
            delays[context].append((when - entered.pop((context, number))).total_seconds())
    return delays


def test_post_dial_delay_beside_a_noop_guard(service: Service, dialer_pbx: Pbx) -> None:
    """A figure, not a bound (this VM is shared): the check's added post-dial
    delay in the dialer topology, against the same Originates through a
    context whose guard is a no-op Gosub, alternated in the same run."""
    pbx = dialer_pbx
    numbers = [f"06123458{i:02d}" for i in range(20)]
    consents = service.workdir / "consents.csv"
    consents.write_text("number,campaign,given_at,source\n" + "".join(
        f"{n},promo,{CONSENT_AT},e2e web form\n" for n in numbers))
    service.cli("import", "consents", str(consents))
    service.start()
    with pbx.carrier(response=486) as carrier:  # busy at once: the calls end by themselves
        for i, number in enumerate(numbers):
            for context in ("dialer-outbound", "dialer-outbound-noop"):
                assert originate(pbx, number, context).get("Response") == "Success"
                assert carrier.wait_for(2 * i + 1 + (context != "dialer-outbound"),
                                        timeout=30) >= 2 * i + 1
    delays = dial_delays(pbx.full_log.read_text(errors="replace"))
    assert len(delays["dialer-outbound"]) == len(delays["dialer-outbound-noop"]) == len(numbers)
    guard, noop = (statistics.median(delays[c]) * 1000
                   for c in ("dialer-outbound", "dialer-outbound-noop"))
    print(f"post-dial delay, Local channel entering the guarded context to Dial(): "
          f"sentinelle check p50 {guard:.1f} ms (max {max(delays['dialer-outbound']) * 1000:.1f}),"
          f" no-op guard p50 {noop:.1f} ms (max {max(delays['dialer-outbound-noop']) * 1000:.1f}),"
          f" added {guard - noop:.1f} ms")
