"""What became of a call, from what Asterisk reports about it: one mapping
for the ARI listener (events) and the `outcome` route (the hangup handler's
DIALSTATUS and cause), kept apart from both so that the route, which the
classic per-call AGI imports, does not pull in the listener's ARI client."""

from __future__ import annotations

from sentinelle.core.model import Outcome

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
