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

A transferred call goes on without the channel that ran the check, whose
handler reports it, answered, when the transfer is done. The channel that
carries the conversation on (the second agent's, extensions_transfer.conf)
then reports its end with `continued=yes` (`[sentinelle-outcome-continued]`,
`pbx.outcomes.record`): that only moves the end of an answered outcome
already recorded later, never sooner, and never makes one up.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from sentinelle import logs
from sentinelle.pbx import agi, outcomes
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.agi import ascii_safe
from sentinelle.store import Backend

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sentinelle.pbx.session import Session

log = logging.getLogger("sentinelle.outcome")


async def route(session: Session) -> None:
    attempt, fields = outcomes.arguments(session.headers)
    result = await session.store(partial(_record, attempt, fields, session.clock()))
    status, reason = result if result is not None else (
        agivars.OUTCOME_ERROR, "store busy past the request deadline")
    logs.event(log, "outcome reported", attempt=attempt, status=status, reason=reason,
               dialstatus=ascii_safe(fields.get(outcomes.DIALSTATUS, ""), 32),
               channel=session.headers.get(agi.CHANNEL, ""))
    await session.answer(_answer(session, status, reason))


def _record(attempt: str, fields: Mapping[str, str], now: datetime, store: Backend | None,
            error: str | None, may_wait: bool) -> tuple[str, str]:
    """`may_wait` is the server's business: work that met a lock without
    waiting is run again where it may wait."""
    return outcomes.record(attempt, fields, now, store, error)


async def _answer(session: Session, status: str, reason: str) -> None:
    for name, value in outcomes.answer_values(status, reason):
        await session.agi.set_variable(name, value)
