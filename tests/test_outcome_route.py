"""The FastAGI `outcome` route records what became of a call from the hangup
handler the check pushes, so that no outcome depends on the ARI listener
being connected (fake Asterisk here; the real one in
tests/e2e/test_outcome_handler_e2e.py)."""

from __future__ import annotations

from datetime import timedelta

from sentinelle.store import Store
from sentinelle.store.values import from_ts
from tests.helpers.fakeasterisk import headers_for
from tests.test_disposition_route import allowed_attempt, session

E164 = "+33612345678"


def outcome(attempt: str, **fields: str) -> dict[str, str]:
    """The headers of `AGI(.../outcome,ATTEMPT,key=value,...)` as the handler sends them."""
    headers = headers_for(attempt, campaign=None, script="outcome")
    for n, (key, value) in enumerate(fields.items(), start=2):
        headers[f"agi_arg_{n}"] = f"{key}={value}"
    return headers


def answered(attempt: str, **over: str) -> dict[str, str]:
    fields = dict(checked="1000.250", current=attempt, dialstatus="ANSWER", leg_cause="16",
                  cause="16", answered_ms="5000", dialled_ms="9000", ended="1012.750")
    fields.update(over)
    return outcome(attempt, **fields)


def row(store: Store, attempt: str) -> dict:
    found = store.attempt(int(attempt))
    assert found is not None
    return found


def test_an_answered_call_is_recorded_with_its_times_and_cause(config, store):
    attempt = allowed_attempt(config, store)
    (r,) = session(config, answered(attempt))
    assert r.variables["SENTINELLE_OUTCOME"] == "answered"
    assert list(r.variables)[-1] == "SENTINELLE_OUTCOME"  # the status goes last
    got = row(store, attempt)
    at = from_ts(got["at"]) if isinstance(got["at"], str) else got["at"]
    ended = from_ts(got["ended_at"]) if isinstance(got["ended_at"], str) else got["ended_at"]
    answered_at = (from_ts(got["answered_at"]) if isinstance(got["answered_at"], str)
                   else got["answered_at"])
    assert (got["outcome"], got["cause"], got["cause_txt"]) == ("answered", 16, "Normal Clearing")
    # Asterisk's durations, laid on the attempt's own instant (the clock is frozen here).
    assert ended - at == timedelta(seconds=12.5)
    assert ended - answered_at == timedelta(seconds=5)


def test_busy_and_no_answer_take_the_callee_legs_cause(config, store):
    attempt = allowed_attempt(config, store)
    (r,) = session(config, answered(attempt, dialstatus="BUSY", leg_cause="17", answered_ms=""))
    assert r.variables["SENTINELLE_OUTCOME"] == "busy"
    got = row(store, attempt)
    assert (got["outcome"], got["cause"], got["cause_txt"], got["answered_at"]) == (
        "busy", 17, "User busy", None)


def test_a_known_outcome_is_kept_and_an_unknown_one_completed(config, store):
    """The listener and the handler report the same call: the first known
    outcome stays; an `unknown` left by a listener outage is completed."""
    attempt = allowed_attempt(config, store)
    store.record_outcome(int(attempt), outcome="no-answer", answered_at=None, ended_at=None,
                         cause=19, cause_txt="User alerting, no answer")
    (kept,) = session(config, answered(attempt))
    assert kept.variables["SENTINELLE_OUTCOME"] == "no-answer"
    assert (row(store, attempt)["outcome"], row(store, attempt)["cause"]) == ("no-answer", 19)

    store.record_outcome(int(attempt), outcome="unknown", answered_at=None, ended_at=None,
                         cause=None, cause_txt=None)
    again, twice = session(config, answered(attempt), answered(attempt, dialstatus="BUSY"))
    assert again.variables["SENTINELLE_OUTCOME"] == "answered"
    assert twice.variables["SENTINELLE_OUTCOME"] == "answered"  # idempotent
    assert row(store, attempt)["outcome"] == "answered"


def test_a_superseded_attempt_does_not_take_the_later_calls_outcome(config, store):
    """The same channel ran a second check: DIALSTATUS is the later call's."""
    attempt = allowed_attempt(config, store)
    (r,) = session(config, answered(attempt, current=str(int(attempt) + 1)))
    assert r.variables["SENTINELLE_OUTCOME"] == "unknown"
    assert row(store, attempt)["outcome"] == "unknown"


def test_a_channel_that_never_dialled_failed(config, store):
    attempt = allowed_attempt(config, store)
    (r,) = session(config, outcome(attempt, current=attempt, dialstatus="", cause="16"))
    assert r.variables["SENTINELLE_OUTCOME"] == "failed"
    assert row(store, attempt)["ended_at"] is not None  # the service clock stands in


def test_errors_are_said_so_the_handler_can_log_them(config, store):
    allowed_attempt(config, store)
    no_attempt, unknown = session(config, answered(""), answered("999999"))
    for r in (no_attempt, unknown):
        assert r.variables["SENTINELLE_OUTCOME"] == "ERROR", r.variables
    assert "no attempt" in no_attempt.variables["SENTINELLE_REASON"]


def _ended(store: Store, attempt: str):
    value = row(store, attempt)["ended_at"]
    return from_ts(value) if isinstance(value, str) else value


def test_a_transferred_call_ends_when_its_conversation_does(config, store):
    """The first agent's channel reported at the transfer (12.5 s after the
    check); the second agent's reports the conversation's end (40 s): only
    the end moves, the answer time and the cause stay."""
    attempt = allowed_attempt(config, store)
    session(config, answered(attempt))
    before = row(store, attempt)
    (r,) = session(config, outcome(attempt, checked="1000.250", continued="yes",
                                   ended="1040.250"))
    assert (r.variables["SENTINELLE_OUTCOME"], r.variables["SENTINELLE_REASON"]) == (
        "answered", "end extended")
    after = row(store, attempt)
    at = from_ts(after["at"]) if isinstance(after["at"], str) else after["at"]
    assert _ended(store, attempt) - at == timedelta(seconds=40)
    assert {k: after[k] for k in ("outcome", "answered_at", "cause", "cause_txt")} == {
        k: before[k] for k in ("outcome", "answered_at", "cause", "cause_txt")}


def test_a_continued_report_never_shortens_nor_makes_up_an_outcome(config, store):
    """A second agent who hung up before the first one left (an attended
    transfer given up) reports first: nothing is recorded, and the first
    channel's report still is; a report of an earlier end changes nothing."""
    attempt = allowed_attempt(config, store)
    (early,) = session(config, outcome(attempt, checked="1000.250", continued="yes",
                                       ended="1005.250"))
    assert early.variables["SENTINELLE_OUTCOME"] == "open"
    assert row(store, attempt)["outcome"] is None
    session(config, answered(attempt))
    ended = _ended(store, attempt)
    (sooner,) = session(config, outcome(attempt, checked="1000.250", continued="yes",
                                        ended="1005.250"))
    assert sooner.variables["SENTINELLE_OUTCOME"] == "answered"
    assert _ended(store, attempt) == ended

    busy = allowed_attempt(config, store)  # a second call to the number
    session(config, answered(busy, dialstatus="BUSY", leg_cause="17", answered_ms=""))
    ended = _ended(store, busy)
    (kept,) = session(config, outcome(busy, checked="1000.250", continued="yes",
                                      ended="1040.250"))
    assert kept.variables["SENTINELLE_OUTCOME"] == "busy"
    assert _ended(store, busy) == ended
