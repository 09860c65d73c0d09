"""When a callee may be called: days (R-21), hours (R-20) and consent slots (R-22).

Everything is judged in the CALLEE's local time, taken from the territory of
their number (see numbers.py): 10:30 in Paris is 12:30 in Réunion and 04:30 in
Guadeloupe, and only the callee's clock matters. Comparisons are done on UTC
instants so DST changes and ambiguous wall-clock hours cannot shift a window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

from sentinelle.core.numbers import NumberError, Territory, parse

__all__ = [
    "TIMEZONES",
    "WINDOWS",
    "allowed_at",
    "day_allowed",
    "holiday",
    "hours_allowed",
    "in_slot",
    "local_time",
    "next_allowed",
    "territory_of",
    "zone_of",
]

TIMEZONES: Mapping[Territory, ZoneInfo] = MappingProxyType(
    {
        Territory.FR: ZoneInfo("Europe/Paris"),
        Territory.RE: ZoneInfo("Indian/Reunion"),
        Territory.YT: ZoneInfo("Indian/Mayotte"),
        Territory.GP: ZoneInfo("America/Guadeloupe"),
        Territory.MF: ZoneInfo("America/Marigot"),
        Territory.BL: ZoneInfo("America/St_Barthelemy"),
        Territory.MQ: ZoneInfo("America/Martinique"),
        Territory.GF: ZoneInfo("America/Cayenne"),
        Territory.PM: ZoneInfo("America/Miquelon"),
    }
)

# half-open [start, end) so 13:00:00 and 20:00:00 are outside.
WINDOWS: tuple[tuple[time, time], ...] = ((time(10), time(13)), (time(14), time(20)))

# subdivisions of holidays.France (0.109 offers 57, 6AE, 971-974, 976,
# BL, MF, PM; "67"/"68" do not exist, Alsace is "6AE").
_SUBDIV: Mapping[Territory, str] = MappingProxyType(
    {
        Territory.RE: "974",
        Territory.YT: "976",
        Territory.GP: "971",
        Territory.MQ: "972",
        Territory.GF: "973",
        Territory.BL: "BL",
        Territory.MF: "MF",
        Territory.PM: "PM",
    }
)
_ALSACE_MOSELLE = {"57": "57", "67": "6AE", "68": "6AE"}
_CAUTIOUS = "6AE"  # national days + Good Friday + 26 Dec: strictest metropolitan calendar
# Pinned so logged reasons do not change with the host's locale.
_LANGUAGE = "en_US"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant!r}: an instant needs a time zone")


def local_time(territory: Territory, instant: datetime) -> datetime:
    """The callee's wall clock (R-20); a naive instant is refused, not guessed."""
    _require_aware(instant)
    return instant.astimezone(TIMEZONES[territory])


@lru_cache(maxsize=256)
def _calendar(subdiv: str | None, year: int) -> holidays.HolidayBase:
    # Building a calendar costs ~0.2 ms; one per (subdivision, year) is plenty.
    france: holidays.HolidayBase = holidays.country_holidays(
        "FR", subdiv=subdiv, years=year, language=_LANGUAGE)
    return france


def _subdiv(territory: Territory, department: str | None, cautious_alsace: bool) -> str | None:
    if territory is not Territory.FR:
        return _SUBDIV[territory]
    dep = (department or "").strip().upper()
    if not dep:
        # mobiles and 08/09 give no department; assume Alsace-Moselle.
        return _CAUTIOUS if cautious_alsace else None
    return _ALSACE_MOSELLE.get(dep)


def holiday(
    territory: Territory,
    day: date,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> str | None:
    """Name of the public holiday on ``day`` for the callee, else None (R-21).

    ``department`` refines metropolitan callees: 57/67/68 add Good Friday and
    26 December, any other known department means the national days only.
    Unknown department + ``cautious_alsace`` blocks the Alsace-Moselle days too.
    """
    name = _calendar(_subdiv(territory, department, cautious_alsace), day.year).get(day)
    return str(name) if name else None


def _window_reason(local: datetime, territory: Territory) -> str:
    windows = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in WINDOWS)
    return f"callee local time {local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({territory}) is outside {windows}"


def day_allowed(
    territory: Territory,
    instant: datetime,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> tuple[bool, str]:
    """R-21 on the callee's calendar: (ok, why), the why worded either way."""
    day = local_time(territory, instant).date()
    weekday = _WEEKDAYS[day.weekday()]
    if day.weekday() >= 5:
        return False, f"{weekday} {day} ({territory}): no calls at weekends"
    name = holiday(territory, day, department, cautious_alsace)
    if name:
        return False, f"public holiday {name} on {day} ({territory})"
    return True, f"{weekday} {day} ({territory}) is a working day"


def hours_allowed(territory: Territory, instant: datetime) -> tuple[bool, str]:
    """R-20 on the callee's clock: (ok, why), the why worded either way."""
    local = local_time(territory, instant)
    now = local.time()
    if any(start <= now < end for start, end in WINDOWS):
        windows = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in WINDOWS)
        return True, (f"callee local time {local:%Y-%m-%d %H:%M:%S} {local.tzname()} "
                      f"({territory}) is inside {windows}")
    return False, _window_reason(local, territory)


def allowed_at(
    territory: Territory,
    instant: datetime,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> tuple[bool, str | None, str | None]:
    """(ok, rule_id, reason) for a call at ``instant``: the first obstacle,
    days before hours (the rules themselves report both, see rules.py)."""
    ok, why = day_allowed(territory, instant, department, cautious_alsace)
    if not ok:
        return False, "R-21", why
    ok, why = hours_allowed(territory, instant)
    return (True, None, None) if ok else (False, "R-20", why)


def _open_day(territory: Territory, day: date, department: str | None, cautious: bool) -> bool:
    return day.weekday() < 5 and holiday(territory, day, department, cautious) is None


def next_allowed(
    territory: Territory,
    instant: datetime,
    department: str | None = None,
    cautious_alsace: bool = True,
    horizon_days: int = 30,
) -> datetime | None:
    """Earliest UTC instant >= ``instant`` when a call is allowed (R-20, R-21).

    Window bounds are built as local wall times for each day and only then
    converted to UTC, so 10:00 Paris is 09:00Z in winter and 08:00Z in summer
    even on the days the clocks change. None if nothing opens within
    ``horizon_days`` (a long holiday run is for a human to look at).
    """
    _require_aware(instant)
    tz = TIMEZONES[territory]
    start = instant.astimezone(UTC)
    limit = start + timedelta(days=horizon_days)
    day = start.astimezone(tz).date()
    while True:
        if datetime.combine(day, time(0), tz).astimezone(UTC) > limit:
            return None
        if _open_day(territory, day, department, cautious_alsace):
            for open_at, close_at in WINDOWS:
                lo = datetime.combine(day, open_at, tz).astimezone(UTC)
                hi = datetime.combine(day, close_at, tz).astimezone(UTC)
                if start < hi:
                    found = max(start, lo)
                    return found if found <= limit else None
        day += timedelta(days=1)


def in_slot(instant: datetime, slot_from: datetime | None, slot_until: datetime | None) -> bool:
    """True if ``instant`` falls in a consented callback slot [from, until) (R-22).

    Both bounds are required: an open-ended slot would lift R-20/R-21 for good,
    which is not what an express, specific consent is. R-22 never lifts R-30;
    that stays the caller's business.
    """
    _require_aware(instant)
    if slot_from is None or slot_until is None:
        return False
    _require_aware(slot_from)
    _require_aware(slot_until)
    # In UTC: same-zone aware datetimes compare by wall clock, wrong at DST folds.
    return slot_from.astimezone(UTC) <= instant.astimezone(UTC) < slot_until.astimezone(UTC)


@lru_cache(maxsize=65536)
def territory_of(e164: str) -> Territory | None:
    """Territory of a stored number; None for foreign or unreadable ones.

    Stored "+33" numbers are always metropolitan (overseas ones are stored
    under their own country code), which spares phonenumbers the common case.
    Evidence tools call this once per row, hence the cache."""
    if e164.startswith("+33"):
        return Territory.FR
    try:
        return parse(e164).territory
    except NumberError:
        return None


def zone_of(e164: str) -> ZoneInfo | None:
    """The clock R-20 judges this stored callee on; None for foreign numbers."""
    territory = territory_of(e164)
    return None if territory is None else TIMEZONES[territory]
