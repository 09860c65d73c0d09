"""What an agent's disposition key becomes in the store, and what the
dialplan is answered: shared by the FastAGI `disposition` route and the
classic per-call AGI (which must not import asyncio), so that a refusal is
recorded and confirmed alike whichever way Asterisk asked."""

from __future__ import annotations

from datetime import datetime

from sentinelle import facts
from sentinelle.config import Config
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx.wire import ascii_safe
from sentinelle.store import Backend, StoreBusy, StoreError


def record(config: Config, code: str, attempt: str, now: datetime, store: Backend | None,
           error: str | None, *, source: str) -> tuple[str, str]:
    """(status, reason); never raises: an agent keying a refusal must hear
    whether it counted."""
    if store is None:
        return agivars.DISPOSITION_ERROR, f"store unavailable: {error or 'unknown'}"
    if not attempt.isdigit():
        return agivars.DISPOSITION_ERROR, "no attempt id on this channel (was the check run?)"
    try:
        result = facts.record_disposition(store, config, code=code, attempt_id=int(attempt),
                                          source=source, at=now, now=now)
    except facts.FactError as exc:
        return agivars.DISPOSITION_ERROR, f"{exc.field}: {exc.message}"
    except StoreBusy:
        return agivars.DISPOSITION_ERROR, "store error: locked past the request deadline"
    except StoreError as exc:
        return agivars.DISPOSITION_ERROR, f"store error: {exc}"
    new = result.refusal is not None and result.refusal.new
    return agivars.DISPOSITION_OK, f"{result.code.value} {'recorded' if new else 'kept'}"


def answer_values(status: str, reason: str) -> list[tuple[str, str]]:
    """REASON first, the status last: a cut connection never leaves OK alone."""
    return [(agivars.REASON, ascii_safe(reason)), (agivars.DISPOSITION, status)]
