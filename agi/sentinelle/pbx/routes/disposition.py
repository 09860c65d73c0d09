"""The `disposition` route: an agent's refusal or disposition, recorded now.

`AGI(agi://host:port/disposition,CODE,ATTEMPT)` from the disposition feature
codes (`*81`..`*84`) and the refusal code (`*9`), on the agent's channel.
The refusal is in the store before the route answers, so it does not depend
on the ARI listener being connected: Asterisk keeps no ARI event for an app
that is not, and a refusal lost that way is a breach of R-31 on the next
call. The answer is one channel variable, `SENTINELLE_DISPOSITION`: `OK`
(recorded, or already recorded: the route is idempotent per attempt) or
`ERROR` with `SENTINELLE_REASON`; the dialplan plays a confirmation or an
error tone to the agent and logs a NOTICE on error.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from sentinelle import logs
from sentinelle.config import Config
from sentinelle.pbx import agi, dispositions
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.agi import ascii_safe
from sentinelle.store import Backend

if TYPE_CHECKING:
    from sentinelle.pbx.session import Session

SOURCE = "fastagi"
log = logging.getLogger("sentinelle.disposition")


async def route(session: Session) -> None:
    code = session.headers.get(agi.ARG_1, "").strip()
    attempt = session.headers.get(agi.ARG_2, "").strip()
    if not attempt:  # the dialplan passes ${SENTINELLE_ATTEMPT}; ask the channel otherwise
        attempt = (await session.bounded(session.agi.get_variable(agivars.ATTEMPT))) or ""
    outcome = await session.store(partial(_record, session.config, code, attempt,
                                          session.clock()))
    status, reason = outcome if outcome is not None else (
        agivars.DISPOSITION_ERROR, "store busy past the request deadline")
    logs.event(log, "disposition", code=ascii_safe(code, 32), attempt=attempt,
               status=status, reason=reason, channel=session.headers.get(agi.CHANNEL, ""))
    await session.answer(_answer(session, status, reason))


def _record(config: Config, code: str, attempt: str, now: datetime, store: Backend | None,
            error: str | None, may_wait: bool) -> tuple[str, str]:
    """`may_wait` is the server's business: work that met a lock without
    waiting is run again where it may wait."""
    return dispositions.record(config, code, attempt, now, store, error, source=SOURCE)


async def _answer(session: Session, status: str, reason: str) -> None:
    for name, value in dispositions.answer_values(status, reason):
        await session.agi.set_variable(name, value)
