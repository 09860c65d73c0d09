"""The decision: a pure function of (call, callee, history, policy).

No I/O happens here: the store hands over a `History` snapshot read inside
the same transaction that will record the attempt (R-30 atomicity), and the
clock is the call's `at`. That makes every rule testable with a frozen clock
and every logged decision replayable by an auditor.

Rule ids are those of docs/rules.md. Internal failures use `SYS-*` ids so a block
caused by sentinelle itself is never mistaken for a legal finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sentinelle.core import calendar
from sentinelle.core.model import (
    MASKED_CALLER_IDS,
    PARIS,
    BloctelKind,
    Call,
    Campaign,
    Consent,
    Decision,
    Dialing,
    History,
    Policy,
    Professional,
    Purpose,
    Regime,
    RuleState,
    Status,
    Verdict,
)
from sentinelle.core.numbers import Kind, Number, NumberError, national_digits, parse_caller_id

MAX_ATTEMPTS = 4
ATTEMPT_WINDOW = timedelta(days=30)  # R-30, calendar days in the callee's time
REFUSAL_SILENCE = timedelta(days=60)

# Arcep verified multi-purpose ranges (NPV), national significant digits.
NPV_PREFIXES: tuple[str, ...] = (
    "0162", "0163", "0270", "0271", "0377", "0378",
    "0424", "0425", "0568", "0569", "0948", "0949",
    "09475", "09476", "09477", "09478", "09479",
)
# technical-platform ranges, NOT for prospecting (corrected 2023-01-03).
TECHNICAL_PREFIXES: tuple[str, ...] = ("0937", "0938", "0939")

SYS_CONFIG = "SYS-CONFIG"
SYS_STORE = "SYS-STORE"
SYS_TIMEOUT = "SYS-TIMEOUT"
SYS_ERROR = "SYS-ERROR"

RULES: dict[str, str] = {
    "R-00": "Emergency and short numbers pass through, never blocked or counted",
    "R-01": "A dialled number that cannot be parsed is blocked (fail closed)",
    "R-02": "Foreign numbers: setting `foreign`, default block for prospecting",
    "R-10": "fr-2023: callee on the Bloctel opposition snapshot, or snapshot stale/missing",
    "R-11": "fr-2026: no valid prior consent (opt-in) from the callee to this professional",
    "R-12": "Callee on this professional's internal opposition list",
    "R-13": "Banned sector (energy-renovation, home-adaptation): no prospecting call, "
            "whatever the consent, unless a contract is in progress",
    "R-20": "Outside Mon-Fri 10:00-13:00 / 14:00-20:00 in the callee's local time",
    "R-21": "Saturday, Sunday or a public holiday of the callee's territory",
    "R-22": "Exception: consent to be called in a stated slot lifts R-20/R-21",
    "R-30": "At most 4 attempts per rolling 30 days per professional and callee",
    "R-31": "60 days of silence after a refusal; the refusal revokes earlier consents (both regimes)",
    "R-40": "Masked or anonymous caller ID",
    "R-41": "Mobile caller ID",
    "R-42": "Caller ID not from the Arcep ranges allowed for this dialing mode",
    "R-43": "09 37 / 09 38 / 09 39 are technical ranges, not prospecting ranges",
    SYS_CONFIG: "sentinelle: unknown campaign or invalid configuration (fail closed)",
    SYS_STORE: "sentinelle: store missing, locked or corrupt (fail closed)",
    SYS_TIMEOUT: "sentinelle: the check did not finish in time (fail closed)",
    SYS_ERROR: "sentinelle: internal error (fail closed)",
}


BLOCKS, PASSES, LIFTED, NOT_APPLICABLE = (
    Status.BLOCKS, Status.PASSES, Status.LIFTED, Status.NOT_APPLICABLE)
CALLER_ID_RULES = ("R-40", "R-41", "R-42", "R-43")


def _blocks(rule: str, reason: str, lifts_at: datetime | None = None,
            is_hours: bool = False) -> RuleState:
    return RuleState(rule, BLOCKS, reason, lifts_at=lifts_at, is_hours=is_hours)


def _clock(instant: datetime, tz: ZoneInfo) -> str:
    """An instant as the rule judges it: on `tz`'s clock, with its offset."""
    return instant.astimezone(tz).isoformat(sep=" ", timespec="minutes")


def regime_of(policy: Policy, at: datetime) -> Regime:
    """Regimes start on Paris calendar dates (the law's dates are metropolitan)."""
    return policy.regime_on(at.astimezone(PARIS).date())


def fail_closed(
    call: Call, rule: str, reason: str, policy: Policy, callee: Number | None = None
) -> Decision:
    """A block for a reason other than the law (bad input, store or internal fault)."""
    fail_open = call.campaign.fail_open and rule in (SYS_STORE, SYS_TIMEOUT, SYS_ERROR)
    return _decision(
        call,
        policy,
        [] if fail_open else [_blocks(rule, reason)],
        callee=callee,
        notes=(f"{rule} fail-open: {reason}",) if fail_open else (),
    )


@dataclass(frozen=True, slots=True)
class _Evaluation:
    states: tuple[RuleState, ...]
    notes: tuple[str, ...]
    local_time: datetime | None
    counts: bool  # an allowed call would be recorded as an R-30 attempt
    prospecting: bool

    @property
    def blocking(self) -> list[RuleState]:
        return [s for s in self.states if s.blocks]


def evaluate(call: Call, callee: Number, history: History, policy: Policy) -> tuple[RuleState, ...]:
    """The state of every rule for this call: the one source `decide` and
    `explain` both read, so the two can never tell an auditor different things."""
    return _evaluate(_in_utc(call), callee, _history_in_utc(history), policy).states


def decide(call: Call, callee: Number | NumberError, history: History, policy: Policy) -> Decision:
    """Apply every rule of docs/rules.md and collect ALL blocking findings.

    All findings are reported (not just the first) so that an auditor sees
    every reason and `retry_at` accounts for every obstacle at once.
    """
    if isinstance(callee, NumberError):
        return _decision(call, policy, [_blocks("R-01", str(callee))])
    if callee.kind is Kind.SHORT:
        why = f"emergency/short number {callee.e164} passes through"
        return _decision(call, policy, [RuleState("R-00", PASSES, why)], callee=callee,
                         notes=(f"R-00 {why}",))
    # Every comparison below is made on UTC instants: two aware datetimes that
    # share a tzinfo compare (and subtract) by wall clock, ignoring `fold`, which
    # picks the wrong refusal or attempt in the October fold hour. The decision
    # keeps the caller's own `at` (`original`).
    original = call
    call, history = _in_utc(call), _history_in_utc(history)
    ev = _evaluate(call, callee, history, policy)
    notes = list(ev.notes)
    retry = None
    if ev.blocking and ev.prospecting and callee.kind is not Kind.FOREIGN:
        retry = _retry_at(call, callee, history, policy, ev.blocking)
        notes += _retry_notes(call, callee, history, policy, ev.blocking, retry)
    return _decision(original, policy, list(ev.states), callee=callee, local_time=ev.local_time,
                     retry_at=retry, counts=ev.counts, notes=tuple(notes))


def _evaluate(call: Call, callee: Number, history: History, policy: Policy) -> _Evaluation:
    """Every rule for a parsed, non-short callee; `call` and `history` in UTC."""
    purpose = call.campaign.purpose
    prospecting = purpose.is_consumer_prospecting
    states: list[RuleState] = list(_caller_id_states(call))
    notes: list[str] = []
    if call.caller_id is None and not call.masked:
        notes.append("caller ID not given: R-40..R-43 not evaluated")
    states.append(_blocks("R-12", "callee asked this professional never to call again")
                  if history.opted_out else
                  RuleState("R-12", PASSES, "not on the internal opposition list"))
    states.append(_sector_state(call, history))

    if callee.kind is Kind.FOREIGN:
        if not prospecting:
            states.append(RuleState("R-02", NOT_APPLICABLE, f"purpose {purpose.value}"))
        elif policy.foreign == "block":
            states.append(_blocks("R-02", f"foreign number {callee.e164} (policy foreign=block)"))
        else:
            states.append(RuleState("R-02", PASSES, f"foreign number {callee.e164} allowed "
                                    "(policy foreign=allow)"))
        if prospecting:
            # Outside French law, but a refusal is a refusal and four attempts
            # are enough, whoever the callee (with policy foreign="allow").
            states.extend(_frequency_states(call, history, PARIS))
            states.extend(_refusal_states(call, _last_refusal(history, call.at), PARIS))
        return _Evaluation(tuple(states), tuple(notes), None, prospecting, prospecting)

    assert callee.territory is not None
    local = calendar.local_time(callee.territory, call.at)
    if not prospecting:
        notes.append(f"purpose {purpose.value}: prospecting rules R-10..R-31 do not apply")
        return _Evaluation(tuple(states), tuple(notes), local, False, False)
    states.extend(_prospecting_states(call, callee, history, policy, notes))
    return _Evaluation(tuple(states), tuple(notes), local, True, True)


def _sector_state(call: Call, history: History) -> RuleState:
    """R-13: a banned sector's prospecting is forbidden outright, so no consent,
    list or hour lifts it (no `lifts_at`: retry_at stays None); only a contract
    in progress with the callee does. Foreign callees too (they may be French
    consumers on a foreign line): the cautious reading."""
    sector = call.campaign.sector
    if not call.campaign.purpose.is_consumer_prospecting:
        return RuleState("R-13", NOT_APPLICABLE, f"purpose {call.campaign.purpose.value}")
    if not sector.is_banned:
        return RuleState("R-13", PASSES, f"campaign sector {sector.value} is not banned")
    if history.contract:
        return RuleState("R-13", PASSES, f"campaign sector {sector.value} is banned, but a "
                         "contract in progress lifts it")
    return _blocks("R-13", f"campaign sector {sector.value}: prospecting calls are forbidden "
                   "whatever the consent; only a contract in progress lifts it")


def _last_refusal(history: History, at: datetime) -> datetime | None:
    return max((r for r in history.refusals if r <= at), default=None)


def _prospecting_states(
    call: Call, callee: Number, history: History, policy: Policy, notes: list[str]
) -> list[RuleState]:
    """R-10..R-31 for a French callee at `call.at` (UTC). Split out so that
    `_retry_at` can re-run exactly the same rules at a candidate instant."""
    assert callee.territory is not None
    tz = calendar.TIMEZONES[callee.territory]
    last_refusal = _last_refusal(history, call.at)
    consent = valid_consent(history.consents, call.at, policy, last_refusal, tz)
    states = _gate_states(call, history, policy, regime_of(policy, call.at), consent,
                          last_refusal, tz)
    states.extend(_calendar_states(call, callee, history, policy, last_refusal, tz, notes))
    states.extend(_frequency_states(call, history, tz))
    states.extend(_refusal_states(call, last_refusal, tz))
    return states


def _calendar_states(
    call: Call, callee: Number, history: History, policy: Policy,
    last_refusal: datetime | None, tz: ZoneInfo, notes: list[str],
) -> list[RuleState]:
    """R-21 (days), R-20 (hours), each judged on the callee's clock, and the
    R-22 consent slot that lifts whichever of them fails."""
    assert callee.territory is not None
    slot = _slot_consent(history.consents, call.at, policy, last_refusal, tz)
    day = calendar.day_allowed(callee.territories, call.at, history.department,
                               policy.cautious_alsace)
    hours = calendar.hours_allowed(callee.territories, call.at)
    states: list[RuleState] = []
    lifted: list[str] = []
    for rule, (ok, why) in (("R-21", day), ("R-20", hours)):
        if ok:
            states.append(RuleState(rule, PASSES, why))
        elif slot is not None:
            states.append(RuleState(rule, LIFTED, f"{why}; lifted by the R-22 consent slot"))
            lifted.append(rule)
        else:
            states.append(_blocks(rule, why, is_hours=True))
    if slot is None:
        states.append(RuleState("R-22", NOT_APPLICABLE, "no consent slot in force at this instant"))
        return states
    assert slot.slot_from is not None or slot.slot_until is not None
    span = " - ".join(_clock(t, tz) if t else "open" for t in (slot.slot_from, slot.slot_until))
    if lifted:
        note = f"R-22 consent slot {span} lifts {', '.join(lifted)}"
        notes.append(note)
        states.append(RuleState("R-22", PASSES, note))
    else:
        states.append(RuleState("R-22", PASSES, f"consent slot {span} in force (not needed: "
                                "inside the legal days and hours)"))
    return states


def _refusal_states(call: Call, last_refusal: datetime | None, tz: ZoneInfo) -> list[RuleState]:
    """R-31: 60 calendar days of silence after a refusal."""
    if last_refusal is None:
        return [RuleState("R-31", PASSES, "no refusal in the last 60 days")]
    lifts = _add_days(last_refusal, REFUSAL_SILENCE, tz)
    if call.at >= lifts:
        return [RuleState("R-31", PASSES, f"last refusal {_clock(last_refusal, tz)}: silence "
                          f"ended {_clock(lifts, tz)}")]
    return [_blocks("R-31", f"refusal on {_clock(last_refusal, tz)}: silent until "
                    f"{_clock(lifts, tz)}", lifts_at=lifts)]


def valid_consent(
    consents: Iterable[Consent], at: datetime, policy: Policy, last_refusal: datetime | None,
    tz: ZoneInfo = PARIS,
) -> Consent | None:
    """The newest consent that is given, unrevoked, young enough (R-11) and
    later than the last refusal (R-31: a refusal revokes earlier consents; we
    apply this in both regimes, the cautious reading).

    The age limit is in calendar days of the callee's zone `tz`, like R-30 and
    R-31: elapsed time would keep a consent given in winter alive one hour too
    long in summer."""
    max_age = timedelta(days=policy.consent_max_age_days)
    best = None
    for c in consents:
        if c.given_at > at or (c.revoked_at is not None and c.revoked_at <= at):
            continue
        if at > _add_days(c.given_at, max_age, tz):
            continue
        if last_refusal is not None and c.given_at <= last_refusal:
            continue
        if best is None or c.given_at > best.given_at:
            best = c
    return best


def _slot_consent(
    consents: Iterable[Consent], at: datetime, policy: Policy, last_refusal: datetime | None,
    tz: ZoneInfo,
) -> Consent | None:
    valid = [c for c in consents if c.slot_from is not None or c.slot_until is not None]
    for c in valid:
        if valid_consent([c], at, policy, last_refusal, tz) and calendar.in_slot(
            at, c.slot_from, c.slot_until
        ):
            return c
    return None


def _gate_states(
    call: Call, history: History, policy: Policy, regime: Regime,
    consent: Consent | None, last_refusal: datetime | None, tz: ZoneInfo,
) -> list[RuleState]:
    """R-10 (fr-2023) or R-11 (fr-2026), with their contract and press exceptions."""
    if call.campaign.purpose is Purpose.PRESS:
        why = "press campaigns are exempt from the Bloctel / consent gate"
        return [RuleState("R-10", NOT_APPLICABLE, why), RuleState("R-11", NOT_APPLICABLE, why)]
    if history.contract:
        why = "contract in progress with this professional: exception to R-10/R-11"
        return [RuleState("R-10", PASSES, why), RuleState("R-11", PASSES, why)]
    if regime is Regime.FR_2026:
        bloctel = RuleState("R-10", NOT_APPLICABLE, f"regime {regime.value}: Bloctel gave way to "
                            "prior consent (R-11)")
        return [bloctel, _consent_state(history, policy, consent, last_refusal, tz)]
    return [_bloctel_state(call, history, policy),
            RuleState("R-11", NOT_APPLICABLE, f"regime {regime.value}: prior consent is required "
                      "from 2026-08-11 (fr-2026)")]


def _consent_state(history: History, policy: Policy, consent: Consent | None,
                   last_refusal: datetime | None, tz: ZoneInfo) -> RuleState:
    if consent is not None:
        until = _add_days(consent.given_at, timedelta(days=policy.consent_max_age_days), tz)
        return RuleState("R-11", PASSES, f"valid consent given {_clock(consent.given_at, tz)} "
                         f"(source {consent.source or '-'}), valid until {_clock(until, tz)}")
    if last_refusal is not None and any(c.given_at <= last_refusal for c in history.consents):
        why = f"consent revoked by the refusal of {_clock(last_refusal, PARIS)}"
    elif history.consents:
        why = "no consent valid at this date (revoked, expired or future)"
    else:
        why = "no prior consent recorded for this professional"
    return _blocks("R-11", why)


def _bloctel_state(call: Call, history: History, policy: Policy) -> RuleState:
    snap = history.bloctel
    if snap is None:
        return _blocks("R-10", "no Bloctel snapshot imported for this professional")
    age = (call.at.astimezone(PARIS).date() - snap.snapshot_date).days
    if age < 0:  # a list dated after the call did not exist then (or its date is a typo)
        return _blocks("R-10", f"Bloctel snapshot dated {snap.snapshot_date}, after the call: "
                       "no list valid at this date")
    if age > policy.bloctel_max_age_days:
        return _blocks("R-10", f"Bloctel snapshot of {snap.snapshot_date} is stale "
                       f"({age} days > {policy.bloctel_max_age_days})")
    if snap.kind not in set(BloctelKind):  # fail closed: never read an unknown list as clean
        return _blocks("R-10", f"Bloctel snapshot of {snap.snapshot_date} has unknown kind "
                       f"{snap.kind!r}")
    if snap.kind == BloctelKind.OPPOSED and snap.listed:
        return _blocks("R-10", f"on the Bloctel opposition list (snapshot {snap.snapshot_date})")
    if snap.kind == BloctelKind.CLEANED and not snap.listed:
        return _blocks("R-10", f"not in the Bloctel-cleaned list of {snap.snapshot_date}")
    where = ("not on the Bloctel opposition list" if snap.kind == BloctelKind.OPPOSED
             else "on the Bloctel-cleaned list")
    return RuleState("R-10", PASSES, f"{where} (snapshot {snap.snapshot_date}, {age} day(s) old)")


def _frequency_states(call: Call, history: History, tz: ZoneInfo) -> list[RuleState]:
    """R-30: an attempt counts until the same wall-clock time 30 calendar days
    later in the callee's time zone."""
    t = call.at
    # Each window's end is computed once: a zone conversion each way is the
    # costliest step here, and a callee at the limit has a dozen windows to
    # try (the check's slowest verdicts were these R-30 blocks).
    horizon = _add_days(t, ATTEMPT_WINDOW, tz)
    near = sorted(a for a in history.attempts
                  if a < horizon and _add_days(a, ATTEMPT_WINDOW, tz) > t)
    live = [a for a in near if a <= t]
    # Attempts may be recorded out of order (`--at`, imports of dialer logs):
    # the new one must fit in EVERY 30-day window that contains it, i.e. each
    # window starting at an earlier attempt or at the call itself.
    windows = ((s, _add_days(s, ATTEMPT_WINDOW, tz)) for s in [*live, t])
    full = any(sum(1 for a in near if s <= a < end) >= MAX_ATTEMPTS for s, end in windows)
    if not full:
        return [RuleState("R-30", PASSES, f"{len(live)} attempt(s) in the last 30 days "
                          f"(max {MAX_ATTEMPTS})")]
    lifts = (_add_days(live[len(live) - MAX_ATTEMPTS], ATTEMPT_WINDOW, tz)
             if len(live) >= MAX_ATTEMPTS else None)
    if lifts is None:  # the window is filled by attempts recorded after this instant
        return [_blocks("R-30", f"a 30-day window around this instant already holds "
                        f"{MAX_ATTEMPTS} attempts (some recorded later)")]
    return [_blocks("R-30", f"{len(live)} attempts in the last 30 days (max {MAX_ATTEMPTS}); "
                    f"next possible {_clock(lifts, tz)}", lifts_at=lifts)]


def _caller_id_states(call: Call) -> list[RuleState]:
    """R-40..R-43 apply to every purpose (docs/rules.md "Scope")."""
    return list(_caller_id_states_of(call.caller_id, call.masked, call.campaign,
                                     call.professional))


# A campaign presents one caller ID to thousands of callees (a scrub: to every
# lead of a list), and the rules read nothing else of the call: cached.
@lru_cache(maxsize=256)
def _caller_id_states_of(caller_id: str | None, masked: bool, campaign: Campaign,
                         professional: Professional) -> tuple[RuleState, ...]:
    call = Call("", datetime.min.replace(tzinfo=UTC), campaign, professional, caller_id, masked)
    if call.caller_id is None and not call.masked:
        return tuple(RuleState(r, NOT_APPLICABLE, "caller ID not given") for r in CALLER_ID_RULES)
    found = _caller_id_findings(call)
    raw = (call.caller_id or "").strip() or "(none)"
    blocked = {s.rule for s in found}
    return (*found, *(RuleState(r, PASSES, f"caller ID {raw}") for r in CALLER_ID_RULES
                      if r not in blocked))


def _caller_id_findings(call: Call) -> list[RuleState]:
    """Like `decide`, every rule that applies is reported: a mobile caller ID
    breaks R-41 and, being neither an NPV nor an authorisable non-mobile
    number, R-42 too."""
    raw = (call.caller_id or "").strip()
    if call.masked or not raw or raw.lower() in MASKED_CALLER_IDS:
        return [_blocks("R-40", "masked or anonymous caller ID")]
    try:
        number: Number | NumberError = parse_caller_id(raw)
    except NumberError as exc:
        number = exc
    return _mobile_findings(raw, number) + _range_findings(call, number)


def _mobile_findings(raw: str, number: Number | NumberError) -> list[RuleState]:
    """R-41 reads the digits as presented, not the parser's verdict: "any number
    that begins with 06 or 07, whatever the sub-range" covers the unallocated
    07 ranges and the overseas mobiles under a wrong country code, which the
    parser refuses as invalid."""
    if isinstance(number, Number) and number.kind is Kind.MOBILE:
        return [_blocks("R-41", f"mobile caller ID {number.national or number.e164}")]
    national = national_digits(raw)
    if national.startswith(("06", "07")):
        return [_blocks("R-41", f"caller ID {national} begins with {national[:2]}: a mobile "
                        "number, whatever the sub-range")]
    return []


def _range_findings(call: Call, number: Number | NumberError) -> list[RuleState]:
    """R-42 and R-43: the ranges allowed for the campaign's dialing mode."""
    if isinstance(number, NumberError):
        return [_blocks("R-42", f"invalid caller ID {number.raw!r}: {number.why}")]
    if number.kind is Kind.FOREIGN or not number.national:
        return [_blocks("R-42", f"caller ID {number.e164} is not a French number")]
    national = number.national
    if national.startswith(TECHNICAL_PREFIXES) and number.e164 not in call.professional.technical_caller_ids:
        return [_blocks("R-43", f"caller ID {national}: 09 37/38/39 are technical-platform "
                        "ranges, not prospecting ranges (Arcep correction of 2023-01-03)")]
    is_npv = national.startswith(NPV_PREFIXES)
    if call.campaign.dialing is Dialing.AUTOMATED:
        if not is_npv:
            return [_blocks("R-42", f"automated dialing requires an Arcep NPV caller ID; "
                            f"{national} is not one")]
        return []
    if is_npv or (number.e164 in call.professional.caller_ids and number.kind is not Kind.MOBILE):
        return []
    if national.startswith(TECHNICAL_PREFIXES):
        return []  # explicitly authorised by the admin (R-43 exception)
    return [_blocks("R-42", f"manual dialing: caller ID {national} is neither an NPV nor a "
                    f"non-mobile number authorised for professional {call.professional.name}")]


_RETRY_STEPS = 16  # each step jumps past at least one obstacle; more means "ask a human"


def _retry_at(
    call: Call, callee: Number, history: History, policy: Policy, findings: list[RuleState],
) -> datetime | None:
    """Earliest instant the same call (same history) becomes legal, if only time
    must pass; None when a new fact is needed (consent, list, admin action).

    Each candidate is re-checked with the very rules of `decide`, because
    obstacles can appear on the way: a consent that expires, a Bloctel
    snapshot that goes stale, the switch to fr-2026, or a refusal or attempts
    recorded after `call.at` (out-of-order imports). A retry_at that would be
    blocked again is worse than none: the dialer would trust it.
    """
    assert callee.territory is not None
    tz = calendar.TIMEZONES[callee.territory]
    t = call.at
    for _ in range(_RETRY_STEPS):
        if any(f.lifts_at is None and not f.is_hours for f in findings):
            return None
        lifts = [f.lifts_at for f in findings if f.lifts_at is not None]
        if any(x <= t for x in lifts):
            return None  # an obstacle that does not move with time: do not loop
        t = max([t, *lifts])
        candidates = []
        nxt = calendar.next_allowed(callee.territories, t, history.department, policy.cautious_alsace)
        if nxt is not None:
            candidates.append(nxt)
        for c in history.consents:  # a slot may open before the next ordinary window
            if c.slot_from is None or c.slot_until is None:
                continue
            start = max(t, c.slot_from, c.given_at)
            last_refusal = max((r for r in history.refusals if r <= start), default=None)
            if start < c.slot_until and valid_consent([c], start, policy, last_refusal, tz):
                candidates.append(start)
        if not candidates:
            return None
        t = min(candidates)
        findings = [f for f in _prospecting_states(replace(call, at=t), callee, history, policy, [])
                    if f.blocks]
        if not findings:
            return t.astimezone(PARIS)
    return None


def _retry_notes(
    call: Call, callee: Number, history: History, policy: Policy,
    blocking: list[RuleState], retry: datetime | None,
) -> list[str]:
    """Why `retry_at` is later than the instant a time-bound rule (R-30, R-31)
    itself names: a dialer reading "next possible X" and "retry at Y" must
    not have to guess what lies between (a weekend, a holiday, the night)."""
    if retry is None or callee.territory is None:
        return []
    tz = calendar.TIMEZONES[callee.territory]
    out = []
    for f in blocking:
        if f.lifts_at is None or f.is_hours or f.lifts_at >= retry:
            continue
        then = [s for s in _prospecting_states(replace(call, at=f.lifts_at), callee, history,
                                               policy, []) if s.blocks]
        why = "; ".join(f"{s.rule}: {s.reason}" for s in then)
        out.append(f"retry at {_clock(retry, tz)} rather than at the end of {f.rule} "
                   f"({_clock(f.lifts_at, tz)}), because then {why}")
    return out


def _in_utc(call: Call) -> Call:
    return call if call.at.tzinfo is UTC else replace(call, at=call.at.astimezone(UTC))


def _history_in_utc(h: History) -> History:
    # A history read from the store is in UTC already (it stores UTC text):
    # it is returned as it is, rather than copied instant by instant.
    if all(a.tzinfo is UTC for a in h.attempts) and all(r.tzinfo is UTC for r in h.refusals) \
            and all(_consent_in_utc(c) for c in h.consents):
        return h

    def utc(instant: datetime | None) -> datetime | None:
        return None if instant is None else instant.astimezone(UTC)

    return replace(
        h,
        attempts=tuple(a.astimezone(UTC) for a in h.attempts),
        refusals=tuple(r.astimezone(UTC) for r in h.refusals),
        consents=tuple(
            replace(c, given_at=c.given_at.astimezone(UTC), revoked_at=utc(c.revoked_at),
                    slot_from=utc(c.slot_from), slot_until=utc(c.slot_until))
            for c in h.consents
        ),
    )


def _consent_in_utc(c: Consent) -> bool:
    return c.given_at.tzinfo is UTC and all(
        t is None or t.tzinfo is UTC for t in (c.revoked_at, c.slot_from, c.slot_until))


def _add_days(instant: datetime, delta: timedelta, tz: ZoneInfo) -> datetime:
    """Calendar arithmetic: same wall-clock time N days later in `tz`."""
    if instant.tzinfo is UTC:
        return _add_days_utc(instant, delta, tz)
    return (instant.astimezone(tz) + delta).astimezone(instant.tzinfo)


# One decision asks for the same window ends several times (R-30's windows at
# the call, then again at each retry candidate): a zone conversion each way
# costs more than the lookup. UTC instants only: two instants of one zone
# that differ only by `fold` are equal keys, two UTC instants never are.
@lru_cache(maxsize=4096)
def _add_days_utc(instant: datetime, delta: timedelta, tz: ZoneInfo) -> datetime:
    return (instant.astimezone(tz) + delta).astimezone(UTC)


def _decision(
    call: Call, policy: Policy, states: list[RuleState], *,
    callee: Number | None = None, local_time: datetime | None = None,
    retry_at: datetime | None = None, counts: bool = False, notes: tuple[str, ...] = (),
) -> Decision:
    """The decision IS its states: its rules are exactly those that block."""
    blocking = [s for s in states if s.blocks]
    rules: list[str] = []
    for f in blocking:
        if f.rule not in rules:
            rules.append(f.rule)
    verdict = Verdict.BLOCK if blocking else Verdict.ALLOW
    return Decision(
        verdict=verdict,
        rules=tuple(rules),
        reasons=tuple(f"{f.rule}: {f.reason}" for f in blocking),
        regime=regime_of(policy, call.at).value,
        at=call.at,
        callee=callee,
        local_time=local_time,
        retry_at=retry_at,
        counts=counts and verdict is Verdict.ALLOW,
        notes=notes,
        campaign=call.campaign.name,
        professional=call.professional.name,
        dialled=call.dialled,
        caller_id=None if call.masked else call.caller_id,
        states=tuple(states),
    )
