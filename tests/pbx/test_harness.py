"""Tests of the PBX harness itself, against the real Asterisk (never skipped).

Why: every end-to-end test of sentinelle trusts this harness to tell a call
that left the trunk from one that did not. These tests pin that down with a
trivial in-test FastAGI responder instead of the real service, so a failure
here points at the harness or the dialplan, not at sentinelle's rules.

If the Asterisk root cannot be built these tests error out (PbxError): a
missing PBX must show up red, not as a skip.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from .pbx import LOOPBACK, Pbx, agent_phones, free_ports

# decide(env) returns the variables to set, or a list of raw AGI commands.
Verdict = Callable[[dict[str, str]], dict[str, str] | list[str] | None]


class _AgiHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        env: dict[str, str] = {}
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip("\n")
            if not line:
                break
            key, _, value = line.partition(": ")
            env[key] = value
        server: FastAgi = self.server  # type: ignore[assignment]
        if env.get("agi_network_script") == "outcome":
            # The hangup handler the check pushes: kept apart, so that the
            # tests below count the checks (it may come before or after they look).
            server.outcomes.append(env)
            self.wfile.write(b'SET VARIABLE SENTINELLE_OUTCOME "answered"\n')
            self.wfile.flush()
            self.rfile.readline()
            return
        server.requests.append(env)
        decision = server.decide(env) or {}
        if isinstance(decision, dict):
            decision = [f'SET VARIABLE {name} "{value}"' for name, value in decision.items()]
        for command in decision:
            self.wfile.write(f"{command}\n".encode())
            self.wfile.flush()
            reply = self.rfile.readline().decode(errors="replace").strip()
            server.replies.append(reply)


class FastAgi(socketserver.ThreadingTCPServer):
    """Minimal FastAGI responder: `decide(env)` returns the variables to set."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AgiHandler)
        self.port = self.server_address[1]
        self.url = f"agi://127.0.0.1:{self.port}"
        self.requests: list[dict[str, str]] = []
        self.outcomes: list[dict[str, str]] = []  # hangup handlers' reports
        self.replies: list[str] = []
        self.decide: Verdict = allow_all

    def reset(self, decide: Verdict) -> None:
        self.requests.clear()
        self.outcomes.clear()
        self.replies.clear()
        self.decide = decide


def allow_all(env: dict[str, str]) -> dict[str, str]:
    if env.get("agi_network_script") == "disposition":  # AGI(.../disposition,CODE,ATTEMPT)
        return {"SENTINELLE_DISPOSITION": "OK"}
    return {"SENTINELLE_VERDICT": "ALLOW", "SENTINELLE_ATTEMPT": f"att-{env['agi_arg_1']}"}


def block_all(env: dict[str, str]) -> dict[str, str]:
    return {"SENTINELLE_VERDICT": "BLOCK", "SENTINELLE_REASON": "test block"}


@pytest.fixture(scope="module")
def agi() -> Iterator[FastAgi]:
    server = FastAgi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pbx(agi: FastAgi) -> Iterator[Pbx]:
    with Pbx(agi_url=agi.url, campaign="harness-default") as pbx:
        yield pbx
    print(f"Asterisk logs: {pbx.log_dir}")


@pytest.fixture(autouse=True)
def _fresh(pbx: Pbx, agi: FastAgi) -> None:
    agi.reset(allow_all)
    pbx.set_global("SENTINELLE_AGI", agi.url)


def test_allowed_call_reaches_carrier(pbx: Pbx, agi: FastAgi) -> None:
    with pbx.carrier(response=200) as carrier:
        result = pbx.call("0612345678", agent="agent2", campaign="spring")
        assert result.status == 200, result.log
        assert carrier.numbers() == ["0612345678"]
    (env,) = agi.requests
    assert env["agi_network_script"] == "check"
    assert (env["agi_arg_1"], env["agi_arg_2"]) == ("0612345678", "spring")
    assert env["agi_callerid"] == "0162000000"
    assert agi.replies == ["200 result=1", "200 result=1"]
    event = pbx.ami.wait_event(
        lambda e: e.get("UserEvent") == "SentinelleAttempt" and e.get("number") == "0612345678"
    )
    assert event["attempt"] == "att-0612345678"
    assert event["campaign"] == "spring"
    # The hangup handler pushed on ALLOW reports the call's end.
    deadline = time.monotonic() + 20
    while not agi.outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    (report,) = agi.outcomes
    assert report["agi_arg_1"] == "att-0612345678"
    assert report["agi_arg_4"] == "dialstatus=ANSWER"


def test_default_campaign_and_masked_caller_id(pbx: Pbx, agi: FastAgi) -> None:
    with pbx.carrier(response=200):
        assert pbx.call("0612345679", masked=True).status == 200
    (env,) = agi.requests
    assert env["agi_arg_2"] == "harness-default"
    # 0x20 bits = presentation restricted (Privacy: id honoured)
    assert int(env["agi_callingpres"]) & 0x60 == 0x20


def test_blocked_call_gets_403_and_never_reaches_carrier(pbx: Pbx, agi: FastAgi) -> None:
    agi.reset(block_all)
    with pbx.carrier(response=200) as carrier:
        result = pbx.call("0912345678")
        assert result.status == 403
        assert result.q850 == 21
        assert carrier.count() == 0
    assert "sentinelle: BLOCK 0912345678" in pbx.messages_log.read_text()


@pytest.mark.parametrize(
    ("decide", "status"),
    [
        (lambda env: None, 403),
        (lambda env: {"SENTINELLE_VERDICT": "?"}, 403),
        # AGISTATUS=HANGUP: the dialplan stops inside the check, before Dial().
        (lambda env: ["SET VARIABLE SENTINELLE_VERDICT ALLOW", "HANGUP"], None),
    ],
    ids=["no-verdict", "odd-verdict", "agi-hangup"],
)
def test_anything_but_allow_blocks(pbx: Pbx, agi: FastAgi, decide: Verdict, status: int | None) -> None:
    agi.reset(decide)
    with pbx.carrier(response=200) as carrier:
        result = pbx.call("0612340000")
        assert result.status != 200
        if status:
            assert result.status == status
        assert carrier.count() == 0
    assert len(agi.requests) == 1


def test_unreachable_agi_blocks(pbx: Pbx) -> None:
    (closed,) = free_ports(1)
    pbx.set_global("SENTINELLE_AGI", f"agi://127.0.0.1:{closed}")
    with pbx.carrier(response=200) as carrier:
        result = pbx.call("0612345670")
        assert (result.status, result.q850) == (403, 21)
        assert carrier.count() == 0


@pytest.mark.parametrize(("response", "cause"), [(486, 17), (480, 19)])
def test_carrier_failure_is_relayed(pbx: Pbx, response: int, cause: int) -> None:
    with pbx.carrier(response=response) as carrier:
        result = pbx.call("0612345671")
        assert (result.status, result.q850) == (response, cause)
        assert carrier.count() == 1


def test_twenty_agents_at_once(pbx: Pbx, agi: FastAgi) -> None:
    numbers = [f"06100000{i:02d}" for i in range(1, 21)]
    with pbx.carrier(response=200) as carrier:
        results = pbx.calls(
            [{"number": n, "agent": f"agent{i}", "hold_ms": 1000} for i, n in enumerate(numbers, 1)]
        )
        assert [r.status for r in results] == [200] * 20
        assert sorted(carrier.numbers()) == numbers
    assert len(agi.requests) == 20


def test_info_dtmf_triggers_disposition_event(pbx: Pbx) -> None:
    with pbx.carrier(response=200):
        result = pbx.call("0612345672", send_dtmf="*82", hold_ms=800)
        assert result.status == 200
    event = pbx.ami.wait_event(
        lambda e: e.get("UserEvent") == "SentinelleDisposition" and e.get("attempt") == "att-0612345672"
    )
    assert event["code"] == "do-not-call"


def test_ami_originate_goes_through_the_check(pbx: Pbx, agi: FastAgi) -> None:
    with pbx.carrier(response=200) as carrier:
        response = pbx.originate("0612345673", campaign="bench", hold_s=0.2)
        assert response["Response"] == "Success"
        assert carrier.wait_for(1) == 1
    assert agi.requests[0]["agi_arg_2"] == "bench"


def test_restart_keeps_working(pbx: Pbx) -> None:
    pbx.restart()
    pbx.set_global("SENTINELLE_AGI", pbx.agi_url)
    with pbx.carrier(response=200) as carrier:
        assert pbx.call("0612345674").status == 200
        assert carrier.count() == 1


def test_a_port_taken_meanwhile_moves_the_contact(agi: FastAgi) -> None:
    """A phone's or the carrier's port is chosen free when the PBX is
    configured, and can be bound by something else before sipp starts there
    (one CI run lost a conference test so: "Unable to bind main socket").
    The harness then moves the contact, in the running Asterisk too: the
    calls still reach the phone and the carrier on their new ports."""
    (phone_port,) = free_ports(1, socket.SOCK_DGRAM)
    with (Pbx(agi_url=agi.url, agents=1, phone_ports={"fixed1": phone_port}) as pbx,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as on_phone,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as on_carrier):
        carrier_port = pbx.carrier_port
        on_phone.bind((LOOPBACK, phone_port))
        on_carrier.bind((LOOPBACK, carrier_port))
        with agent_phones(pbx, {"fixed1": "1"}, after_ms=300) as phones:
            phone = phones["fixed1"]
            assert phone.port != phone_port and pbx.phone_ports == {"fixed1": phone.port}
            assert f"{LOOPBACK}:{phone.port}" in pbx.cli("pjsip show aor fixed1")
            response = pbx.ami.action("Originate", Channel="PJSIP/fixed1", Application="Wait",
                                      Data="2", Async="true", Timeout="10000")
            assert response.get("Response") == "Success", response
            deadline = time.monotonic() + 20
            while not phone.done and time.monotonic() < deadline:
                time.sleep(0.1)
            assert phone.done and phone.proc.returncode == 0, phone.proc.returncode
            assert phone.received("INVITE") == 1
        with pbx.carrier(response=200) as carrier:
            assert pbx.carrier_port != carrier_port
            result = pbx.call("0612345679", agent="agent1")
            assert result.status == 200, result.log
            assert carrier.numbers() == ["0612345679"]
