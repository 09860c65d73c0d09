"""The `check` route: may this call be dialled?

`AGI(agi://host:port/check,NUMBER,CAMPAIGN)` before every prospecting Dial.
The answer is channel variables, VERDICT last; anything short of an explicit
ALLOW makes the dialplan hang up with cause 21. A fault of sentinelle's own,
a timeout included, is a SYS-* decision for the call's campaign: blocked,
unless that campaign chose fail_open.
"""

from __future__ import annotations

import logging
from functools import partial

from sentinelle.config import Config
from sentinelle.core.model import Decision
from sentinelle.core.rules import SYS_TIMEOUT
from sentinelle.guard import Request, check, fault
from sentinelle.pbx import agi
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.agi import AgiChannel, AgiError
from sentinelle.pbx.session import Session
from sentinelle.pbx.verdict import answer_values, build_request
from sentinelle.store import Backend


async def route(session: Session) -> None:
    request = await read_request(session)
    decision = await session.bounded(session.store(partial(_decide, session.config, request)))
    if decision is None:  # the deadline passed, on the loop or in the store thread
        decision = fault(session.config, request, SYS_TIMEOUT,
                         "check exceeded server.request_timeout_s", logging.WARNING)
    session.decided(decision)
    await session.answer(answer(session.agi, decision))


async def read_request(session: Session) -> Request:
    """The campaign comes from AGI argument 2, else from the channel variable
    (one GET VARIABLE, within the deadline)."""
    campaign = session.headers.get(agi.ARG_2, "").strip()
    if not campaign:
        named = await session.bounded(session.agi.get_variable(agivars.CAMPAIGN))
        if named is None:
            raise AgiError("no campaign before the deadline")
        campaign = named
    return build_request(session.headers, campaign, session.clock(), session.source)


def _decide(config: Config, request: Request, store: Backend | None, error: str | None,
            may_wait: bool) -> Decision:
    return check(config, store, request, store_error=error, busy_raises=not may_wait)


async def answer(channel: AgiChannel, decision: Decision) -> None:
    """VERDICT goes last: a connection cut half-way never leaves an ALLOW
    behind without the rest. The dialplan clears every SENTINELLE_*
    variable before the AGI, so only non-empty values are sent: one round
    trip per value instead of five per check."""
    for name, value in answer_values(decision):
        await channel.set_variable(name, value)
