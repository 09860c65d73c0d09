"""`Decision.retry_at`: when the same call becomes legal if only time passes.

A dialer reschedules on it, so a retry_at that is too early is a wrong allow
waiting to happen (the dialer comes back, sentinelle blocks again at best) and
a retry_at where only a new fact helps (consent, new Bloctel list, admin) is a
promise sentinelle cannot keep: those must be None. Real zones, real holidays.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sentinelle.core.model import (
    Bloctel,
    Call,
    Campaign,
    Consent,
    Decision,
    Dialing,
    History,
    Policy,
    Professional,
    Purpose,
    Verdict,
)
from sentinelle.core.numbers import NumberError, parse
from sentinelle.core.rules import decide

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")

NPV = "0162000000"
CALLEE = "0145678901"
REUNION_CALLEE = "0262123456"
ACME = Professional("acme", caller_ids=frozenset({"+33142000000"}))
PROMO = Campaign("promo", "acme")
POLICY = Policy()


def paris(y: int, m: int, d: int, h: int = 11, mi: int = 0, s: int = 0, tz: ZoneInfo = PARIS) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=tz)


def consented(when: datetime, **changes) -> History:
    """fr-2026 gate passed by a consent given 10 days earlier; department known
    (Paris) so that only the holidays a test names matter."""
    return replace(History(consents=(Consent(when - timedelta(days=10)),), department="75"), **changes)


def run(when: datetime, history: History, *, dialled: str = CALLEE, caller_id: str | None = NPV,
        campaign: Campaign = PROMO, policy: Policy = POLICY, masked: bool = False) -> Decision:
    try:
        callee = parse(dialled)
    except NumberError as exc:
        callee = exc
    call = Call(dialled=dialled, at=when, campaign=campaign, professional=ACME,
                caller_id=caller_id, masked=masked)
    return decide(call, callee, history, policy)


def retry(when: datetime, history: History, **kw) -> datetime | None:
    d = run(when, history, **kw)
    assert d.verdict is Verdict.BLOCK, "retry_at only makes sense for a block"
    return d.retry_at


# --- None: a new fact is needed ------------------------------------------------------------

SUNDAY_NIGHT = paris(2026, 9, 13, 22, 0)  # R-21 as well: the hour rules must not mask the fact


@pytest.mark.parametrize(
    ("rule", "kw"),
    [
        ("R-01", {"dialled": "not a number"}),
        ("R-11", {"history": History()}),
        ("R-12", {"history": consented(SUNDAY_NIGHT, opted_out=True)}),
        ("R-40", {"masked": True}),
        ("R-41", {"caller_id": "0612345678"}),
        ("R-42", {"caller_id": "0145000000"}),
        ("R-43", {"caller_id": "0937123456"}),
    ],
)
def test_retry_none_when_a_new_fact_is_needed(rule, kw):
    history = kw.pop("history", consented(SUNDAY_NIGHT))
    d = run(SUNDAY_NIGHT, history, **kw)
    assert rule in d.rules
    assert d.retry_at is None


@pytest.mark.parametrize(
    "bloctel",
    [None, Bloctel(date(2026, 1, 1), "opposed", False), Bloctel(date(2026, 3, 1), "opposed", True),
     Bloctel(date(2026, 3, 1), "cleaned", False)],
)
def test_retry_none_for_r10(bloctel):
    d = run(paris(2026, 3, 13, 21, 0), History(bloctel=bloctel))  # Friday night, fr-2023
    assert d.rules[0] == "R-10"
    assert d.retry_at is None


# --- the next legal window -----------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (paris(2026, 9, 11, 20, 30), paris(2026, 9, 14, 10, 0)),  # Friday night -> Monday 10:00
        (paris(2026, 9, 11, 20, 0), paris(2026, 9, 14, 10, 0)),  # 20:00:00 is already closed
        (paris(2026, 9, 9, 13, 0), paris(2026, 9, 9, 14, 0)),  # lunch break
        (paris(2026, 9, 9, 9, 59, 59), paris(2026, 9, 9, 10, 0)),
        (paris(2026, 9, 12, 11, 0), paris(2026, 9, 14, 10, 0)),  # Saturday
        (paris(2026, 11, 10, 20, 15), paris(2026, 11, 12, 10, 0)),  # skips 11 November
        (paris(2027, 3, 26, 11, 0, tz=PARIS), paris(2027, 3, 30, 10, 0)),  # Good Friday (57)
    ],
)
def test_retry_next_window_paris(when, expected):
    dept = "57" if when.month == 3 else "75"
    got = retry(when, consented(when, department=dept))
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()  # expressed as a real local instant


def test_retry_after_easter_monday_depends_on_department():
    """Thursday before Easter 2027, 20:30: Moselle waits for Tuesday (Good
    Friday, weekend, Easter Monday), Paris can call on Friday."""
    thursday = paris(2027, 3, 25, 20, 30)
    assert retry(thursday, consented(thursday, department="57")) == paris(2027, 3, 30, 10, 0)
    assert retry(thursday, consented(thursday, department=None)) == paris(2027, 3, 30, 10, 0)
    assert retry(thursday, consented(thursday, department="75")) == paris(2027, 3, 26, 10, 0)


def test_retry_in_callee_local_time_overseas():
    friday_night = paris(2026, 9, 11, 20, 30, tz=REUNION)
    got = retry(friday_night, consented(friday_night), dialled=REUNION_CALLEE)
    assert got == paris(2026, 9, 14, 10, 0, tz=REUNION)
    assert got.astimezone(UTC).hour == 6


def test_retry_to_a_consented_slot_if_earlier():
    saturday = paris(2026, 9, 12, 9, 0)
    slot = Consent(saturday - timedelta(days=1), slot_from=paris(2026, 9, 12, 9, 30),
                   slot_until=paris(2026, 9, 12, 10, 0))
    assert retry(saturday, History(consents=(slot,), department="75")) == paris(2026, 9, 12, 9, 30)


# --- when the obstacle lifts, moved into a window ---------------------------------------

A1 = paris(2026, 10, 14, 11, 0)  # Wednesday, CEST


def attempts_from(first: datetime) -> tuple[datetime, ...]:
    return tuple(first + timedelta(days=d) for d in (0, 1, 2, 6))


def test_retry_r30_oldest_attempt_plus_30_days():
    call = A1 + timedelta(days=8)
    h = consented(call, attempts=attempts_from(A1))
    assert retry(call, h) == paris(2026, 11, 13, 11, 0)  # 11:00 CET: same wall clock across DST


def test_retry_r30_moved_into_a_legal_window():
    first = paris(2026, 10, 15, 11, 0)  # Thursday: +30 days is Saturday 14 November
    call = first + timedelta(days=8)
    assert retry(call, consented(call, attempts=attempts_from(first))) == paris(2026, 11, 16, 10, 0)


def test_retry_later_than_r30_says_why():
    """R-30 lifts on Saturday 14 November; the retry is Monday 16: the notes
    name the rule that holds the call on Saturday, so a dialer need not guess."""
    first = paris(2026, 10, 15, 11, 0)
    call = first + timedelta(days=8)
    d = run(call, consented(call, attempts=attempts_from(first)))
    assert d.rules == ("R-30",)
    assert "next possible 2026-11-14 11:00+01:00" in d.reasons[0]
    (note,) = [n for n in d.notes if n.startswith("retry at")]
    assert note.startswith("retry at 2026-11-16 10:00+01:00 rather than at the end of R-30 "
                           "(2026-11-14 11:00+01:00), because then R-21: Saturday 2026-11-14")


def test_retry_equal_to_r30_needs_no_note():
    call = A1 + timedelta(days=8)
    d = run(call, consented(call, attempts=attempts_from(A1)))
    assert not [n for n in d.notes if n.startswith("retry at")]


def test_retry_r30_and_hours_together():
    sunday = paris(2026, 10, 25, 11, 0)
    assert retry(sunday, consented(sunday, attempts=attempts_from(A1))) == paris(2026, 11, 13, 11, 0)


def test_retry_r31_refusal_plus_60_days():
    refusal = paris(2026, 9, 10, 15, 30)  # Thursday CEST
    call = refusal + timedelta(days=3)
    h = History(refusals=(refusal,), consents=(Consent(refusal + timedelta(days=1)),), department="75")
    assert retry(call, h) == paris(2026, 11, 9, 15, 30)  # Monday, day 60, 15:30 CET


def test_retry_r31_moved_into_a_legal_window():
    refusal = paris(2026, 9, 9, 19, 0)  # Wednesday: day 60 is Sunday 8 November
    h = History(refusals=(refusal,), consents=(Consent(refusal + timedelta(days=1)),), department="75")
    assert retry(refusal + timedelta(days=1), h) == paris(2026, 11, 9, 10, 0)


def test_retry_is_the_max_of_several_obstacles():
    refusal = paris(2026, 9, 30, 12, 0)  # lifts Sunday 29 November -> Monday 30, 10:00
    call = A1 + timedelta(days=8)
    h = History(attempts=attempts_from(A1), refusals=(refusal,),
                consents=(Consent(refusal + timedelta(hours=1)),), department="75")
    d = run(call, h)
    assert set(d.rules) == {"R-30", "R-31"}
    assert d.retry_at == paris(2026, 11, 30, 10, 0)
    # Without the refusal only R-30 remains, and it lifts earlier.
    assert retry(call, replace(h, refusals=())) == paris(2026, 11, 13, 11, 0)


def test_retry_none_if_consent_expires_first():
    refusal = paris(2026, 9, 10, 15, 30)
    consent = Consent(refusal + timedelta(days=1))
    h = History(refusals=(refusal,), consents=(consent,), department="75")
    call = refusal + timedelta(days=3)
    # R-31 lifts on 2026-11-09 15:30, day 59 of the consent given on 2026-09-11 15:30.
    assert retry(call, h, policy=Policy(consent_max_age_days=58)) is None  # gone by then
    assert retry(call, h, policy=Policy(consent_max_age_days=59)) == paris(2026, 11, 9, 15, 30)


def test_retry_none_if_consent_expires_before_monday():
    friday = paris(2026, 9, 11, 20, 30)
    h = History(consents=(Consent(paris(2025, 9, 12, 20, 30)),), department="75")  # day 364
    assert run(friday, h).rules == ("R-20",)
    assert run(friday, h).retry_at is None


def test_retry_none_if_bloctel_snapshot_goes_stale_first():
    when = paris(2026, 3, 11, 11, 0)
    refusal = when - timedelta(days=3)
    fresh = Bloctel(date(2026, 3, 10), "opposed", False)
    d = run(when, History(refusals=(refusal,), bloctel=fresh, department="75"))
    assert d.rules == ("R-31",)
    assert d.retry_at is None  # in 57 days the snapshot is stale: a new list is needed


def test_retry_across_the_regime_change():
    """Monday 2026-08-10 20:30: the next window is Tuesday, under fr-2026."""
    monday = paris(2026, 8, 10, 20, 30)
    bloctel = Bloctel(date(2026, 8, 1), "opposed", False)
    assert run(monday, History(bloctel=bloctel, department="75")).retry_at is None
    with_consent = History(bloctel=bloctel, consents=(Consent(monday - timedelta(days=5)),),
                           department="75")
    assert run(monday, with_consent).retry_at == paris(2026, 8, 11, 10, 0)


def test_retry_press_ignores_the_gate():
    friday = paris(2026, 9, 11, 20, 30)
    press = Campaign("p", "acme", purpose=Purpose.PRESS)
    assert retry(friday, History(department="75"), campaign=press) == paris(2026, 9, 14, 10, 0)


# --- property: retry_at is honoured ------------------------------------------------------------------

DIALLED = [CALLEE, "0612345678", REUNION_CALLEE, "0590123456", "0596123456", "0508412345"]
BASE = datetime(2026, 6, 1, tzinfo=UTC)


def _at(day: int, minute: int) -> datetime:
    return BASE + timedelta(days=day, minutes=minute)


offsets = st.tuples(st.integers(-40, 40), st.integers(0, 24 * 60 - 1))


@st.composite
def scenarios(draw):
    day = draw(st.integers(0, 240))
    minute = draw(st.one_of(st.integers(0, 24 * 60 - 1), st.sampled_from([480, 539, 540, 660, 719, 720])))
    when = _at(day, minute) + timedelta(seconds=draw(st.sampled_from([0, 0, 59])))
    attempts = tuple(_at(day + d, m) for d, m in draw(st.lists(offsets, max_size=7)))
    refusals = tuple(_at(day + d, m) for d, m in draw(st.lists(
        st.tuples(st.integers(-70, 0), st.integers(0, 1439)), max_size=2)))
    consents = []
    for _ in range(draw(st.integers(0, 2))):
        given = _at(day + draw(st.integers(-400, 3)), draw(st.integers(0, 1439)))
        revoked_after = draw(st.one_of(st.none(), st.integers(-5, 90)))
        revoked = None if revoked_after is None else given + timedelta(days=revoked_after)
        slot_from = slot_until = None
        if draw(st.booleans()):
            slot_from = _at(day + draw(st.integers(-2, 6)), draw(st.integers(0, 1439)))
            slot_until = slot_from + timedelta(minutes=draw(st.integers(1, 600)))
        consents.append(Consent(given, revoked_at=revoked, slot_from=slot_from, slot_until=slot_until))
    bloctel = draw(st.one_of(st.none(), st.builds(
        Bloctel, st.integers(0, 40).map(lambda a: (BASE + timedelta(days=day - a)).date()),
        st.sampled_from(["opposed", "cleaned"]), st.booleans())))
    history = History(
        attempts=attempts, refusals=refusals, consents=tuple(consents),
        contract=draw(st.booleans()), bloctel=bloctel,
        department=draw(st.sampled_from([None, "75", "57", "13"])),
    )
    campaign = Campaign("c", "acme", purpose=draw(st.sampled_from([Purpose.PROSPECTING, Purpose.PRESS])),
                        dialing=Dialing.AUTOMATED)
    policy = Policy(consent_max_age_days=draw(st.sampled_from([365, 30, 90])))
    return when, history, draw(st.sampled_from(DIALLED)), campaign, policy


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_retry_at_is_honoured(scenario):
    """If retry_at is given, deciding the same call then (same history) allows
    it, and one second earlier it is still blocked (retry_at is the earliest)."""
    when, history, dialled, campaign, policy = scenario
    d = run(when, history, dialled=dialled, campaign=campaign, policy=policy)
    assume(d.retry_at is not None)
    assert d.verdict is Verdict.BLOCK
    assert d.retry_at > when
    later = run(d.retry_at, history, dialled=dialled, campaign=campaign, policy=policy)
    assert later.allowed, (d.reasons, later.reasons)
    before = run(d.retry_at - timedelta(seconds=1), history, dialled=dialled, campaign=campaign,
                 policy=policy)
    assert not before.allowed, d.reasons
