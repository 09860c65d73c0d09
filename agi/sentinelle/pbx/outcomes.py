"""What became of a call, from what Asterisk reports about it: one mapping
for the ARI listener (events) and the `outcome` route (the hangup handler's
DIALSTATUS and cause), and the route's recording and answer. Kept apart
from both: the classic per-call AGI records outcomes with these functions
too, and must pull in neither the listener's ARI client nor asyncio."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sentinelle.core.model import Outcome
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.wire import ARG_1, HEADER_PREFIX, ascii_safe
from sentinelle.store import Backend, StoreBusy, StoreError
from sentinelle.store.values import from_ts

ANSWERED, NO_ANSWER, BUSY, FAILED = (
    Outcome.ANSWERED, Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED)


def outcome_of(*, answered: bool, dialstatus: str, cause: int | None, dialled: bool) -> str:
    """answered / busy / no-answer / failed; the listener and the route agree
    on the same call because both ask here."""
    if answered or dialstatus == "ANSWER":
        return ANSWERED
    if dialstatus == "BUSY" or cause == 17:
        return BUSY
    if dialstatus in ("NOANSWER", "CANCEL") or cause in (18, 19):
        return NO_ANSWER
    if not dialled:
        return FAILED  # never dialled out (hung up before Dial, dialplan error)
    if dialstatus in ("", "RINGING", "PROGRESS", "PROCEEDING") and cause in (None, 0, 16):
        return NO_ANSWER  # rang, then the agent gave up
    return FAILED


# The handler's key=value arguments (arguments 2 and later).
CHECKED, CURRENT, DIALSTATUS, LEG_CAUSE, CAUSE, ANSWERED_MS, DIALLED_MS, ENDED, CONTINUED = (
    "checked", "current", "dialstatus", "leg_cause", "cause", "answered_ms", "dialled_ms",
    "ended", "continued")
MAX_ARGS = 16

# Asterisk's texts for the Q.850 causes (ast_cause2str), as the listener
# records them from ChannelDestroyed's cause_txt.
CAUSE_TEXT = {
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    22: "Number changed",
    27: "Destination out of order",
    28: "Invalid number format",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
}
KNOWN = frozenset(o.value for o in Outcome) - {Outcome.UNKNOWN.value}


def arguments(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(attempt, {key: value}) from the AGI arguments."""
    attempt = headers.get(ARG_1, "").strip()
    fields: dict[str, str] = {}
    for n in range(2, MAX_ARGS + 1):
        raw = headers.get(f"{HEADER_PREFIX}arg_{n}")
        if raw is None:
            break
        key, sep, value = raw.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return attempt, fields


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _cause(fields: Mapping[str, str]) -> int | None:
    """The callee leg's cause (what the carrier answered) when Asterisk kept
    one, else the channel's own."""
    for key in (LEG_CAUSE, CAUSE):
        value = _number(fields.get(key))
        if value is not None and int(value) > 0:
            return int(value)
    return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return from_ts(value) if isinstance(value, str) else None


def times(attempt_at: datetime | None, fields: Mapping[str, str], now: datetime,
          answered: bool) -> tuple[datetime, datetime | None]:
    """(ended_at, answered_at): the attempt's instant plus what Asterisk
    measured since the check; the service clock when that is missing."""
    checked, ended = _number(fields.get(CHECKED)), _number(fields.get(ENDED))
    if attempt_at is not None and checked is not None and ended is not None and ended >= checked:
        ended_at = attempt_at + timedelta(seconds=ended - checked)
    else:
        ended_at = now
    talk_ms = _number(fields.get(ANSWERED_MS))
    answered_at = ended_at - timedelta(milliseconds=talk_ms) if answered and talk_ms else None
    return ended_at, answered_at


def record(attempt: str, fields: Mapping[str, str], now: datetime, store: Backend | None,
           error: str | None) -> tuple[str, str]:
    """(status, reason); never raises: the handler must be able to log why."""
    if store is None:
        return agivars.OUTCOME_ERROR, f"store unavailable: {error or 'unknown'}"
    if not attempt.isdigit():
        return agivars.OUTCOME_ERROR, "no attempt id (was the check run?)"
    attempt_id = int(attempt)
    try:
        row = store.attempt(attempt_id)
        if row is None:
            return agivars.OUTCOME_ERROR, f"no attempt {attempt_id} in the store"
        if fields.get(CONTINUED):
            return _continued(store, attempt_id, row, fields, now)
        if row["outcome"] in KNOWN:
            return str(row["outcome"]), "kept (already recorded)"
        current = fields.get(CURRENT, "")
        if current and current != attempt:
            # The channel ran another check since: DIALSTATUS and the times
            # are that call's, not this one's.
            store.close_attempt_unknown(attempt_id)
            return Outcome.UNKNOWN.value, f"superseded by attempt {ascii_safe(current, 20)}"
        dialstatus = fields.get(DIALSTATUS, "").upper()
        cause = _cause(fields)
        outcome = outcome_of(answered=False, dialstatus=dialstatus, cause=cause,
                             dialled=bool(dialstatus or fields.get(DIALLED_MS)))
        ended_at, answered_at = times(_instant(row.get("at")), fields, now,
                                      outcome == Outcome.ANSWERED.value)
        store.record_outcome(attempt_id, outcome=outcome, answered_at=answered_at,
                             ended_at=ended_at, cause=cause,
                             cause_txt=CAUSE_TEXT.get(cause) if cause else None)
    except StoreBusy:
        return agivars.OUTCOME_ERROR, "store error: locked past the request deadline"
    except StoreError as exc:
        return agivars.OUTCOME_ERROR, f"store error: {exc}"
    return outcome, "recorded"


def _continued(store: Backend, attempt_id: int, row: Mapping[str, Any],
               fields: Mapping[str, str], now: datetime) -> tuple[str, str]:
    """The end of a conversation that outlived the channel that ran the check
    (a transfer: the second agent's channel reports it). Only an answered
    outcome already recorded is extended, and only later: a second agent who
    did not answer, or hung up before the first one left, leaves the first
    channel's report to come, or to stand."""
    if row["outcome"] != Outcome.ANSWERED.value:
        return str(row["outcome"] or agivars.OUTCOME_OPEN), (
            "not extended: no answered outcome recorded yet")
    ended_at, _ = times(_instant(row.get("at")), fields, now, answered=False)
    recorded = _instant(row.get("ended_at"))
    if recorded is not None and ended_at <= recorded:
        return Outcome.ANSWERED.value, "kept (the recorded end is later)"
    store.record_outcome(attempt_id, outcome=Outcome.ANSWERED.value, answered_at=None,
                         ended_at=ended_at, cause=row.get("cause"), cause_txt=row.get("cause_txt"))
    return Outcome.ANSWERED.value, "end extended"


def answer_values(status: str, reason: str) -> list[tuple[str, str]]:
    """The variables the handler gets, REASON first and the status last, as
    the other routes answer."""
    return [(agivars.REASON, ascii_safe(reason)), (agivars.OUTCOME, ascii_safe(status, 32))]
