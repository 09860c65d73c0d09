"""A check's AGI headers into a `Request`, and its `Decision` into channel
variables: the two ends of the `check` route that do no I/O.

Both AGI transports use these functions, the FastAGI route
(`routes.check`) and the classic per-call AGI (`stdio`), so a call gets the
same request, the same decision and the same variables whichever path
Asterisk takes. They live outside `routes` because importing that package
loads the asyncio session, which the classic AGI must not pay for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sentinelle.core.model import Decision
from sentinelle.guard import Request
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx import wire


def build_request(headers: Mapping[str, str], campaign: str, at: datetime,
                  source: str = "fastagi") -> Request:
    """The call's Request, from the AGI headers: the only place they become
    one, so the decision and a timeout answer for the same call agree (the
    campaign, hence its fail_open choice, above all)."""
    number = headers.get(wire.ARG_1, "").strip() or headers.get(wire.EXTENSION, "")
    masked = wire.is_masked(headers)
    return Request(
        dialled=number, at=at, campaign=campaign or None,
        caller_id=None if masked else headers.get(wire.CALLERID, "").strip(),
        masked=masked, record=True, source=source,
        context=(("channel", headers.get(wire.CHANNEL, "")),
                 ("uniqueid", headers.get(wire.UNIQUEID, ""))),
    )


def answer_values(d: Decision) -> list[tuple[str, str]]:
    """The SET VARIABLEs for a decision, already made safe: the non-empty
    ones (the dialplan cleared them all), then VERDICT, always, last."""
    reason = d.reasons[0] if d.reasons else (d.notes[0] if d.notes else "")
    out = []
    for name, value in ((agivars.RULES, ",".join(d.rules)), (agivars.REASON, reason),
                        (agivars.RETRY_AT, d.retry_at.isoformat() if d.retry_at else ""),
                        (agivars.ATTEMPT, str(d.attempt_id or ""))):
        safe = wire.ascii_safe(value)
        if safe.strip():
            out.append((name, safe))
    out.append((agivars.VERDICT, agivars.ALLOW if d.allowed else agivars.BLOCK))
    return out
