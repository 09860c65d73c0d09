"""When a callee may be called: days (R-21), hours (R-20) and consent slots (R-22).

Everything is judged in the CALLEE's local time, taken from the territory of
their number (see numbers.py): 10:30 in Paris is 12:30 in Réunion and 04:30 in
Guadeloupe, and only the callee's clock matters. Comparisons are done on UTC
instants so DST changes and ambiguous wall-clock hours cannot shift a window.

The functions take a territory or a set of them (`Number.territories`): a
+590 number that may serve Guadeloupe, Saint-Martin or Saint-Barthélemy is
blocked on the days of each (R-21, docs/rules.md "Numbers"), unless the contact's
department (971, 978, 977) says which island. Territories that share a
number share a clock (the three islands are UTC-4 all year), so one zone
serves the whole set.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

from sentinelle.core.numbers import NumberError, Territory, parse

__all__ = [
    "SUBDIVISIONS",
    "TIMEZONES",
    "WINDOWS",
    "Where",
    "allowed_at",
    "compute_days",
    "day_allowed",
    "holiday",
    "hours_allowed",
    "in_slot",
    "local_time",
    "next_allowed",
    "preload",
    "territories",
    "territory_of",
    "zone_of",
]

# One territory, or every territory a number may serve (`Number.territories`).
Where = Territory | Collection[Territory]

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
# INSEE codes of the +590 islands: an imported department names the island.
_ISLAND_OF_DEPARTMENT: Mapping[str, Territory] = MappingProxyType(
    {"971": Territory.GP, "977": Territory.BL, "978": Territory.MF}
)
_CAUTIOUS = "6AE"  # national days + Good Friday + 26 Dec: strictest metropolitan calendar
# Pinned so logged reasons do not change with the host's locale.
_LANGUAGE = "en_US"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant!r}: an instant needs a time zone")


def territories(where: Where, department: str | None = None) -> tuple[Territory, ...]:
    """The territories whose days R-21 blocks, in `Territory` order.

    A department naming one of the +590 islands narrows a set of islands to
    it. If it names an island outside the set, the numbering data and the
    contact disagree: both are kept, so the days of both are blocked.
    """
    # One decision asks this five times, and a scrub asks it for every lead
    # of a list about a handful of territory sets: the answer is cached.
    return _territories(where if isinstance(where, Territory) else frozenset(where), department)


@lru_cache(maxsize=1024)
def _territories(where: Territory | frozenset[Territory],
                 department: str | None) -> tuple[Territory, ...]:
    places = {where} if isinstance(where, Territory) else set(where)
    if not places:
        raise ValueError("no territory: foreign numbers have no French calendar")
    island = _ISLAND_OF_DEPARTMENT.get((department or "").strip().upper())
    if island is not None and not places.isdisjoint(_ISLAND_OF_DEPARTMENT.values()):
        places = {island} if island in places else places | {island}
    return tuple(t for t in Territory if t in places)


def _zone(where: Where) -> ZoneInfo:
    return TIMEZONES[territories(where)[0]]


def _label(places: tuple[Territory, ...]) -> str:
    return "/".join(places)


def local_time(where: Where, instant: datetime) -> datetime:
    """The callee's wall clock (R-20); a naive instant is refused, not guessed."""
    _require_aware(instant)
    return instant.astimezone(_zone(where))


# Every holiday calendar R-21 may consult: None is the national days alone.
SUBDIVISIONS: tuple[str | None, ...] = (
    None, "57", _CAUTIOUS, *sorted(set(_SUBDIV.values())))

# Calendars handed in ready-made (`preload`), e.g. read from a cache file by
# a per-call process that should not import `holidays` (~50 ms) nor build
# them (~0.2 ms each) for every call. A year not preloaded is computed.
_PRELOADED: dict[tuple[str | None, int], Mapping[date, str]] = {}


def compute_days(subdiv: str | None, year: int) -> dict[date, str]:
    """The public holidays of one subdivision and year, from `holidays`
    (imported here, not at module level: a check that has its calendars
    preloaded never pays for the import)."""
    import holidays

    france = holidays.country_holidays("FR", subdiv=subdiv, years=year, language=_LANGUAGE)
    return {day: str(name) for day, name in france.items() if day.year == year}


def preload(calendars: Mapping[tuple[str | None, int], Mapping[date, str]]) -> None:
    """Use these calendars instead of computing them. The caller vouches
    that they are what `compute_days` returns (see pbx.startup_cache, which
    checks versions and integrity before it calls this)."""
    _PRELOADED.update(calendars)
    _calendar.cache_clear()


@lru_cache(maxsize=256)
def _calendar(subdiv: str | None, year: int) -> Mapping[date, str]:
    # Building a calendar costs ~0.2 ms; one per (subdivision, year) is plenty.
    found = _PRELOADED.get((subdiv, year))
    return found if found is not None else compute_days(subdiv, year)


def _subdiv(territory: Territory, department: str | None, cautious_alsace: bool) -> str | None:
    if territory is not Territory.FR:
        return _SUBDIV[territory]
    dep = (department or "").strip().upper()
    if not dep:
        # mobiles and 08/09 give no department; assume Alsace-Moselle.
        return _CAUTIOUS if cautious_alsace else None
    return _ALSACE_MOSELLE.get(dep)


def _holiday_in(
    places: tuple[Territory, ...], day: date, department: str | None, cautious_alsace: bool,
) -> tuple[Territory, str] | None:
    for territory in places:
        name = _calendar(_subdiv(territory, department, cautious_alsace), day.year).get(day)
        if name:
            return territory, str(name)
    return None


def holiday(
    where: Where,
    day: date,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> str | None:
    """Name of the public holiday on ``day`` for the callee, else None (R-21);
    for a set of territories, a holiday of any of them.

    ``department`` refines metropolitan callees: 57/67/68 add Good Friday and
    26 December, any other known department means the national days only.
    Unknown department + ``cautious_alsace`` blocks the Alsace-Moselle days too.
    For +590 islands it names the island (see `territories`).
    """
    found = _holiday_in(territories(where, department), day, department, cautious_alsace)
    return found[1] if found else None


_WINDOWS_TEXT = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in WINDOWS)  # "10:00-13:00, ..."


def _window_reason(local: datetime, label: str) -> str:
    return (f"callee local time {local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({label}) is outside "
            f"{_WINDOWS_TEXT}")


def day_allowed(
    where: Where,
    instant: datetime,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> tuple[bool, str]:
    """R-21 on the callee's calendar: (ok, why), the why worded either way;
    for a set of territories, a holiday of any of them blocks."""
    _require_aware(instant)
    return _day_allowed(territories(where, department), instant.astimezone(UTC), department,
                        cautious_alsace)


# A scrub judges every lead of a list at one instant, on a handful of
# territory sets: the answer and its wording are cached. Keyed on the UTC
# instant: two instants of one zone that differ only by `fold` are equal keys.
@lru_cache(maxsize=4096)
def _day_allowed(places: tuple[Territory, ...], instant: datetime, department: str | None,
                 cautious_alsace: bool) -> tuple[bool, str]:
    day = local_time(places, instant).date()
    weekday = _WEEKDAYS[day.weekday()]
    if day.weekday() >= 5:
        return False, f"{weekday} {day} ({_label(places)}): no calls at weekends"
    found = _holiday_in(places, day, department, cautious_alsace)
    if found:
        among = f"; the number may serve {_label(places)}" if len(places) > 1 else ""
        return False, f"public holiday {found[1]} on {day} ({found[0]}{among})"
    return True, f"{weekday} {day} ({_label(places)}) is a working day"


def hours_allowed(where: Where, instant: datetime) -> tuple[bool, str]:
    """R-20 on the callee's clock: (ok, why), the why worded either way."""
    _require_aware(instant)
    return _hours_allowed(territories(where), instant.astimezone(UTC))


@lru_cache(maxsize=4096)  # as _day_allowed
def _hours_allowed(places: tuple[Territory, ...], instant: datetime) -> tuple[bool, str]:
    local = local_time(places, instant)
    now = local.time()
    if any(start <= now < end for start, end in WINDOWS):
        return True, (f"callee local time {local:%Y-%m-%d %H:%M:%S} {local.tzname()} "
                      f"({_label(places)}) is inside {_WINDOWS_TEXT}")
    return False, _window_reason(local, _label(places))


def allowed_at(
    where: Where,
    instant: datetime,
    department: str | None = None,
    cautious_alsace: bool = True,
) -> tuple[bool, str | None, str | None]:
    """(ok, rule_id, reason) for a call at ``instant``: the first obstacle,
    days before hours (the rules themselves report both, see rules.py)."""
    ok, why = day_allowed(where, instant, department, cautious_alsace)
    if not ok:
        return False, "R-21", why
    ok, why = hours_allowed(where, instant)
    return (True, None, None) if ok else (False, "R-20", why)


def _open_day(places: tuple[Territory, ...], day: date, department: str | None, cautious: bool) -> bool:
    return day.weekday() < 5 and _holiday_in(places, day, department, cautious) is None


def next_allowed(
    where: Where,
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
    places = territories(where, department)
    tz = _zone(places)
    start = instant.astimezone(UTC)
    limit = start + timedelta(days=horizon_days)
    day = start.astimezone(tz).date()
    while True:
        if datetime.combine(day, time(0), tz).astimezone(UTC) > limit:
            return None
        if _open_day(places, day, department, cautious_alsace):
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
