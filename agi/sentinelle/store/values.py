"""The plain values that cross the store's boundary, and how they are written.

Kept apart from any SQL so that another backend (PostgreSQL) stores the
same facts in the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime


def ts(instant: datetime) -> str:
    """One fixed UTC text format, so that SQL string comparison is time order."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: sentinelle only stores aware instants")
    # isoformat is ~5x faster than strftime on the hot path, same text.
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


def utc_now() -> datetime:
    """When a fact is recorded (`recorded_at`, `added_at`, `imported_at`)."""
    return datetime.now(UTC)


def from_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def e164_int(e164: str) -> int:
    """Bloctel tables key numbers as integers: half the size of text, faster probes."""
    return int(e164.lstrip("+"))


@dataclass(frozen=True, slots=True)
class ConsentProof:
    """What the professional must be able to prove for each consent (R-11)."""

    source: str
    given_at: datetime
    channel: str = ""
    wording: str = ""
    evidence_ref: str = ""
    slot_from: datetime | None = None
    slot_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: int
    professional: str
    snapshot_date: date
    kind: str
    count: int
    imported_at: datetime
