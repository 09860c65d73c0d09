"""The decision: a pure function of (call, callee, history, policy).

No I/O happens here: the store hands over a `History` snapshot read inside
the same transaction that will record the attempt (R-30 atomicity), and the
clock is the call's `at`. That makes every rule testable with a frozen clock
and every logged decision replayable by an auditor.

Rule ids are those of RULES.md. Internal failures use `SYS-*` ids so a block
caused by sentinelle itself is never mistaken for a legal finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sentinelle.core import calendar
from sentinelle.core.model import (
    MASKED_CALLER_IDS,
    PARIS,
    Call,
    Consent,
    Decision,
    Dialing,
    History,
    Policy,
    Purpose,
    Regime,
    Verdict,
)
from sentinelle.core.numbers import Kind, Number, NumberError, parse_caller_id

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
    "R-20": "Outside Mon-Fri 10:00-13:00 / 14:00-20:00 in the callee's local time",
    "R-21": "Saturday, Sunday or a public holiday of the callee's territory",
    "R-22": "Exception: consent to be called in a stated slot lifts R-20/R-21",
    "R-30": "At most 4 attempts per rolling 30 days per professional and callee",
    "R-31": "60 days of silence after a refusal (fr-2026: refusal revokes consent)",
    "R-40": "Masked or anonymous caller ID",
    "R-41": "Mobile caller ID",
    "R-42": "Caller ID not from the Arcep ranges allowed for this dialing mode",
    "R-43": "09 37 / 09 38 / 09 39 are technical ranges, not prospecting ranges",
    SYS_CONFIG: "sentinelle: unknown campaign or invalid configuration (fail closed)",
    SYS_STORE: "sentinelle: store missing, locked or corrupt (fail closed)",
    SYS_TIMEOUT: "sentinelle: the check did not finish in time (fail closed)",
    SYS_ERROR: "sentinelle: internal error (fail closed)",
}


@dataclass(frozen=True, slots=True)
class _Finding:
    rule: str
    reason: str
    lifts_at: datetime | None = None  # None: only a new fact (consent, new list...) lifts it
    is_hours: bool = False


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
        Verdict.ALLOW if fail_open else Verdict.BLOCK,
        [] if fail_open else [_Finding(rule, reason)],
        callee=callee,
        notes=(f"{rule} fail-open: {reason}",) if fail_open else (),
    )


def decide(call: Call, callee: Number | NumberError, history: History, policy: Policy) -> Decision:
    """Apply every rule of RULES.md and collect ALL blocking findings.

    All findings are reported (not just the first) so that an auditor sees
    every reason and `retry_at` accounts for every obstacle at once.
    """
    if isinstance(callee, NumberError):
        return _decision(call, policy, Verdict.BLOCK, [_Finding("R-01", f"unparsable number: {callee}")])
    if callee.kind is Kind.SHORT:
        return _decision(
            call, policy, Verdict.ALLOW, [], callee=callee,
            notes=(f"R-00 emergency/short number {callee.e164} passes through",),
        )
    # Every comparison below is made on UTC instants: two aware datetimes that
    # share a tzinfo compare (and subtract) by wall clock, ignoring `fold`, which
    # picks the wrong refusal or attempt in the October fold hour. The decision
    # keeps the caller's own `at` (`original`).
    original = call
    call, history = _in_utc(call), _history_in_utc(history)
    purpose = call.campaign.purpose
    prospecting = purpose.is_consumer_prospecting
    findings: list[_Finding] = list(_caller_id_findings(call))
    notes: list[str] = []
    if call.caller_id is None and not call.masked:
        notes.append("caller ID not given: R-40..R-43 not evaluated")

    if history.opted_out:
        findings.append(_Finding("R-12", "callee asked this professional never to call again"))

    if callee.kind is Kind.FOREIGN:
        if prospecting and policy.foreign == "block":
            findings.append(_Finding("R-02", f"foreign number {callee.e164} (policy foreign=block)"))
        if prospecting:
            # Outside French law, but a refusal is a refusal and four attempts
            # are enough, whoever the callee (with policy foreign="allow").
            findings.extend(_frequency_findings(call, history, PARIS))
            last_refusal = max((r for r in history.refusals if r <= call.at), default=None)
            findings.extend(_refusal_findings(call, last_refusal, PARIS))
        return _decision(original, policy, _verdict(findings), findings, callee=callee,
                         counts=prospecting, notes=tuple(notes))

    assert callee.territory is not None
    local = calendar.local_time(callee.territory, call.at)
    if not prospecting:
        notes.append(f"purpose {purpose.value}: prospecting rules R-10..R-31 do not apply")
        return _decision(original, policy, _verdict(findings), findings, callee=callee,
                         local_time=local, notes=tuple(notes))

    findings.extend(_prospecting_findings(call, callee, history, policy, notes))
    verdict = _verdict(findings)
    retry = None
    if verdict is Verdict.BLOCK:
        retry = _retry_at(call, callee, history, policy, findings)
    return _decision(original, policy, verdict, findings, callee=callee, local_time=local,
                     retry_at=retry, counts=True, notes=tuple(notes))


def _prospecting_findings(
    call: Call, callee: Number, history: History, policy: Policy, notes: list[str]
) -> list[_Finding]:
    """R-10..R-31 for a French callee at `call.at` (UTC). Split out so that
    `_retry_at` can re-run exactly the same rules at a candidate instant."""
    assert callee.territory is not None
    tz = calendar.TIMEZONES[callee.territory]
    findings: list[_Finding] = []
    last_refusal = max((r for r in history.refusals if r <= call.at), default=None)
    consent = valid_consent(history.consents, call.at, policy, last_refusal, tz)
    findings.extend(_gate_findings(call, history, policy, regime_of(policy, call.at), consent,
                                   last_refusal))

    slot = _slot_consent(history.consents, call.at, policy, last_refusal, tz)
    ok, rule, reason = calendar.allowed_at(
        callee.territory, call.at, history.department, policy.cautious_alsace
    )
    if not ok and slot is not None:
        notes.append(f"R-22 consent slot {slot.slot_from} - {slot.slot_until} lifts {rule}")
    elif not ok:
        assert rule is not None and reason is not None
        findings.append(_Finding(rule, reason, is_hours=True))

    findings.extend(_frequency_findings(call, history, tz))
    findings.extend(_refusal_findings(call, last_refusal, tz))
    return findings


def _refusal_findings(call: Call, last_refusal: datetime | None, tz: ZoneInfo) -> list[_Finding]:
    """R-31: 60 calendar days of silence after a refusal."""
    if last_refusal is None or call.at >= _add_days(last_refusal, REFUSAL_SILENCE, tz):
        return []
    lifts = _add_days(last_refusal, REFUSAL_SILENCE, tz)
    return [_Finding(
        "R-31", f"refusal on {last_refusal.astimezone(tz):%Y-%m-%d %H:%M}: "
        f"silent until {lifts.astimezone(tz):%Y-%m-%d %H:%M}", lifts_at=lifts,
    )]


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


def _gate_findings(
    call: Call, history: History, policy: Policy, regime: Regime,
    consent: Consent | None, last_refusal: datetime | None,
) -> list[_Finding]:
    """R-10 (fr-2023) or R-11 (fr-2026), with their contract and press exceptions."""
    if call.campaign.purpose is Purpose.PRESS or history.contract:
        return []
    if regime is Regime.FR_2026:
        if consent is not None:
            return []
        if last_refusal is not None and any(c.given_at <= last_refusal for c in history.consents):
            why = f"consent revoked by the refusal of {last_refusal.astimezone(PARIS):%Y-%m-%d %H:%M} (Paris)"
        elif history.consents:
            why = "no consent valid at this date (revoked, expired or future)"
        else:
            why = "no prior consent recorded for this professional"
        return [_Finding("R-11", why)]
    snap = history.bloctel
    if snap is None:
        return [_Finding("R-10", "no Bloctel snapshot imported for this professional")]
    age = (call.at.astimezone(PARIS).date() - snap.snapshot_date).days
    if age < 0:  # a list dated after the call did not exist then (or its date is a typo)
        return [_Finding("R-10", f"Bloctel snapshot dated {snap.snapshot_date}, after the call: "
                         "no list valid at this date")]
    if age > policy.bloctel_max_age_days:
        return [_Finding("R-10", f"Bloctel snapshot of {snap.snapshot_date} is stale "
                         f"({age} days > {policy.bloctel_max_age_days})")]
    if snap.kind == "opposed" and snap.listed:
        return [_Finding("R-10", f"on the Bloctel opposition list (snapshot {snap.snapshot_date})")]
    if snap.kind == "cleaned" and not snap.listed:
        return [_Finding("R-10", f"not in the Bloctel-cleaned list of {snap.snapshot_date}")]
    if snap.kind not in ("opposed", "cleaned"):  # fail closed: never read an unknown list as clean
        return [_Finding("R-10", f"Bloctel snapshot of {snap.snapshot_date} has unknown kind "
                         f"{snap.kind!r}")]
    return []


def _frequency_findings(call: Call, history: History, tz: ZoneInfo) -> list[_Finding]:
    """R-30: an attempt counts until the same wall-clock time 30 calendar days
    later in the callee's time zone."""
    t = call.at
    near = sorted(a for a in history.attempts
                  if _add_days(a, ATTEMPT_WINDOW, tz) > t and a < _add_days(t, ATTEMPT_WINDOW, tz))
    # Attempts may be recorded out of order (`--at`, imports of dialer logs):
    # the new one must fit in EVERY 30-day window that contains it, i.e. each
    # window starting at an earlier attempt or at the call itself.
    full = any(
        sum(1 for a in near if s <= a < _add_days(s, ATTEMPT_WINDOW, tz)) >= MAX_ATTEMPTS
        for s in [*(a for a in near if a <= t), t]
    )
    if not full:
        return []
    live = [a for a in near if a <= t]
    lifts = (_add_days(live[len(live) - MAX_ATTEMPTS], ATTEMPT_WINDOW, tz)
             if len(live) >= MAX_ATTEMPTS else None)
    if lifts is None:  # the window is filled by attempts recorded after this instant
        return [_Finding("R-30", f"a 30-day window around this instant already holds "
                                 f"{MAX_ATTEMPTS} attempts (some recorded later)")]
    return [_Finding(
        "R-30", f"{len(live)} attempts in the last 30 days (max {MAX_ATTEMPTS}); "
        f"next possible {lifts.astimezone(tz):%Y-%m-%d %H:%M}", lifts_at=lifts,
    )]


def _caller_id_findings(call: Call) -> list[_Finding]:
    """R-40..R-43 apply to every purpose (RULES.md "Scope")."""
    if call.caller_id is None and not call.masked:
        return []  # not presented by the caller of the API: see `decide` notes
    raw = (call.caller_id or "").strip()
    if call.masked or not raw or raw.lower() in MASKED_CALLER_IDS:
        return [_Finding("R-40", "masked or anonymous caller ID")]
    try:
        number = parse_caller_id(raw)
    except NumberError as exc:
        return [_Finding("R-42", f"caller ID is not a valid number: {exc}")]
    if number.kind is Kind.MOBILE:
        return [_Finding("R-41", f"mobile caller ID {number.national or number.e164}")]
    if number.kind is Kind.FOREIGN or not number.national:
        return [_Finding("R-42", f"caller ID {number.e164} is not a French number")]
    national = number.national
    if national.startswith(TECHNICAL_PREFIXES) and number.e164 not in call.professional.technical_caller_ids:
        return [_Finding("R-43", f"caller ID {national}: 09 37/38/39 are technical-platform "
                         "ranges, not prospecting ranges (Arcep correction of 2023-01-03)")]
    is_npv = national.startswith(NPV_PREFIXES)
    if call.campaign.dialing is Dialing.AUTOMATED:
        if not is_npv:
            return [_Finding("R-42", f"automated dialing requires an Arcep NPV caller ID; "
                             f"{national} is not one")]
        return []
    if is_npv or number.e164 in call.professional.caller_ids:
        return []
    if national.startswith(TECHNICAL_PREFIXES):
        return []  # explicitly authorised by the admin (R-43 exception)
    return [_Finding("R-42", f"manual dialing: caller ID {national} is neither an NPV nor "
                     f"authorised for professional {call.professional.name}")]


_RETRY_STEPS = 16  # each step jumps past at least one obstacle; more means "ask a human"


def _retry_at(
    call: Call, callee: Number, history: History, policy: Policy, findings: list[_Finding],
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
        nxt = calendar.next_allowed(callee.territory, t, history.department, policy.cautious_alsace)
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
        findings = _prospecting_findings(replace(call, at=t), callee, history, policy, [])
        if not findings:
            return t.astimezone(PARIS)
    return None


def _in_utc(call: Call) -> Call:
    return replace(call, at=call.at.astimezone(UTC))


def _history_in_utc(h: History) -> History:
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


def _add_days(instant: datetime, delta: timedelta, tz: ZoneInfo) -> datetime:
    """Calendar arithmetic: same wall-clock time N days later in `tz`."""
    return (instant.astimezone(tz) + delta).astimezone(instant.tzinfo)


def _verdict(findings: list[_Finding]) -> Verdict:
    return Verdict.BLOCK if findings else Verdict.ALLOW


def _decision(
    call: Call, policy: Policy, verdict: Verdict, findings: list[_Finding], *,
    callee: Number | None = None, local_time: datetime | None = None,
    retry_at: datetime | None = None, counts: bool = False, notes: tuple[str, ...] = (),
) -> Decision:
    rules: list[str] = []
    for f in findings:
        if f.rule not in rules:
            rules.append(f.rule)
    return Decision(
        verdict=verdict,
        rules=tuple(rules),
        reasons=tuple(f"{f.rule}: {f.reason}" for f in findings),
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
    )
