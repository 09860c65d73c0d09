"""The listener in the dialer topology (issue #12, 1b): the check runs on a
Local channel, and the agent who keys the refusal is a queue member's
channel the listener never saw announced. With ari.conf
`channelvars = SENTINELLE_ATTEMPT`, every event's channel snapshot carries
the attempt, so the agent's keys are filed on the right attempt; a dialled
leg (the callee side, which inherits the variable through Dial) never
counts. Two calls at once, so that a mix-up would show."""

from __future__ import annotations

import asyncio
from typing import Any

from sentinelle.config import Config
from sentinelle.pbx.listener import Listener
from sentinelle.store import Store
from tests.test_ari_listener import Call, ari_config, db, feed, new_attempt  # noqa: F401 (fixtures)


def agent_channel(call: Call, name: str, attempt: int | None, app: str = "AppQueue") -> dict[str, Any]:
    """A queue member's channel snapshot as Asterisk sends it with channelvars."""
    return {"id": f"{call.a['id']}-{name}", "name": f"PJSIP/{name}-0000000a", "state": "Up",
            "dialplan": {"context": "outbound", "exten": "s", "priority": 1, "app_name": app,
                         "app_data": ""},
            "channelvars": {"SENTINELLE_ATTEMPT": "" if attempt is None else str(attempt)}}


def keys(call: Call, channel: dict[str, Any], digits: str) -> list[dict[str, Any]]:
    return [call._ev("ChannelDtmfReceived", dt=0.2, channel=dict(channel), digit=d, duration_ms=160)
            for d in digits]


def test_a_queue_agents_keys_are_filed_on_its_callers_attempt(ari_config: Config, db: Store):  # noqa: F811
    listener = Listener(ari_config)
    first = Call(new_attempt(db, "+33612345671"))
    second = Call(new_attempt(db, "+33612345672"))
    agent1 = agent_channel(first, "qagent1", first.attempt)
    agent2 = agent_channel(second, "qagent2", second.attempt)
    feed(listener, [*first.answered(), *second.answered()])
    # The agent of the second call keys *9; the first call's agent keys nothing.
    feed(listener, [first.state("a", "Up"), *keys(second, agent2, "*9")])
    assert [r["attempt_id"] for r in db.timeline("+33612345672")["refusals"]] == [second.attempt]
    assert db.timeline("+33612345671")["refusals"] == []
    assert listener.refusals == 1
    feed(listener, [*first.hangup(), *second.hangup()])
    # The call ends with its origin and legs: an agent's channel may outlive it.
    assert db.attempt(first.attempt)["outcome"] == "answered"
    assert db.attempt(second.attempt)["outcome"] == "answered"
    del agent1
    asyncio.run(listener.close())


def test_an_agent_channel_that_outlives_calls_follows_the_attempt_it_carries(
        ari_config: Config, db: Store):  # noqa: F811
    """An agent who stays connected (a conference seat) takes one call after
    another on one channel: each *9 goes to the attempt it carries now."""
    listener = Listener(ari_config)
    first = Call(new_attempt(db, "+33612345671"))
    second = Call(new_attempt(db, "+33612345672"))
    seat = agent_channel(first, "seat1", first.attempt)
    feed(listener, [*first.answered(), *keys(first, seat, "*"), *first.hangup()])
    seat["channelvars"]["SENTINELLE_ATTEMPT"] = str(second.attempt)
    feed(listener, [*second.answered(), *keys(second, seat, "*9")])
    assert db.timeline("+33612345671")["refusals"] == []
    assert [r["attempt_id"] for r in db.timeline("+33612345672")["refusals"]] == [second.attempt]
    asyncio.run(listener.close())


def test_a_dialled_leg_or_an_unknown_attempt_never_counts(ari_config: Config, db: Store):  # noqa: F811
    listener = Listener(ari_config)
    call = Call(new_attempt(db))
    leg = agent_channel(call, "trunk", call.attempt, app="AppDial")
    stray = agent_channel(call, "qagent9", call.attempt + 1000)
    feed(listener, [*call.answered(), *keys(call, leg, "*9"), *keys(call, stray, "*9")])
    assert db.timeline("+33612345678")["refusals"] == []
    feed(listener, call.hangup())
    assert db.attempt(call.attempt)["outcome"] == "answered"
    asyncio.run(listener.close())
