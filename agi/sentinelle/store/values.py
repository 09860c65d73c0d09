"""The plain values that cross the store's boundary, and how they are written.

Kept apart from any SQL so that another backend (PostgreSQL) stores the
same facts in the same shapes, and so that the one judgement the store
makes about a decision (did it use an R-22 slot?) lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
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


# How core.rules words the note of a decision that an R-22 consent slot let
# through outside the legal hours (rules._prospecting_findings).
SLOT_NOTE = "R-22 consent slot"


def used_slot(notes: Iterable[str]) -> bool:
    """Whether a decision relied on an R-22 consent slot, stored as
    `decisions.slot_used` so the report counts a field, not a wording.

    `Decision` has no field for it: the core only says so in its notes. This
    is the one place that reads that wording (the v3 migration backfills old
    rows with the same `SLOT_NOTE`); when the core gains a field, only this
    function changes."""
    return any(note.startswith(SLOT_NOTE) for note in notes)


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
