"""Instants: parsing what admins type, and the clock decisions are taken on.

Naive times are read as Europe/Paris: admins of a French call center type
local times, and guessing UTC would shift every boundary by one or two hours.
A frozen clock exists for demos and end-to-end tests (`serve --at`): the
rules never read the clock themselves, so freezing it here is enough.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sentinelle.core.model import PARIS

Clock = Callable[[], datetime]


def parse_instant(text: str) -> datetime:
    """ISO 8601 with or without offset (naive = Europe/Paris); raises ValueError."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=PARIS) if value.tzinfo is None else value


def system_clock() -> datetime:
    return datetime.now(UTC)


def frozen(at: datetime) -> Clock:
    return lambda: at
