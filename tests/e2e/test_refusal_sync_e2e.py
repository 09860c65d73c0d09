"""Refusals keyed by the agent are recorded synchronously by the FastAGI
`disposition` route, on the real Asterisk, with NO ARI listener at all: a
refusal must never depend on the listener being connected (Asterisk keeps no
event for an app that is not). Here `serve` has no [ari] section."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.e2e.conftest import Service

NUMBER = "0612345678"


@pytest.mark.parametrize(("keys", "source"), [
    ("*9", "fastagi disposition:refused"),
    ("*81", "fastagi disposition:refused"),
    ("*82", "fastagi disposition:do-not-call"),
])
def test_refusal_recorded_without_any_listener(service: Service, pbx, keys, source):
    service.consent(NUMBER)
    service.start()
    assert "[ari]" not in service.config.read_text()
    with pbx.carrier(response=200):
        r = pbx.call(NUMBER, campaign="promo", send_dtmf=keys, hold_ms=800)
        assert r.status == 200
    timeline = json.loads(service.cli("history", NUMBER, "--json").stdout)
    (refusal,) = timeline["refusals"]
    assert refusal["source"] == source
    assert refusal["attempt_id"] == timeline["attempts"][0]["id"]
    decision = service.check_json(NUMBER)
    assert decision["verdict"] == "block" and "R-31" in decision["rules"]
    assert "NOT recorded" not in pbx.messages_log.read_text(errors="replace")


def test_the_agent_is_told_when_the_refusal_cannot_be_recorded(service: Service, pbx):
    """The service stops after the check: the route cannot be reached, the
    dialplan logs a NOTICE the admin sees, and the call itself goes on."""
    service.consent(NUMBER)
    service.start()
    with pbx.carrier(response=200):
        result: list = []
        caller = threading.Thread(target=lambda: result.append(
            pbx.call(NUMBER, campaign="promo", send_dtmf="*81", hold_ms=2500)))
        caller.start()
        time.sleep(0.8)  # the check has run, the call is up
        service.stop()
        caller.join(15)
    assert result and result[0].status == 200
    assert "sentinelle: disposition refused NOT recorded" in pbx.messages_log.read_text(
        errors="replace")
