"""Instants: parsing what admins type, and the clock decisions are taken on.

Naive times are read as Europe/Paris: admins of a French call center type
local times, and guessing UTC would shift every boundary by one or two hours.
A frozen clock exists for demos and end-to-end tests (`serve --at`): the
rules never read the clock themselves, so freezing it here is enough.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sentinelle.core.model import PARIS

# How far ahead of this host's clock a recorded fact (consent given, refusal,
# revocation) may be dated: the CRM's or the PBX's clock may run a little
# ahead. Beyond it the instant is a typo until the admin says otherwise
# (--allow-future): a consent dated next year stays valid a year too long, a
# refusal dated next year leaves the callee callable until then.
FUTURE_TOLERANCE = timedelta(minutes=5)

Clock = Callable[[], datetime]


def parse_instant(text: str) -> datetime:
    """ISO 8601 with or without offset (naive = Europe/Paris); raises ValueError."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=PARIS) if value.tzinfo is None else value


def system_clock() -> datetime:
    return datetime.now(UTC)


def frozen(at: datetime) -> Clock:
    return lambda: at


def refuse_future(instant: datetime, now: datetime, what: str) -> None:
    """Raise ValueError, naming `what`, if `instant` is later than `now` plus
    FUTURE_TOLERANCE."""
    if instant > now + FUTURE_TOLERANCE:
        minutes = int(FUTURE_TOLERANCE.total_seconds() // 60)
        raise ValueError(f"{what} {instant.isoformat()} is in the future (now "
                         f"{now.astimezone(UTC).isoformat(timespec='seconds')}, tolerance {minutes} "
                         "min): a typo? If it is right, pass --allow-future")
