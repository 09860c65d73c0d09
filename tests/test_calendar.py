"""Day/hour rules against real zoneinfo zones and real `holidays` calendars (R-20, R-21, R-22)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinelle.core.calendar import (
    TIMEZONES,
    WINDOWS,
    allowed_at,
    day_allowed,
    holiday,
    hours_allowed,
    in_slot,
    local_time,
    next_allowed,
)
from sentinelle.core.numbers import Territory

T = Territory
PARIS = ZoneInfo("Europe/Paris")


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def test_every_territory_has_its_zone():
    assert set(TIMEZONES) == set(Territory)
    assert TIMEZONES[T.FR].key == "Europe/Paris"
    assert TIMEZONES[T.RE].key == "Indian/Reunion"
    assert TIMEZONES[T.GF].key == "America/Cayenne"
    assert TIMEZONES[T.PM].key == "America/Miquelon"
    assert tuple(WINDOWS) == ((time(10), time(13)), (time(14), time(20)))


# --- R-20 windows, half-open ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hms", "ok"),
    [
        ((9, 59, 59), False),
        ((10, 0, 0), True),
        ((12, 59, 59), True),
        ((13, 0, 0), False),
        ((13, 59, 59), False),
        ((14, 0, 0), True),
        ((19, 59, 59), True),
        ((20, 0, 0), False),
        ((0, 0, 0), False),
    ],
)
@pytest.mark.parametrize("when", [date(2027, 3, 10), date(2027, 7, 7)])  # CET and CEST Wednesdays
def test_window_boundaries(hms, ok, when):
    instant = paris(when.year, when.month, when.day, *hms)
    result = allowed_at(T.FR, instant, department="75")
    if ok:
        assert result == (True, None, None)
    else:
        assert result[:2] == (False, "R-20")
        assert f"{hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d}" in result[2]


def test_last_microsecond_before_13_is_inside():
    assert allowed_at(T.FR, paris(2027, 3, 10, 12, 59, 59, 999_999))[0]


def test_naive_datetimes_are_refused():
    naive = datetime(2027, 3, 10, 11)
    with pytest.raises(ValueError, match="naive"):
        local_time(T.FR, naive)
    with pytest.raises(ValueError):
        allowed_at(T.FR, naive)
    with pytest.raises(ValueError):
        next_allowed(T.FR, naive)
    with pytest.raises(ValueError):
        in_slot(naive, paris(2027, 1, 1), paris(2028, 1, 1))


# --- R-21 weekends and holidays ---------------------------------------------------------


@pytest.mark.parametrize(("day", "name"), [(date(2027, 3, 13), "Saturday"), (date(2027, 3, 14), "Sunday")])
def test_weekend_blocked(day, name):
    ok, rule, reason = allowed_at(T.FR, paris(day.year, day.month, day.day, 11))
    assert (ok, rule) == (False, "R-21")
    assert name in reason


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2027, 1, 1), "New Year"),
        (date(2027, 7, 14), "National Day"),
        (date(2027, 3, 29), "Easter Monday"),
        (date(2027, 11, 11), "Armistice"),
    ],
)
@pytest.mark.parametrize("department", [None, "75", "67", "2A"])
def test_national_holidays_blocked_everywhere_in_metropole(day, name, department):
    assert day.weekday() < 5
    ok, rule, reason = allowed_at(T.FR, paris(day.year, day.month, day.day, 11), department)
    assert (ok, rule) == (False, "R-21")
    assert name in reason
    assert name in holiday(T.FR, day, department)


@pytest.mark.parametrize(
    ("day", "name"),
    [(date(2027, 3, 26), "Good Friday"), (date(2028, 12, 26), "Saint Stephen")],
)
def test_alsace_moselle_days(day, name):
    assert day.weekday() < 5
    at = paris(day.year, day.month, day.day, 11)
    # Unknown department: the cautious default blocks them.
    ok, rule, reason = allowed_at(T.FR, at)
    assert (ok, rule) == (False, "R-21") and name in reason
    for dep in ("57", "67", "68", " 67 "):
        assert allowed_at(T.FR, at, dep)[:2] == (False, "R-21"), dep
    for dep in ("75", "13", "2B", "54"):
        assert allowed_at(T.FR, at, dep) == (True, None, None), dep
    assert allowed_at(T.FR, at, None, cautious_alsace=False) == (True, None, None)
    assert allowed_at(T.FR, at, "", cautious_alsace=True)[0] is False  # blank = unknown


@pytest.mark.parametrize(
    ("territory", "day"),
    [
        (T.RE, date(2027, 12, 20)),
        (T.MQ, date(2026, 5, 22)),
        (T.GP, date(2026, 5, 27)),
        (T.GF, date(2026, 6, 10)),
        (T.YT, date(2026, 4, 27)),
        (T.MF, date(2026, 5, 28)),
        (T.BL, date(2026, 10, 9)),
    ],
)
def test_overseas_abolition_of_slavery(territory, day):
    assert day.weekday() < 5
    assert holiday(territory, day) == "Abolition of Slavery"
    assert holiday(T.FR, day) is None  # not a metropolitan day: the territory decides
    at = datetime.combine(day, time(11), TIMEZONES[territory])
    ok, rule, reason = allowed_at(territory, at)
    assert (ok, rule) == (False, "R-21") and "Abolition of Slavery" in reason
    # The check is not stuck shut: within a week some weekday at 11:00 is open
    # (MQ 2026: the following Monday is Whit Monday, hence not just "next weekday").
    later = [at + timedelta(days=k) for k in range(1, 8)]
    assert any(allowed_at(territory, x) == (True, None, None) for x in later)


# The +590 islands' own days (checked against `holidays`): abolition of slavery
# on 27 May (Guadeloupe), 28 May (Saint-Martin), 9 October (Saint-Barthélemy).
ISLANDS = frozenset({T.GP, T.MF, T.BL})
ISLAND_DAYS = [(T.GP, date(2026, 5, 27)), (T.MF, date(2026, 5, 28)), (T.BL, date(2026, 10, 9))]


def test_590_islands_share_one_clock():
    """One zone stands for a set of islands: that is only right if they never differ."""
    zones = {TIMEZONES[t] for t in ISLANDS}
    for day in range(0, 366, 7):
        instant = datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
        assert {z.utcoffset(instant.replace(tzinfo=None)) for z in zones} == {timedelta(hours=-4)}


@pytest.mark.parametrize(("island", "day"), ISLAND_DAYS)
def test_a_set_of_islands_blocks_every_island_day(island, day):
    at = datetime.combine(day, time(11), TIMEZONES[T.GP])
    assert day.weekday() < 5 and local_time(ISLANDS, at).hour == 11
    ok, rule, reason = allowed_at(ISLANDS, at)
    assert (ok, rule) == (False, "R-21")
    assert f"Abolition of Slavery on {day} ({island.value};" in reason and "GP/MF/BL" in reason
    assert holiday(ISLANDS, day) == "Abolition of Slavery"
    for other in ISLANDS - {island}:  # only that island's day: the set is what blocks it
        assert allowed_at(other, at) == (True, None, None)


def test_department_names_the_island():
    may_27 = datetime(2026, 5, 27, 11, tzinfo=TIMEZONES[T.GP])
    oct_9 = datetime(2026, 10, 9, 11, tzinfo=TIMEZONES[T.GP])
    assert allowed_at(ISLANDS, oct_9, "971") == (True, None, None)
    assert allowed_at(ISLANDS, may_27, "971")[:2] == (False, "R-21")
    assert allowed_at(ISLANDS, may_27, "977") == (True, None, None)  # Saint-Barthélemy
    assert allowed_at(ISLANDS, oct_9, "977")[:2] == (False, "R-21")
    assert allowed_at(ISLANDS, may_27, "978") == (True, None, None)  # Saint-Martin
    # A department that is no island leaves the set as it is.
    assert allowed_at(ISLANDS, oct_9, "75")[:2] == (False, "R-21")
    # The numbering data says Guadeloupe, the contact Saint-Martin: both are blocked.
    assert allowed_at(T.GP, datetime(2026, 5, 28, 11, tzinfo=TIMEZONES[T.GP]), "978")[:2] \
        == (False, "R-21")


def test_next_allowed_skips_every_island_day():
    tz = TIMEZONES[T.GP]
    start = datetime(2026, 5, 27, 11, tzinfo=tz)
    assert next_allowed(ISLANDS, start) == datetime(2026, 5, 29, 10, tzinfo=tz)
    assert next_allowed(ISLANDS, start, "977") == start
    assert next_allowed(T.GP, start) == datetime(2026, 5, 28, 10, tzinfo=tz)


@pytest.mark.parametrize("year", range(2024, 2031))
def test_reunion_20_december_every_year(year):
    assert holiday(T.RE, date(year, 12, 20)) == "Abolition of Slavery"
    assert holiday(T.YT, date(year, 12, 20)) is None


def test_overseas_ignore_alsace_default():
    # Good Friday is not a Réunion holiday, whatever the metropolitan default.
    assert holiday(T.RE, date(2027, 3, 26)) is None
    assert holiday(T.RE, date(2027, 1, 1)) == "New Year's Day"
    assert holiday(T.PM, date(2027, 7, 14)) == "National Day"


# --- the CALLEE's clock -------------------------------------------------------------------


def test_callee_local_time_decides():
    morning = paris(2027, 3, 10, 10, 30)  # 09:30Z, Wednesday
    assert allowed_at(T.FR, morning) == (True, None, None)
    ok, rule, reason = allowed_at(T.RE, morning)  # 13:30 in Réunion (UTC+4)
    assert (ok, rule) == (False, "R-20") and "13:30:00" in reason
    ok, rule, reason = allowed_at(T.GP, morning)  # 05:30 in Guadeloupe (UTC-4)
    assert (ok, rule) == (False, "R-20") and "05:30:00" in reason
    assert local_time(T.RE, morning).hour == 13
    assert local_time(T.GP, morning).hour == 5

    afternoon = paris(2027, 3, 10, 16)  # RE 19:00, GP 11:00: both open
    assert allowed_at(T.RE, afternoon)[0] and allowed_at(T.GP, afternoon)[0]
    evening = paris(2027, 3, 10, 18)  # RE 21:00, GP 13:00: both shut, Paris open
    assert allowed_at(T.FR, evening)[0]
    assert not allowed_at(T.RE, evening)[0]
    assert not allowed_at(T.GP, evening)[0]


def test_weekend_in_callee_zone_not_callers():
    # Friday 23:30 Paris = Saturday 02:30 in Réunion; Saturday 01:00 Paris = Friday 20:00 GP.
    _, rule, reason = allowed_at(T.RE, paris(2027, 3, 12, 23, 30))
    assert rule == "R-21" and "Saturday" in reason
    sat_paris = paris(2027, 3, 13, 1, 0)
    assert local_time(T.GP, sat_paris).weekday() == 4
    assert allowed_at(T.GP, sat_paris)[1] == "R-20"  # Friday 20:00: outside hours, not weekend


# --- next_allowed ---------------------------------------------------------------------------


def test_next_allowed_now_if_open():
    at = paris(2027, 3, 10, 11, 15, 7)
    got = next_allowed(T.FR, at)
    assert got == at and got.tzinfo is UTC


def test_next_allowed_lunch_break():
    assert next_allowed(T.FR, paris(2027, 3, 10, 13, 0)) == datetime(2027, 3, 10, 13, 0, tzinfo=UTC)


def test_next_allowed_across_march_dst_and_easter():
    # 2027: Good Friday 26/3, DST 28/3, Easter Monday 29/3. Thursday 20:00 CET:
    # cautious default skips Friday and Monday -> Tuesday 10:00 CEST = 08:00Z.
    thu = paris(2027, 3, 25, 20, 0)
    assert next_allowed(T.FR, thu) == datetime(2027, 3, 30, 8, 0, tzinfo=UTC)
    # Department 75: Friday 10:00 CET = 09:00Z (Good Friday is no holiday there).
    assert next_allowed(T.FR, thu, "75") == datetime(2027, 3, 26, 9, 0, tzinfo=UTC)


def test_next_allowed_across_march_dst_2026():
    fri = paris(2026, 3, 27, 20, 0)  # clocks go forward Sunday 29 March
    assert next_allowed(T.FR, fri) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)


def test_next_allowed_across_october_dst():
    fri = paris(2026, 10, 23, 20, 0)  # clocks go back Sunday 25 October
    assert next_allowed(T.FR, fri) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    # During the repeated hour itself (first 02:30, fold=0, CEST).
    ambiguous = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)
    assert next_allowed(T.FR, ambiguous) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)


def test_next_allowed_miquelon_dst():
    # Miquelon (UTC-3 / UTC-2 in summer) changes on 2nd Sunday of March, unlike Paris.
    fri = datetime(2027, 3, 12, 20, 0, tzinfo=TIMEZONES[T.PM])
    assert next_allowed(T.PM, fri) == datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


def test_next_allowed_overseas_zone():
    # Paris 10:30 Wednesday. Réunion 13:30 -> 14:00 local = 10:00Z;
    # Guadeloupe 05:30 -> 10:00 local = 14:00Z.
    at = paris(2027, 3, 10, 10, 30)
    assert next_allowed(T.RE, at) == datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
    assert next_allowed(T.GP, at) == datetime(2027, 3, 10, 14, 0, tzinfo=UTC)


def test_next_allowed_horizon():
    fri_evening = paris(2027, 3, 12, 20, 0)
    assert next_allowed(T.FR, fri_evening, horizon_days=1) is None
    assert next_allowed(T.FR, fri_evening, horizon_days=3) == datetime(2027, 3, 15, 9, 0, tzinfo=UTC)
    assert next_allowed(T.FR, paris(2027, 3, 13, 12), horizon_days=0) is None


territories = st.sampled_from(list(Territory))
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@given(territories, instants, st.sampled_from([None, "75", "67", "57"]), st.booleans())
@settings(max_examples=300, deadline=None)
def test_next_allowed_is_the_earliest_allowed_instant(territory, instant, department, cautious):
    got = next_allowed(territory, instant, department, cautious)
    assert got is not None  # no territory has 30 shut days in a row
    assert got >= instant and got.tzinfo is UTC
    assert allowed_at(territory, got, department, cautious)[0]
    if got > instant:
        # Minimal: one second earlier is shut, and the opening is a window start.
        assert not allowed_at(territory, got - timedelta(seconds=1), department, cautious)[0]
        assert local_time(territory, got).time() in {start for start, _ in WINDOWS}


@given(territories, instants)
@settings(max_examples=300, deadline=None)
def test_allowed_only_on_open_weekdays_in_windows(territory, instant):
    local = local_time(territory, instant)
    ok, rule, reason = allowed_at(territory, instant)
    in_window = any(a <= local.time() < b for a, b in WINDOWS)
    open_day = local.weekday() < 5 and holiday(territory, local.date()) is None
    assert ok == (in_window and open_day)
    if ok:
        assert (rule, reason) == (None, None)
    else:
        assert rule == ("R-20" if open_day else "R-21") and reason


# --- R-22 slots ---------------------------------------------------------------------------


def test_in_slot_half_open():
    start, end = paris(2027, 3, 13, 9, 0), paris(2027, 3, 13, 9, 30)
    assert in_slot(start, start, end)
    assert in_slot(end - timedelta(microseconds=1), start, end)
    assert not in_slot(end, start, end)
    assert not in_slot(start - timedelta(seconds=1), start, end)
    # Zones do not matter, instants do.
    assert in_slot(datetime(2027, 3, 13, 8, 15, tzinfo=UTC), start, end)


def test_in_slot_needs_both_bounds():
    at = paris(2027, 3, 13, 9, 0)
    assert not in_slot(at, None, None)
    assert not in_slot(at, at - timedelta(hours=1), None)
    assert not in_slot(at, None, at + timedelta(hours=1))
    assert not in_slot(at, at, at)  # empty slot


def test_cached_answers_tell_the_two_instants_of_the_october_fold_apart():
    """day_allowed and hours_allowed are cached (a scrub asks them for every
    lead at one instant); 02:30 happens twice on 2026-10-25 in Paris, and
    the two instants compare equal in one zone, so the cache must not
    answer the second with the wording of the first."""
    first = datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))
    second = first.replace(fold=1)
    for instant, zone in ((first, "CEST"), (second, "CET"), (first, "CEST")):
        assert f"02:30:00 {zone}" in hours_allowed(Territory.FR, instant)[1]
        assert f"02:30:00 {zone}" in hours_allowed(Territory.FR, instant.astimezone(UTC))[1]
        assert not day_allowed(Territory.FR, instant)[0]
