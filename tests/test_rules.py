"""The pure decision `rules.decide`, rule by rule and boundary by boundary.

Everything runs against the real zoneinfo zones and the real `holidays`
calendars: a mocked calendar would only test our own assumptions about them.
Each test names the rule id of docs/rules.md it pins down, so a failing test points
an auditor at the paragraph of the law that would be breached.

Reference days (all checked against the calendar):
- 2026-03-11 / 2026-07-08 Wednesdays under fr-2023 (Bloctel gate);
- 2026-09-09 / 2027-01-13 Wednesdays under fr-2026 (consent gate);
- 2027-03-26 Good Friday (Alsace-Moselle only), 2026-11-11 Armistice (national).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinelle.core import rules
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
    Sector,
    Verdict,
)
from sentinelle.core.numbers import NumberError, parse
from sentinelle.core.rules import RULES, decide

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
GUADELOUPE = ZoneInfo("America/Guadeloupe")

NPV = "0162000000"  # Arcep multi-purpose range: valid caller ID for automated dialing
AUTHORISED = "0142000000"  # listed by the admin for manual dialing (not an NPV)
CALLEE = "0145678901"  # metropolitan fixed line
MOBILE_CALLEE = "0612345678"  # no department can be inferred from a mobile
REUNION_CALLEE = "0262123456"

ACME = Professional("acme", caller_ids=frozenset({"+33142000000"}))
PROMO = Campaign("promo", "acme")
POLICY = Policy()

FR2023_DAY = date(2026, 3, 11)  # Wednesday, winter time
FR2026_DAY = date(2026, 9, 9)  # Wednesday, summer time


def paris(y: int, m: int, d: int, h: int = 11, mi: int = 0, s: int = 0, tz: ZoneInfo = PARIS) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=tz)


def on(day: date, h: int = 11, mi: int = 0, s: int = 0, tz: ZoneInfo = PARIS) -> datetime:
    return datetime(day.year, day.month, day.day, h, mi, s, tzinfo=tz)


def clean(when: datetime, **changes) -> History:
    """A history that passes both gates: a fresh Bloctel snapshot that does not
    list the callee (fr-2023) and a recent consent (fr-2026). Tests then change
    exactly the fact they are about."""
    base = History(
        consents=(Consent(given_at=when - timedelta(days=10), source="web form v3"),),
        bloctel=Bloctel(snapshot_date=when.astimezone(PARIS).date() - timedelta(days=1),
                        kind="opposed", listed=False),
    )
    return replace(base, **changes)


def run(
    when: datetime,
    history: History | None = None,
    *,
    dialled: str = CALLEE,
    campaign: Campaign = PROMO,
    professional: Professional = ACME,
    caller_id: str | None = NPV,
    masked: bool = False,
    policy: Policy = POLICY,
) -> Decision:
    try:
        callee = parse(dialled)
    except NumberError as exc:
        callee = exc
    call = Call(dialled=dialled, at=when, campaign=campaign, professional=professional,
                caller_id=caller_id, masked=masked)
    return decide(call, callee, clean(when) if history is None else history, policy)


def campaign(purpose: Purpose = Purpose.PROSPECTING, dialing: Dialing = Dialing.AUTOMATED) -> Campaign:
    return Campaign(f"{purpose.value}-{dialing.value}", "acme", purpose=purpose, dialing=dialing)


def assert_allowed(d: Decision) -> None:
    assert d.verdict is Verdict.ALLOW, d.reasons
    assert d.rules == ()


def assert_blocked(d: Decision, *rules: str) -> None:
    assert d.verdict is Verdict.BLOCK
    assert set(rules) <= set(d.rules), (rules, d.reasons)


def test_baseline_allowed_in_both_regimes():
    """The helpers' clean history really is clean: every other test relies on it."""
    for day in (FR2023_DAY, FR2026_DAY):
        d = run(on(day))
        assert_allowed(d)
        assert d.counts is True  # an allowed prospecting call is an R-30 attempt
        assert d.retry_at is None


def test_every_rule_id_is_documented():
    for rid in ("R-00", "R-01", "R-02", "R-10", "R-11", "R-12", "R-13", "R-20", "R-21", "R-22",
                "R-30", "R-31", "R-40", "R-41", "R-42", "R-43"):
        assert rid in RULES


# --- R-00 / R-01 / R-02 ----------------------------------------------------------------


@pytest.mark.parametrize("short", ["15", "17", "18", "112", "114", "115", "116000", "119",
                                   "191", "196", "197", "3900", "1014"])
def test_r00_short_numbers_pass_and_are_not_counted(short):
    """Emergency numbers must go through whatever else is wrong: Sunday night,
    masked caller ID, opted out, a full R-30 window."""
    sunday_night = paris(2026, 9, 13, 3, 0)
    full = tuple(sunday_night - timedelta(days=i) for i in range(1, 6))
    d = run(sunday_night, History(attempts=full, opted_out=True), dialled=short, masked=True)
    assert_allowed(d)
    assert d.counts is False
    assert any(n.startswith("R-00") for n in d.notes)


@pytest.mark.parametrize("raw", ["abc", "0612", "+33 6 12 34 56 78 90", "", "1234"])
def test_r01_unparsable_blocks_with_raw_input(raw):
    d = run(on(FR2026_DAY), dialled=raw)
    assert d.verdict is Verdict.BLOCK
    assert d.rules == ("R-01",)
    assert repr(raw) in d.reasons[0]  # the raw input, quoted, for the auditor
    assert d.counts is False
    assert d.retry_at is None


def _repeated_phrase(text: str) -> str | None:
    """A word said twice in a row, or a two-word phrase said twice: what a
    message prefix repeated by the message it wraps looks like."""
    words = re.findall(r"\w+", text.lower())
    pairs = list(pairwise(words))
    for a, b in pairs:
        if a == b:
            return a
    twice = sorted({" ".join(p) for p in pairs if pairs.count(p) > 1})
    return twice[0] if twice else None


BAD_INPUTS = ["06444", "abc", "06ABC", "+44 1234 5", "+33 6 12", "0712345678", "33612345678",
              "+596 690 12 34 56", "0508000000", "9" * 70, "٠٦١٢٣٤٥٦٧٨"]


@pytest.mark.parametrize("raw", BAD_INPUTS)
def test_r01_r42_reasons_say_things_once(raw):
    """Issue #10 item 12: "R-01: unparsable number: unparsable number '06444'"."""
    d = run(on(FR2026_DAY), dialled=raw)
    assert d.rules == ("R-01",)
    caller = run(on(FR2026_DAY), caller_id=raw)
    assert "R-42" in caller.rules
    for reason in d.reasons + caller.reasons:
        assert _repeated_phrase(reason) is None, reason
    assert d.reasons[0].startswith(f"R-01: unparsable number {raw[:64]!r}") or len(raw) > 64


@pytest.mark.parametrize("purpose", [Purpose.PROSPECTING, Purpose.PRESS])
def test_r02_foreign_blocked_by_default_for_prospecting_and_press(purpose):
    d = run(on(FR2026_DAY), dialled="+4930123456", campaign=campaign(purpose))
    assert_blocked(d, "R-02")
    assert d.counts is False


def test_r02_foreign_allowed_with_policy_and_counted():
    d = run(on(FR2026_DAY), History(), dialled="+14155552671", policy=Policy(foreign="allow"))
    assert_allowed(d)
    assert d.counts is True  # still an attempt of this professional


@pytest.mark.parametrize("purpose", [Purpose.SERVICE, Purpose.B2B])
def test_r02_not_applied_to_service_or_b2b(purpose):
    d = run(on(FR2026_DAY), History(), dialled="+4930123456", campaign=campaign(purpose))
    assert_allowed(d)
    assert d.counts is False


# --- regimes -------------------------------------------------------------------------------


def test_regime_switches_on_paris_date_2026_08_11():
    """Bloctel ended on 2026-08-10: a Bloctel-clean callee without consent may be
    called that Monday but not the next day (consent required, R-11)."""
    bloctel_only = History(bloctel=Bloctel(date(2026, 8, 1), "opposed", False))
    monday = run(paris(2026, 8, 10, 19, 59, 59), bloctel_only)
    assert monday.regime == "fr-2023"
    assert_allowed(monday)
    tuesday = run(paris(2026, 8, 11, 10, 0), bloctel_only)
    assert tuesday.regime == "fr-2026"
    assert tuesday.rules == ("R-11",)


def test_regime_uses_paris_date_not_utc_date():
    # 2026-08-10T22:30Z is already 2026-08-11 00:30 in Paris.
    d = run(datetime(2026, 8, 10, 22, 30, tzinfo=UTC), History())
    assert d.regime == "fr-2026"
    assert "R-11" in d.rules and "R-10" not in d.rules


def test_regime_pinned_in_policy_overrides_the_date():
    late = on(FR2026_DAY)
    d = run(late, History(consents=clean(late).consents), policy=Policy(regime="fr-2023"))
    assert d.regime == "fr-2023"
    assert d.rules == ("R-10",)  # no snapshot: fr-2023 gate applies despite the date
    early = on(FR2023_DAY)
    d = run(early, History(bloctel=clean(early).bloctel), policy=Policy(regime="fr-2026"))
    assert d.regime == "fr-2026"
    assert d.rules == ("R-11",)


# --- R-10 Bloctel (fr-2023) ----------------------------------------------------------------

WHEN_2023 = on(FR2023_DAY)


def snap(age_days: int, kind: str = "opposed", listed: bool = False) -> Bloctel:
    return Bloctel(FR2023_DAY - timedelta(days=age_days), kind, listed)


@pytest.mark.parametrize(
    ("bloctel", "blocked"),
    [
        (None, True),  # never report "clean" from a missing list
        (snap(31), True),  # stale: blocks every prospecting call
        (snap(30), False),  # 30 days exactly is still fresh
        (snap(0), False),
        (snap(1, "opposed", True), True),
        (snap(1, "cleaned", False), True),  # cleaned list = callable numbers only
        (snap(1, "cleaned", True), False),
        (snap(31, "cleaned", True), True),
    ],
)
def test_r10_bloctel(bloctel, blocked):
    d = run(WHEN_2023, History(bloctel=bloctel))
    if blocked:
        assert d.rules == ("R-10",)
        assert d.retry_at is None  # only a new snapshot lifts R-10
    else:
        assert_allowed(d)


def test_r10_stale_reason_and_setting():
    d = run(WHEN_2023, History(bloctel=snap(31)))
    assert "stale" in d.reasons[0]
    assert_allowed(run(WHEN_2023, History(bloctel=snap(31)), policy=Policy(bloctel_max_age_days=31)))
    assert run(WHEN_2023, History(bloctel=snap(8)), policy=Policy(bloctel_max_age_days=7)).rules == ("R-10",)


def test_r10_snapshot_age_counts_paris_calendar_days():
    """30 days exactly at 23:59 Paris is fine; at 00:00 the next day it is 31."""
    s = Bloctel(date(2026, 2, 9), "opposed", False)
    policy = Policy(bloctel_max_age_days=30)
    # 2026-03-11 is day 30 after 2026-02-09. Slot consent lifts the hour rules only.
    slot = Consent(given_at=paris(2026, 3, 1), slot_from=paris(2026, 3, 11, 20),
                   slot_until=paris(2026, 3, 12, 2))
    h = History(bloctel=s, consents=(slot,))
    assert_allowed(run(paris(2026, 3, 11, 23, 59, 59), h, policy=policy))
    assert run(paris(2026, 3, 12, 0, 0, 0), h, policy=policy).rules == ("R-10",)


def test_r10_unknown_snapshot_kind_fails_closed():
    """A snapshot whose kind we do not understand must not be read as clean."""
    assert run(WHEN_2023, History(bloctel=snap(1, "Opposed", False))).rules == ("R-10",)
    assert run(WHEN_2023, History(bloctel=snap(1, "", True))).rules == ("R-10",)


@pytest.mark.parametrize("bloctel", [None, snap(90), snap(1, "opposed", True), snap(1, "cleaned", False)])
def test_r10_exceptions_contract_and_press(bloctel):
    assert_allowed(run(WHEN_2023, History(bloctel=bloctel, contract=True)))
    assert_allowed(run(WHEN_2023, History(bloctel=bloctel), campaign=campaign(Purpose.PRESS)))


@pytest.mark.parametrize("purpose", [Purpose.SERVICE, Purpose.B2B])
def test_r10_not_applied_to_service_b2b(purpose):
    assert_allowed(run(WHEN_2023, History(bloctel=snap(1, "opposed", True)), campaign=campaign(purpose)))


# --- R-11 consent (fr-2026) ----------------------------------------------------------------

WHEN_2026 = on(FR2026_DAY)


def test_r11_no_consent_blocks():
    d = run(WHEN_2026, History())
    assert d.rules == ("R-11",)
    assert d.retry_at is None


def test_r11_bloctel_is_irrelevant_after_2026_08_10():
    listed = Bloctel(FR2026_DAY, "opposed", True)
    assert_allowed(run(WHEN_2026, clean(WHEN_2026, bloctel=listed)))


def test_r11_revoked_consent():
    given = WHEN_2026 - timedelta(days=20)
    assert run(WHEN_2026, History(consents=(Consent(given, revoked_at=WHEN_2026),))).rules == ("R-11",)
    assert run(WHEN_2026, History(consents=(Consent(given, revoked_at=WHEN_2026 - timedelta(days=1)),))
               ).rules == ("R-11",)
    # A revocation recorded for later does not reach back in time.
    assert_allowed(run(WHEN_2026, History(consents=(Consent(given, revoked_at=WHEN_2026
                                                            + timedelta(seconds=1)),))))


@pytest.mark.parametrize(("age_days", "ok"), [(364, True), (365, True), (366, False)])
def test_r11_consent_max_age_default_365(age_days, ok):
    # Given 2025-09-xx at the same wall-clock time; both instants in CEST.
    given = WHEN_2026 - timedelta(days=age_days)
    d = run(WHEN_2026, History(consents=(Consent(given),)))
    assert d.allowed is ok, d.reasons
    if not ok:
        assert d.rules == ("R-11",)


def test_r11_consent_age_is_one_second_precise():
    given = datetime(2025, 9, 9, 11, 0, tzinfo=PARIS)  # 365 days before WHEN_2026
    assert_allowed(run(WHEN_2026, History(consents=(Consent(given),))))
    assert run(WHEN_2026 + timedelta(seconds=1), History(consents=(Consent(given),))).rules == ("R-11",)


def test_r11_consent_age_counts_calendar_days_across_dst():
    """Max age is in calendar days of the callee, like R-30 and R-31. Given
    Friday 2027-03-26 11:00 CET (stored in UTC, as the store does), 4 days later
    is Tuesday 2027-03-30 11:00 CEST: only 95 hours have elapsed, and counting
    elapsed time would keep the consent alive one hour too long (a wrong allow)."""
    given = datetime(2027, 3, 26, 10, 0, tzinfo=UTC)
    h = History(consents=(Consent(given),))
    policy = Policy(consent_max_age_days=4)
    assert_allowed(run(paris(2027, 3, 30, 11, 0), h, policy=policy))
    assert run(paris(2027, 3, 30, 11, 0, 1), h, policy=policy).rules == ("R-11",)


def test_r11_consent_max_age_setting():
    given = WHEN_2026 - timedelta(days=31)
    assert run(WHEN_2026, History(consents=(Consent(given),)),
               policy=Policy(consent_max_age_days=30)).rules == ("R-11",)


def test_r11_future_dated_consent_does_not_count():
    d = run(WHEN_2026, History(consents=(Consent(WHEN_2026 + timedelta(minutes=1)),)))
    assert d.rules == ("R-11",)
    assert d.retry_at is None  # a consent "from the future" is a data problem, not a wait


def test_r11_consent_given_before_a_refusal_is_revoked_by_it():
    refusal = WHEN_2026 - timedelta(days=61)  # R-31 has lapsed, the revocation has not
    d = run(WHEN_2026, History(refusals=(refusal,), consents=(Consent(refusal - timedelta(days=1)),)))
    assert d.rules == ("R-11",)
    assert "revoked" in d.reasons[0]


def test_r11_new_consent_after_refusal_but_r31_still_holds():
    refusal = WHEN_2026 - timedelta(days=10)
    h = History(refusals=(refusal,), consents=(Consent(refusal - timedelta(days=5)),
                                               Consent(refusal + timedelta(days=1))))
    d = run(WHEN_2026, h)
    assert d.rules == ("R-31",)  # the new consent satisfies R-11, the 60 days do not pass
    assert_allowed(run(refusal + timedelta(days=60), h))  # 2026-10-29, a Thursday, 11:00


@pytest.mark.parametrize("history", [History(contract=True),
                                     History(contract=True, consents=(Consent(WHEN_2026
                                                                              - timedelta(days=900)),))])
def test_r11_contract_exception(history):
    assert_allowed(run(WHEN_2026, history))


@pytest.mark.parametrize("purpose", [Purpose.PRESS, Purpose.SERVICE, Purpose.B2B])
def test_r11_press_exception_and_service_b2b_skip(purpose):
    assert_allowed(run(WHEN_2026, History(), campaign=campaign(purpose)))


# --- R-12 internal opposition ------------------------------------------------------------


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize("day", [FR2023_DAY, FR2026_DAY])
def test_r12_opt_out_blocks_every_purpose(purpose, day):
    """Cautious choice: "never call me again" is honoured even by service/b2b calls."""
    when = on(day)
    d = run(when, clean(when, opted_out=True, contract=True), campaign=campaign(purpose))
    assert d.rules == ("R-12",)
    assert d.retry_at is None


def test_r12_applies_to_allowed_foreign_numbers():
    d = run(WHEN_2026, History(opted_out=True), dialled="+4930123456", policy=Policy(foreign="allow"))
    assert d.rules == ("R-12",)


# --- R-20 hours in the callee's time --------------------------------------------------------

BOUNDARIES = [
    ((9, 59, 59), False), ((10, 0, 0), True), ((12, 59, 59), True), ((13, 0, 0), False),
    ((13, 59, 59), False), ((14, 0, 0), True), ((19, 59, 59), True), ((20, 0, 0), False),
]


@pytest.mark.parametrize(("hms", "ok"), BOUNDARIES)
@pytest.mark.parametrize(
    ("dialled", "tz", "day"),
    [
        (CALLEE, PARIS, date(2026, 9, 9)),  # CEST
        (CALLEE, PARIS, date(2027, 1, 13)),  # CET
        (REUNION_CALLEE, REUNION, date(2026, 9, 9)),
        ("0590123456", GUADELOUPE, date(2027, 1, 13)),
        ("0508412345", ZoneInfo("America/Miquelon"), date(2026, 9, 9)),
    ],
)
def test_r20_boundaries_in_callee_local_time(hms, ok, dialled, tz, day):
    when = on(day, *hms, tz=tz)
    d = run(when, dialled=dialled)
    if ok:
        assert_allowed(d)
    else:
        assert d.rules == ("R-20",)
        assert d.local_time is not None and d.local_time.utcoffset() == when.utcoffset()


def test_r20_same_instant_allowed_in_paris_not_in_reunion():
    instant = datetime(2026, 9, 9, 17, 0, tzinfo=UTC)  # 19:00 Paris, 21:00 Réunion
    assert_allowed(run(instant, dialled=CALLEE))
    d = run(instant, dialled=REUNION_CALLEE)
    assert d.rules == ("R-20",)
    assert d.local_time.hour == 21


def test_r20_same_instant_allowed_in_paris_not_in_guadeloupe():
    instant = datetime(2026, 9, 9, 8, 30, tzinfo=UTC)  # 10:30 Paris, 04:30 Guadeloupe
    assert_allowed(run(instant, dialled=CALLEE))
    assert run(instant, dialled="0590123456").rules == ("R-20",)
    # ...and a Guadeloupe evening that is already night in Paris.
    late = datetime(2026, 9, 9, 23, 30, tzinfo=UTC)  # 19:30 Guadeloupe
    assert_allowed(run(late, dialled="0590123456"))
    assert run(late, dialled=CALLEE).rules == ("R-20",)


def test_r20_overseas_mobile_uses_its_territory():
    # 0692 is a Réunion mobile even though it is dialled like a national number.
    instant = datetime(2026, 9, 9, 17, 0, tzinfo=UTC)
    assert run(instant, dialled="0692123456").rules == ("R-20",)


@pytest.mark.parametrize("purpose", [Purpose.SERVICE, Purpose.B2B])
def test_r20_r21_not_applied_to_service_b2b(purpose):
    assert_allowed(run(paris(2026, 9, 13, 22, 0), History(), campaign=campaign(purpose)))


def test_r20_applies_to_press():
    assert run(paris(2026, 9, 9, 21, 0), History(), campaign=campaign(Purpose.PRESS)).rules == ("R-20",)


# --- R-21 days ------------------------------------------------------------------------------


@pytest.mark.parametrize("when", [paris(2026, 9, 12, 11), paris(2026, 9, 13, 11)])
def test_r21_weekend(when):
    d = run(when)
    assert d.rules == ("R-21",)
    assert "weekend" in d.reasons[0]


def test_r21_national_holiday_whatever_the_department():
    when = paris(2026, 11, 11, 11)  # Armistice, a Wednesday
    for dep in (None, "75", "57"):
        assert run(when, clean(when, department=dep)).rules == ("R-21",)


@pytest.mark.parametrize(
    ("when", "department", "dialled", "blocked"),
    [
        (paris(2027, 3, 26, 11), None, CALLEE, True),  # Good Friday, department unknown
        (paris(2027, 3, 26, 11), None, MOBILE_CALLEE, True),
        (paris(2027, 3, 26, 11), "75", CALLEE, False),
        (paris(2027, 3, 26, 11), "57", CALLEE, True),
        (paris(2027, 3, 26, 11), "67", CALLEE, True),
        (paris(2027, 3, 26, 11), "68", MOBILE_CALLEE, True),
        (paris(2028, 12, 26, 11), None, CALLEE, True),  # 26 December, a Tuesday
        (paris(2028, 12, 26, 11), "75", CALLEE, False),
        (paris(2028, 12, 26, 11), "57", CALLEE, True),
    ],
)
def test_r21_alsace_moselle_days(when, department, dialled, blocked):
    d = run(when, clean(when, department=department), dialled=dialled)
    if blocked:
        assert d.rules == ("R-21",)
    else:
        assert_allowed(d)


def test_r21_cautious_alsace_can_be_turned_off():
    when = paris(2027, 3, 26, 11)
    assert_allowed(run(when, clean(when), policy=Policy(cautious_alsace=False)))


@pytest.mark.parametrize(
    ("dialled", "tz", "day"),
    [
        (REUNION_CALLEE, REUNION, date(2027, 12, 20)),  # Abolition of slavery, Réunion
        ("0596123456", ZoneInfo("America/Martinique"), date(2028, 5, 22)),  # Martinique
    ],
)
def test_r21_overseas_holidays(dialled, tz, day):
    when = on(day, 11, tz=tz)
    assert run(when, dialled=dialled).rules == ("R-21",)
    # Not a holiday for a metropolitan callee on the same day.
    assert_allowed(run(on(day, 11), clean(on(day, 11), department="75")))


def test_r21_saint_martin_fixed_line_on_saint_martin_day():
    """0590 87 serves Saint-Martin or Saint-Barthélemy (libphonenumber): 28 May,
    Saint-Martin's abolition day, blocks it (it was judged on Saint-Barthélemy's calendar)."""
    d = run(on(date(2026, 5, 28), 11, tz=GUADELOUPE), dialled="0590871234")
    assert d.rules == ("R-21",)
    assert "(MF;" in d.reasons[0]
    assert_allowed(run(on(date(2026, 5, 27), 11, tz=GUADELOUPE), dialled="0590871234"))


@pytest.mark.parametrize("day", [date(2026, 5, 27), date(2026, 5, 28), date(2026, 10, 9)])
@pytest.mark.parametrize("mobile", ["0690123456", "0691301234", "+590 690 12 34 56", "0709012345"])
def test_r21_590_mobile_blocked_on_every_island_day(mobile, day):
    """A +590 mobile does not say which island it serves: every island's day blocks it."""
    when = on(day, 11, tz=GUADELOUPE)
    d = run(when, dialled=mobile)
    assert d.rules == ("R-21",)
    assert d.retry_at is not None and d.retry_at > when


def test_r21_department_names_the_island_of_a_590_mobile():
    oct_9, may_27 = on(date(2026, 10, 9), 11, tz=GUADELOUPE), on(date(2026, 5, 27), 11, tz=GUADELOUPE)
    assert_allowed(run(oct_9, clean(oct_9, department="971"), dialled="0690123456"))
    assert run(may_27, clean(may_27, department="971"), dialled="0690123456").rules == ("R-21",)
    assert run(oct_9, clean(oct_9, department="977"), dialled="0690123456").rules == ("R-21",)


def test_r21_day_is_the_callee_day():
    """Monday 05:30 in Paris is still Sunday 23:30 in Guadeloupe: the weekend
    is judged on the callee's calendar (R-21 reported, and R-20 as well)."""
    instant = datetime(2026, 9, 14, 3, 30, tzinfo=UTC)  # Sunday 23:30 in Guadeloupe
    d = run(instant, dialled="0590123456")
    assert d.rules == ("R-21", "R-20")


def test_r21_reported_before_r20():
    """On a Sunday night both rules block: the day first (the obstacle that
    lasts longest), then the hour. Every blocking rule is reported."""
    d = run(paris(2026, 9, 13, 22, 0))
    assert d.rules == ("R-21", "R-20")
    assert "weekend" in d.reasons[0] and "outside 10:00-13:00" in d.reasons[1]


# --- R-22 consent slots ----------------------------------------------------------------------

SAT = paris(2026, 9, 12, 9, 0)  # Saturday, outside


def slot_consent(**changes) -> Consent:
    c = Consent(given_at=SAT - timedelta(days=3), slot_from=SAT, slot_until=SAT + timedelta(minutes=30))
    return replace(c, **changes)


def test_r22_slot_lifts_r20_r21():
    d = run(SAT + timedelta(minutes=15), History(consents=(slot_consent(),)))
    assert_allowed(d)
    assert any(n.startswith("R-22") for n in d.notes)
    assert d.counts is True  # still an attempt: R-22 does not lift R-30


def test_r22_note_names_every_rule_the_slot_lifts_on_the_callees_clock():
    """Saturday 09:15 is outside the days AND the hours: the slot lifts both,
    and the note says so, with the slot in local time with its offset."""
    d = run(SAT + timedelta(minutes=15), History(consents=(slot_consent(),)))
    (note,) = [n for n in d.notes if n.startswith("R-22")]
    assert note == "R-22 consent slot 2026-09-12 09:00+02:00 - 2026-09-12 09:30+02:00 lifts R-21, R-20"
    lifted = {s.rule for s in d.states if s.status.value == "lifted"}
    assert lifted == {"R-20", "R-21"}


def test_r22_slot_is_half_open():
    h = History(consents=(slot_consent(),))
    assert_allowed(run(SAT, h))
    assert run(SAT - timedelta(seconds=1), h).rules[0] == "R-21"
    assert run(SAT + timedelta(minutes=30), h).rules[0] == "R-21"


def test_r22_slot_does_not_lift_r30():
    h = History(consents=(slot_consent(),), attempts=tuple(SAT - timedelta(days=i) for i in (1, 2, 5, 9)))
    assert run(SAT + timedelta(minutes=1), h).rules == ("R-30",)


def test_r22_slot_does_not_lift_r31():
    h = History(consents=(slot_consent(),), refusals=(SAT - timedelta(days=5),))
    d = run(SAT + timedelta(minutes=1), h)
    assert "R-31" in d.rules


@pytest.mark.parametrize(
    "consent",
    [
        slot_consent(revoked_at=SAT - timedelta(days=1)),
        slot_consent(given_at=SAT - timedelta(days=400)),  # expired (R-11 max age)
        slot_consent(given_at=SAT + timedelta(minutes=20)),  # future-dated at call time
        slot_consent(slot_until=None),  # open-ended: not an express, specific slot
        slot_consent(slot_from=None),
    ],
)
def test_r22_invalid_slot_consent_does_not_lift(consent):
    h = History(consents=(consent,), contract=True)  # contract: isolate the hour rules
    assert run(SAT + timedelta(minutes=10), h).rules[0] == "R-21"


def test_r22_slot_lifts_r20_in_callee_time():
    # A Réunion callee agreed to a 21:00-21:30 callback, their time.
    start = paris(2026, 9, 9, 21, 0, tz=REUNION)
    h = History(consents=(Consent(start - timedelta(days=1), slot_from=start,
                                  slot_until=start + timedelta(minutes=30)),))
    assert_allowed(run(start + timedelta(minutes=5), h, dialled=REUNION_CALLEE))
    assert run(start - timedelta(minutes=5), h, dialled=REUNION_CALLEE).rules == ("R-20",)


# --- R-30 frequency --------------------------------------------------------------------------

A1 = paris(2026, 10, 14, 11, 0)  # Wednesday, CEST


def four_attempts(first: datetime = A1) -> tuple[datetime, ...]:
    return tuple(first + timedelta(days=d) for d in (0, 1, 2, 6))


def test_r30_fifth_attempt_in_30_days_blocks():
    call = A1 + timedelta(days=8)  # Thursday 2026-10-22
    h = clean(call, attempts=four_attempts())
    d = run(call, h)
    assert d.rules == ("R-30",)
    three = clean(call, attempts=four_attempts()[1:])
    assert_allowed(run(call, three))


def test_r30_fifth_allowed_exactly_when_oldest_leaves_across_dst():
    """A1 is 11:00 CEST; 30 calendar days later is Friday 2026-11-13 11:00 CET,
    i.e. 30 days + 1 hour of elapsed time: the window follows the callee's calendar."""
    h = clean(A1, attempts=four_attempts(), consents=(Consent(A1 - timedelta(days=1)),))
    leave = paris(2026, 11, 13, 11, 0)
    assert (leave - A1.astimezone(UTC)).total_seconds() == 30 * 86400 + 3600
    assert_allowed(run(leave, h))
    d = run(leave - timedelta(seconds=1), h)
    assert d.rules == ("R-30",)
    # Elapsed-time arithmetic would have allowed 10:00 CET already.
    assert run(A1.astimezone(UTC) + timedelta(days=30), h).rules == ("R-30",)


def test_r30_attempts_in_utc_judged_in_callee_zone():
    """The store hands attempts back in UTC; the window still ends at the same
    wall-clock time in the callee's zone (here Réunion, no DST: 30 x 24 h)."""
    first = datetime(2026, 10, 14, 8, 0, tzinfo=UTC)  # 12:00 Réunion
    attempts = tuple(first + timedelta(days=d) for d in (0, 1, 2, 6))
    h = clean(first, attempts=attempts, consents=(Consent(first - timedelta(days=1)),))
    assert_allowed(run(first + timedelta(days=30), h, dialled=REUNION_CALLEE))
    assert run(first + timedelta(days=30, seconds=-1), h, dialled=REUNION_CALLEE).rules == ("R-30",)


def test_r30_counts_every_attempt_whatever_the_campaign_or_outcome():
    """History holds the professional's attempts, answered or not: the rule has
    no notion of outcome, so four unanswered attempts still fill the window."""
    call = A1 + timedelta(days=7)
    assert "R-30" in run(call, clean(call, attempts=four_attempts())).rules


def test_r30_press_is_limited_too():
    call = A1 + timedelta(days=7)
    d = run(call, History(attempts=four_attempts()), campaign=campaign(Purpose.PRESS))
    assert d.rules == ("R-30",)


@pytest.mark.parametrize("purpose", [Purpose.SERVICE, Purpose.B2B])
def test_r30_service_b2b_are_not_limited_nor_counted(purpose):
    call = A1 + timedelta(days=7)
    d = run(call, History(attempts=four_attempts()), campaign=campaign(purpose))
    assert_allowed(d)
    assert d.counts is False


def test_r30_attempts_recorded_after_the_call_instant():
    """Imports or `--at` can record attempts out of order: four attempts in the
    following days already fill any window that would contain this call."""
    t = paris(2026, 10, 13, 11, 0)  # Tuesday
    later = tuple(t + timedelta(days=d) for d in (1, 2, 3, 8))
    d = run(t, clean(t, attempts=later))
    assert d.rules == ("R-30",)
    assert d.retry_at is None or run(d.retry_at, clean(t, attempts=later)).allowed


def test_r30_windows_straddling_the_call():
    """Five attempts within ±30 days, but no 30-day window containing the call
    would hold more than four: allowed. One more and one window overflows."""
    t = paris(2026, 11, 4, 11, 0)  # Wednesday
    around = tuple(t + timedelta(days=d) for d in (-20, -15, -10, 14, 20))
    assert_allowed(run(t, clean(t, attempts=around)))
    crowded = (*around, t - timedelta(days=5))
    assert run(t, clean(t, attempts=crowded)).rules == ("R-30",)


def test_r30_reports_with_other_findings():
    """All findings are reported, not only the first one."""
    sunday = paris(2026, 10, 18, 11, 0)
    h = clean(sunday, attempts=four_attempts(), opted_out=True, refusals=(sunday - timedelta(days=1),))
    d = run(sunday, h, masked=True)
    assert set(d.rules) == {"R-40", "R-12", "R-21", "R-30", "R-31", "R-11"}
    assert len(d.reasons) == len(d.rules)


def _violates(existing: list[datetime], t: datetime) -> bool:
    """Independent oracle: would adding `t` make some 30-calendar-day window
    (Paris wall clock, the callee's zone here) hold more than 4 attempts?"""
    pts = sorted([*existing, t])
    for s in pts:
        end = (s.astimezone(PARIS) + timedelta(days=30)).astimezone(UTC)
        inside = [p for p in pts if s <= p < end]
        if t in inside and len(inside) > 4:
            return True
    return False


# Legal instants: weekdays in a Paris window, over ~5 months that include the
# October DST change and the 1 and 11 November holidays (those are simply blocked).
_slots = st.tuples(
    st.integers(min_value=0, max_value=150),
    st.sampled_from([(10, 0), (10, 30), (11, 0), (12, 59), (14, 0), (16, 0), (19, 59)]),
)


def _instant(day_and_time: tuple[int, tuple[int, int]]) -> datetime:
    day, (h, m) = day_and_time
    d = date(2026, 9, 1) + timedelta(days=day)
    return datetime(d.year, d.month, d.day, h, m, tzinfo=PARIS).astimezone(UTC)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_slots, min_size=1, max_size=25))
def test_r30_property_no_window_ever_holds_more_than_four(slots):
    """Insert attempts in random order (as imports and `--at` can); whatever the
    order, the recorded attempts never put 5 in one 30-day window, and R-30
    blocks only when adding the call would actually do so (no over-blocking)."""
    recorded: list[datetime] = []
    for t in map(_instant, slots):
        d = run(t, History(attempts=tuple(recorded), contract=True, department="75"))
        assert ("R-30" in d.rules) == _violates(recorded, t), (t, recorded, d.reasons)
        if d.allowed:
            recorded.append(t)
    pts = sorted(recorded)
    for s in pts:
        end = (s.astimezone(PARIS) + timedelta(days=30)).astimezone(UTC)
        assert sum(1 for p in pts if s <= p < end) <= 4


# --- R-31 refusal -----------------------------------------------------------------------------

REFUSAL = paris(2026, 9, 9, 15, 30)  # Wednesday, CEST


@pytest.mark.parametrize(
    ("when", "blocked"),
    [
        (REFUSAL + timedelta(days=1), True),
        (paris(2026, 11, 6, 15, 30), True),  # day 58 (Friday)
        (paris(2026, 11, 7, 15, 30), True),  # day 59 (Saturday: R-21 as well)
        (paris(2026, 11, 8, 15, 30), False),  # day 60, same wall-clock time (Sunday!)
    ],
)
def test_r31_sixty_days(when, blocked):
    # A weekend slot consent given after the refusal isolates R-31 from R-21.
    slot = Consent(REFUSAL + timedelta(hours=1), slot_from=paris(2026, 11, 7), slot_until=paris(2026, 11, 9))
    d = run(when, clean(when, refusals=(REFUSAL,), consents=(slot,)))
    if blocked:
        assert "R-31" in d.rules
    else:
        assert_allowed(d)


def test_r31_day_60_same_wall_clock_across_dst():
    """60 calendar days after Thursday 15:30 CEST is Monday 15:30 CET, 60 days
    and one hour of elapsed time: one second before is still blocked."""
    refusal = datetime(2026, 9, 10, 13, 30, tzinfo=UTC)  # 15:30 CEST, as the store returns it
    h = History(refusals=(refusal,), contract=True, department="75")
    monday = paris(2026, 11, 9, 15, 30)
    assert_allowed(run(monday, h))
    assert run(monday - timedelta(seconds=1), h).rules == ("R-31",)
    assert run(refusal + timedelta(days=60), h).rules == ("R-31",)  # elapsed-time reading


def test_r31_applies_in_fr2023_and_to_press():
    when = on(FR2023_DAY)
    assert run(when, clean(when, refusals=(when - timedelta(days=3),))).rules == ("R-31",)
    d = run(WHEN_2026, History(refusals=(WHEN_2026 - timedelta(days=3),)), campaign=campaign(Purpose.PRESS))
    assert d.rules == ("R-31",)


def test_r31_latest_refusal_counts():
    refusals = (WHEN_2026 - timedelta(days=100), WHEN_2026 - timedelta(days=10))
    h = History(refusals=refusals, contract=True)
    assert run(WHEN_2026, h).rules == ("R-31",)


def test_r31_refusal_after_the_call_instant_is_ignored():
    h = History(refusals=(WHEN_2026 + timedelta(hours=1),), contract=True)
    assert_allowed(run(WHEN_2026, h))


def test_r31_latest_refusal_picked_by_instant_not_wall_clock():
    """Two refusals in the October fold hour (02:30 CEST then 02:10 CET): the
    later one is 02:10 CET even though its wall clock reads earlier."""
    first = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=0)  # 00:30Z
    second = datetime(2026, 10, 25, 2, 10, tzinfo=PARIS, fold=1)  # 01:10Z
    assert second.astimezone(UTC) > first.astimezone(UTC)
    lift = datetime(2026, 12, 24, 2, 10, tzinfo=PARIS)  # 60 days after `second`
    slot = Consent(lift - timedelta(days=1), slot_from=lift - timedelta(hours=2),
                   slot_until=lift + timedelta(hours=2))
    h = History(refusals=(first, second), consents=(slot,))
    assert run(lift - timedelta(minutes=10), h).rules == ("R-31",)
    assert_allowed(run(lift, h))


# --- R-13 banned sectors ----------------------------------------------------------------------

BANNED = [Sector.ENERGY_RENOVATION, Sector.HOME_ADAPTATION]


def sector_campaign(sector: Sector, purpose: Purpose = Purpose.PROSPECTING) -> Campaign:
    return Campaign(f"{sector.value}-{purpose.value}", "acme", purpose=purpose, sector=sector)


@pytest.mark.parametrize("day", [FR2023_DAY, FR2026_DAY])
@pytest.mark.parametrize("sector", BANNED)
def test_r13_banned_sector_blocks_whatever_the_consent(sector, day):
    """A clean history (fresh Bloctel, recent consent) inside the hours: still forbidden."""
    d = run(on(day), campaign=sector_campaign(sector))
    assert d.rules == ("R-13",)
    assert sector.value in d.reasons[0]
    assert d.retry_at is None  # time never makes it legal
    assert d.counts is False


@pytest.mark.parametrize("sector", BANNED)
def test_r13_retry_at_stays_none_with_hour_obstacles(sector):
    sunday_night = paris(2026, 9, 13, 22, 0)
    d = run(sunday_night, campaign=sector_campaign(sector))
    assert set(d.rules) == {"R-13", "R-21", "R-20"}  # Sunday, and 22:00: days and hours both block
    assert d.retry_at is None


@pytest.mark.parametrize("sector", BANNED)
def test_r13_contract_in_progress_lifts_it(sector):
    when = on(FR2026_DAY)
    assert_allowed(run(when, clean(when, contract=True, consents=()), campaign=sector_campaign(sector)))


@pytest.mark.parametrize("sector", BANNED)
def test_r13_applies_to_press_not_to_service_or_b2b(sector):
    when = on(FR2026_DAY)
    assert run(when, campaign=sector_campaign(sector, Purpose.PRESS)).rules == ("R-13",)
    for purpose in (Purpose.SERVICE, Purpose.B2B):
        assert_allowed(run(when, campaign=sector_campaign(sector, purpose)))


def test_r13_applies_to_foreign_callees_too():
    """Outside French law for R-02's sake (foreign = "allow"), but the callee
    may be a French consumer on a foreign line: the cautious reading blocks."""
    d = run(on(FR2026_DAY), dialled="+4930123456", campaign=sector_campaign(Sector.HOME_ADAPTATION),
            policy=Policy(foreign="allow"))
    assert d.rules == ("R-13",)


def test_r13_other_sector_is_neutral():
    assert_allowed(run(on(FR2026_DAY), campaign=sector_campaign(Sector.OTHER)))


# --- R-40..R-43 caller ID ---------------------------------------------------------------------

ALL_PURPOSES = list(Purpose)


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
@pytest.mark.parametrize(("caller_id", "masked"), [(None, True), ("", False), ("  ", False),
                                                   ("anonymous", False), ("Anonymous", False),
                                                   ("restricted", False), (NPV, True)])
def test_r40_masked_or_anonymous(purpose, caller_id, masked):
    d = run(WHEN_2026, caller_id=caller_id, masked=masked, campaign=campaign(purpose))
    assert d.rules == ("R-40",)
    assert d.retry_at is None


def test_caller_id_not_given_is_noted_not_checked():
    d = run(WHEN_2026, caller_id=None)
    assert_allowed(d)
    assert any("caller ID not given" in n for n in d.notes)


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
@pytest.mark.parametrize("mobile", ["0612345678", "0751234567", "+33612345678", "0639123456",
                                    "0690123456", "0691123456", "0692123456", "0693123456",
                                    "0694123456", "0696123456", "0697123456"])
def test_r41_mobile_caller_id(purpose, mobile):
    d = run(WHEN_2026, caller_id=mobile, campaign=campaign(purpose, Dialing.MANUAL))
    # Neither an NPV nor an authorised non-mobile number: R-42 applies as well.
    assert d.rules == ("R-41", "R-42")


def test_r41_even_if_the_admin_lists_the_mobile():
    pro = Professional("acme", caller_ids=frozenset({"+33612345678"}))
    d = run(WHEN_2026, caller_id="0612345678", professional=pro, campaign=campaign(dialing=Dialing.MANUAL))
    # R-42 (manual) authorises listed NON-mobile numbers only: listing a mobile lifts nothing.
    assert d.rules == ("R-41", "R-42")
    assert "non-mobile" in d.reasons[1]


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
@pytest.mark.parametrize("dialing", list(Dialing))
@pytest.mark.parametrize("caller_id", [
    "0712345678", "07 00 00 00 00", "0729123456",  # 07 ranges libphonenumber calls unallocated
    "+33712345678", "0033 7 12 34 56 78", "+33 (0)7 12 34 56 78", "+33 0712345678",
    "0709412345",  # a 07 09 block beyond the overseas ones
    "+596 690 12 34 56", "+262 690123456",  # an overseas mobile under the wrong country code
    "06123",  # not even a whole number: still "begins with 06"
])
def test_r41_any_caller_id_that_begins_with_06_or_07(caller_id, dialing, purpose):
    """R-41's own words: "any number that begins with 06 or 07, whatever the
    sub-range". The parser calls these invalid, which is R-42 as well: both are listed."""
    d = run(WHEN_2026, caller_id=caller_id, campaign=campaign(purpose, dialing))
    assert d.rules == ("R-41", "R-42")
    assert d.retry_at is None


@pytest.mark.parametrize("caller_id", ["0612345678", "+33 690 12 34 56", "0508551234"])
def test_r41_and_r42_both_listed_for_automated_dialing(caller_id):
    d = run(WHEN_2026, caller_id=caller_id)
    assert d.rules == ("R-41", "R-42")
    assert "NPV" in d.reasons[1]


NPVS = ["0162000000", "0163000000", "0270000000", "0271000000", "0377000000", "0378000000",
        "0424000000", "0425000000", "0568000000", "0569000000", "0948000000", "0949000000",
        "0947512345", "0947612345", "0947712345", "0947812345", "0947912345", "+33162000000",
        "0033 1 62 00 00 00"]


@pytest.mark.parametrize("dialing", list(Dialing))
@pytest.mark.parametrize("npv", NPVS)
def test_r42_npv_accepted_for_both_dialing_modes(npv, dialing):
    assert_allowed(run(WHEN_2026, caller_id=npv, campaign=campaign(dialing=dialing)))


@pytest.mark.parametrize("caller_id", [AUTHORISED, "0145000000", "0947412345", "0980000000",
                                       "0800123456", "0262123456", "+4930123456", "12ab", "3900"])
def test_r42_automated_requires_npv(caller_id):
    d = run(WHEN_2026, caller_id=caller_id)
    assert d.rules == ("R-42",)


def test_r42_manual_accepts_authorised_number():
    manual = campaign(dialing=Dialing.MANUAL)
    assert_allowed(run(WHEN_2026, caller_id=AUTHORISED, campaign=manual))
    assert_allowed(run(WHEN_2026, caller_id="+33 1 42 00 00 00", campaign=manual))
    d = run(WHEN_2026, caller_id="0145000000", campaign=manual)
    assert d.rules == ("R-42",)
    assert "acme" in d.reasons[0]
    other = Professional("other")  # authorisations are per professional
    assert run(WHEN_2026, caller_id=AUTHORISED, campaign=manual, professional=other).rules == ("R-42",)


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
@pytest.mark.parametrize("dialing", list(Dialing))
@pytest.mark.parametrize("technical", ["0937123456", "0938123456", "0939123456"])
def test_r43_technical_ranges_refused_with_explanation(technical, dialing, purpose):
    # Even listed as an ordinary authorised number, a 0937/8/9 needs the explicit R-43 opt-in.
    pro = Professional("acme", caller_ids=frozenset({parse(technical).e164}))
    d = run(WHEN_2026, caller_id=technical, professional=pro, campaign=campaign(purpose, dialing))
    assert d.rules == ("R-43",)
    assert "2023-01-03" in d.reasons[0] and "technical" in d.reasons[0]


def test_r43_explicit_authorisation():
    pro = Professional("acme", technical_caller_ids=frozenset({"+33937123456"}))
    assert_allowed(run(WHEN_2026, caller_id="0937123456", professional=pro,
                       campaign=campaign(dialing=Dialing.MANUAL)))
    # Only that number: its neighbour is still refused.
    assert run(WHEN_2026, caller_id="0937123457", professional=pro,
               campaign=campaign(dialing=Dialing.MANUAL)).rules == ("R-43",)
    # Automated dialing still needs an NPV, authorisation or not.
    assert run(WHEN_2026, caller_id="0937123456", professional=pro).rules == ("R-42",)


@pytest.mark.parametrize("purpose", [Purpose.SERVICE, Purpose.B2B, Purpose.PRESS])
def test_caller_id_rules_apply_to_non_prospecting(purpose):
    d = run(paris(2026, 9, 13, 22), History(), caller_id="0145000000", campaign=campaign(purpose))
    assert "R-42" in d.rules


def test_caller_id_rules_apply_to_foreign_callees():
    d = run(WHEN_2026, dialled="+4930123456", masked=True, policy=Policy(foreign="allow"))
    assert d.rules == ("R-40",)


# --- decision record --------------------------------------------------------------------------


def test_decision_to_dict_carries_the_evidence():
    d = run(datetime(2026, 9, 9, 17, 0, tzinfo=UTC), dialled=REUNION_CALLEE)
    out = d.to_dict()
    assert out["verdict"] == "block" and out["rules"] == ["R-20"]
    assert out["callee"]["timezone"] == "Indian/Reunion"
    assert out["callee"]["local_time"].startswith("2026-09-09T21:00:00+04:00")
    assert out["regime"] == "fr-2026" and out["counts"] is False
    assert out["caller_id"] == NPV
    assert run(WHEN_2026, masked=True).to_dict()["caller_id"] is None


def test_R10_snapshot_dated_after_the_call_is_no_list():
    """A list dated after the call did not exist at the call's date (or its
    date is a typo that would keep it 'fresh' for months): R-10 blocks."""
    at = on(FR2023_DAY)
    later = clean(at, bloctel=Bloctel(FR2023_DAY + timedelta(days=1), "opposed", False))
    d = run(at, later)
    assert_blocked(d, "R-10")
    assert "after the call" in d.reasons[0]
    assert_allowed(run(at, clean(at, bloctel=Bloctel(FR2023_DAY, "opposed", False))))


def test_R31_applies_to_foreign_callees_even_when_allowed():
    """foreign="allow": outside French law, but a refusal still silences."""
    at = on(FR2026_DAY)
    policy = replace(POLICY, foreign="allow")
    assert_allowed(run(at, History(), dialled="+442079460000", policy=policy))
    refused = History(refusals=(at - timedelta(days=5),))
    assert_blocked(run(at, refused, dialled="+442079460000", policy=policy), "R-31")


@given(st.integers(min_value=0, max_value=366 * 24 * 4 - 1),
       st.sampled_from(["Europe/Paris", "Indian/Reunion", "America/Guadeloupe",
                        "Pacific/Noumea"]),
       st.sampled_from([30, 60, 183]))
def test_window_ends_are_the_same_wall_clock_time_in_the_zone_whatever_the_cache(
        quarter_hours: int, zone: str, days: int) -> None:
    """R-30/R-31/R-11 windows end at the same wall-clock time N days later in
    the callee's zone. UTC instants go through a cache (rules._add_days_utc):
    its answer must be the uncached one, for every zone asked about the same
    instant (a key without the zone would give Paris's end to Réunion), and
    whether the instant comes in UTC or in the zone's own time."""
    tz = ZoneInfo(zone)
    instant = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=15 * quarter_hours)
    expected = (instant.astimezone(tz) + timedelta(days=days)).astimezone(UTC)
    for tzinfo in (UTC, tz):
        for _ in range(2):  # the second call is answered from the cache
            end = rules._add_days(instant.astimezone(tzinfo), timedelta(days=days), tz)
            assert end == expected
            assert end.tzinfo is tzinfo
    paris_end = rules._add_days(instant, timedelta(days=days), ZoneInfo("Europe/Paris"))
    assert paris_end == (instant.astimezone(ZoneInfo("Europe/Paris"))
                         + timedelta(days=days)).astimezone(UTC)
