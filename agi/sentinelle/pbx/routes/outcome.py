"""The `outcome` route: what became of an allowed call, told by Asterisk itself.

The ARI listener sees a call's end only while it is connected; Asterisk keeps
no event for an app that is not. A call that ends during a listener outage
would stay open (or be closed as `unknown` when it reconnects). So the check
subroutine pushes a hangup handler on the channel that ran the check
(`[sentinelle-outcome]`, dialplan/extensions_sentinelle.conf), and when that
channel hangs up the handler reports what Dial() saw:

    AGI(agi://host:port/outcome,ATTEMPT,checked=EPOCH,current=ATTEMPT_NOW,
        dialstatus=DIALSTATUS,leg_cause=N,cause=HANGUPCAUSE,
        answered_ms=ANSWEREDTIME_MS,dialled_ms=DIALEDTIME_MS,ended=EPOCH)

Argument 1 is the attempt the handler was pushed for; the others are
`key=value` so that the dialplan line reads for itself and a missing value
is an empty one, not a shifted one. Times are Asterisk's (`checked` when the
check returned, `ended` when the handler ran, seconds with decimals), taken
relative to the attempt's own instant: the store and the PBX may not share a
clock (and under `serve --at` the attempt's instant is the frozen one), but
the call's duration is Asterisk's to measure.

Written through `record_outcome` like the listener's, with the same mapping
(`pbx.outcomes.outcome_of`), and never over a known outcome: the listener and
this route report the same call, whichever comes first wins and the other
keeps it, except that an attempt the listener closed as `unknown` (its
channels vanished while it was away) is completed here. The answer is
`SENTINELLE_OUTCOME` (the outcome recorded or kept, or ERROR with
`SENTINELLE_REASON`); the handler logs a NOTICE when it is not recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sentinelle import logs
from sentinelle.core.model import Outcome
from sentinelle.pbx import agi
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.agi import ascii_safe
from sentinelle.pbx.outcomes import outcome_of
from sentinelle.pbx.session import Session
from sentinelle.store import Backend, StoreBusy, StoreError
from sentinelle.store.values import from_ts

log = logging.getLogger("sentinelle.outcome")

# The handler's key=value arguments (arguments 2 and later).
CHECKED, CURRENT, DIALSTATUS, LEG_CAUSE, CAUSE, ANSWERED_MS, DIALLED_MS, ENDED = (
    "checked", "current", "dialstatus", "leg_cause", "cause", "answered_ms", "dialled_ms",
    "ended")
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
    attempt = headers.get(agi.ARG_1, "").strip()
    fields: dict[str, str] = {}
    for n in range(2, MAX_ARGS + 1):
        raw = headers.get(f"{agi.HEADER_PREFIX}arg_{n}")
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


async def route(session: Session) -> None:
    attempt, fields = arguments(session.headers)
    result = await session.store(partial(_record, attempt, fields, session.clock()))
    status, reason = result if result is not None else (
        agivars.OUTCOME_ERROR, "store busy past the request deadline")
    logs.event(log, "outcome reported", attempt=attempt, status=status, reason=reason,
               dialstatus=ascii_safe(fields.get(DIALSTATUS, ""), 32),
               channel=session.headers.get(agi.CHANNEL, ""))
    await session.answer(_answer(session, status, reason))


def _record(attempt: str, fields: Mapping[str, str], now: datetime, store: Backend | None,
            error: str | None, may_wait: bool) -> tuple[str, str]:
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
    except StoreBusy:  # inline (no wait), the server runs this again where it may wait
        return agivars.OUTCOME_ERROR, "store error: locked past the request deadline"
    except StoreError as exc:
        return agivars.OUTCOME_ERROR, f"store error: {exc}"
    return outcome, "recorded"


async def _answer(session: Session, status: str, reason: str) -> None:
    """REASON first, the status last, as the other routes do."""
    await session.agi.set_variable(agivars.REASON, ascii_safe(reason))
    await session.agi.set_variable(agivars.OUTCOME, ascii_safe(status, 32))
