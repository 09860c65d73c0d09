"""Issue 3 end to end: real Asterisk 22, real sipp agents and carrier, real
`sentinelle serve`. A blocked call must reach the agent as SIP 403 / Q.850
cause 21 and never reach the carrier."""

from __future__ import annotations

import socket

from tests.e2e.conftest import Service

NUMBER = "0612345678"


def _blocked(result) -> bool:
    return (result.status, result.q850) == (403, 21)


def test_allowed_call_reaches_carrier_and_is_recorded(service, pbx):
    service.consent(NUMBER)
    service.start()
    with pbx.carrier(response=200) as carrier:
        r = pbx.call(NUMBER, campaign="promo")
        assert r.status == 200
        assert carrier.numbers() == [NUMBER]
    history = service.cli("history", NUMBER, "--json").stdout
    assert '"attempts": [{' in history
    [decision] = service.decisions()
    assert decision["verdict"] == "allow" and decision["source"] == "fastagi"
    assert decision["caller_id"] == "0162000000" and decision["attempt"] == 1


def test_blocks_per_rule_family_never_reach_the_carrier(service, pbx, tmp_path):
    """Consent (R-11), caller ID (R-41, R-40), refusal (R-31), frequency
    (R-30) and hours (R-20, on a second service frozen at 13:30)."""
    for n in ("0611111111", "0622222222", "0633333333"):
        service.consent(n)
    service.cli("refusal", "add", "0622222222", "--campaign", "promo",
                "--at", "2026-11-20T11:00:00+01:00")
    service.start()
    with pbx.carrier(response=200, call_ms=100) as carrier:
        assert _blocked(pbx.call(NUMBER, campaign="promo"))  # no consent: R-11
        assert _blocked(pbx.call("0611111111", caller_id="0612000000"))  # mobile: R-41
        assert _blocked(pbx.call("0611111111", masked=True))  # masked: R-40
        assert _blocked(pbx.call("0622222222"))  # refusal: R-31 (+ R-11 revoked)
        allowed = [pbx.call("0633333333", hold_ms=100).status for _ in range(4)]
        assert allowed == [200] * 4
        assert _blocked(pbx.call("0633333333"))  # fifth in 30 days: R-30
        assert carrier.numbers() == ["0633333333"] * 4
    rules = [d["rules"] for d in service.decisions() if d["verdict"] == "block"]
    # a mobile caller ID is no NPV either
    assert rules == [["R-11"], ["R-41", "R-42"], ["R-40"], ["R-11", "R-31"], ["R-30"]]

    lunch = Service(tmp_path / "lunch", at="2026-12-01T13:30:00+01:00", store=service.store)
    lunch.start()
    try:
        pbx.set_global("SENTINELLE_AGI", lunch.agi_url)
        with pbx.carrier(response=200) as carrier:
            assert _blocked(pbx.call("0611111111"))
            assert carrier.count() == 0
        assert [d["rules"] for d in lunch.decisions()] == [["R-20"]]
    finally:
        lunch.stop()


def test_service_down_fails_closed(service, pbx):
    service.consent(NUMBER)  # would be allowed if the service answered
    with pbx.carrier(response=200) as carrier:
        r = pbx.call(NUMBER)
        assert _blocked(r)
        assert carrier.count() == 0


def test_health_check_connect_close_is_harmless(service, pbx):
    service.consent(NUMBER)
    service.start()
    for _ in range(50):
        socket.create_connection(("127.0.0.1", service.port), timeout=1).close()
    with pbx.carrier(response=200, call_ms=100) as carrier:
        assert pbx.call(NUMBER).status == 200
        assert carrier.count() == 1
    assert service.proc is not None and service.proc.poll() is None


def test_twenty_agents_same_number_at_once_allow_exactly_four(service, pbx):
    """R-30 through the real PBX: the atomic check-and-record holds under
    20 simultaneous FastAGI requests."""
    service.consent(NUMBER)
    service.start()
    with pbx.carrier(response=200, call_ms=300) as carrier:
        results = pbx.calls([{"number": NUMBER, "agent": f"agent{i}", "hold_ms": 300}
                             for i in range(1, 21)])
        statuses = sorted(r.status for r in results)
        assert statuses.count(200) == 4, statuses
        assert all(_blocked(r) for r in results if r.status != 200)
        assert carrier.wait_for(4) == 4
    verdicts = [d["verdict"] for d in service.decisions()]
    assert verdicts.count("allow") == 4 and verdicts.count("block") == 16


def test_sigterm_is_graceful(service, pbx):
    service.start()
    assert service.stop() == 0
    assert "stopped" in service.log.read_text()
