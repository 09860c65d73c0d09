"""One path into the store for the facts people and dialers report.

A consent with its proof, a revocation, a refusal, a disposition: the CLI
(`consent add`, `refusal add`), the HTTP API and the FastAGI disposition route
all record them through these functions, so a fact is validated the same way
whoever reports it. Why it matters: a refusal keyed to the wrong callee, a
consent dated in the future or a disposition on someone else's call would
each change what the rules allow, and a wrong ALLOW is the costly error.

Every check runs before the first write, so bad input writes nothing; a
problem is a `FactError` naming the field (the API answers 4xx with it, the
CLI exits 2 naming the option). Store faults stay `StoreError`.

What is not one transaction: a do-not-call disposition is three store calls
(refusal, opposition list, disposition), as in the ARI listener. Each is
idempotent, the most protective first, so a retry after a crash completes
the same state and an interrupted one never leaves a callee more callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sentinelle.config import Config, ConfigError
from sentinelle.core.clock import FUTURE_TOLERANCE, system_clock
from sentinelle.core.model import Disposition
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.store import Backend, ConsentProof, from_ts

# The clock skew tolerated between this host and a CRM, a dialer or a PBX.
CLOCK_SKEW = FUTURE_TOLERANCE
# A disposition given by number finds its call among the attempts of this
# window before it (an agent dispositions a call within minutes of it).
DISPOSITION_WINDOW = timedelta(hours=12)
MAX_TEXT = 4000  # proof fields: wording may be a whole sentence, not a document
MAX_SOURCE = 200


class FactError(ValueError):
    """Bad input for one field: `field` is the API's name for it (the CLI maps
    it to its option), `message` says what is wrong without echoing secrets."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ConsentResult:
    consent_id: int
    e164: str
    professional: str

    def to_dict(self) -> dict[str, Any]:
        return {"consent_id": self.consent_id, "e164": self.e164,
                "professional": self.professional}


@dataclass(frozen=True, slots=True)
class RevocationResult:
    revoked: int
    e164: str
    professional: str

    def to_dict(self) -> dict[str, Any]:
        return {"revoked": self.revoked, "e164": self.e164, "professional": self.professional}


@dataclass(frozen=True, slots=True)
class RefusalResult:
    new: bool  # False: the same refusal was already recorded (same call, or same instant)
    e164: str
    professional: str
    campaign: str
    at: datetime
    attempt_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"recorded": self.new, "e164": self.e164, "professional": self.professional,
                "campaign": self.campaign, "at": self.at.isoformat(),
                "attempt_id": self.attempt_id}


@dataclass(frozen=True, slots=True)
class DispositionResult:
    code: Disposition
    e164: str
    professional: str
    attempt_id: int | None  # None: no call of this callee found to attach it to
    refusal: RefusalResult | None  # refused / do-not-call
    optout_added: bool | None  # do-not-call: False if already on the list

    @property
    def recorded(self) -> bool:
        """Whether anything was kept: the disposition itself needs a call."""
        return self.attempt_id is not None or self.refusal is not None

    def to_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "code": self.code.value, "e164": self.e164,
                "professional": self.professional, "attempt_id": self.attempt_id,
                "refusal": self.refusal.to_dict() if self.refusal else None,
                "optout_added": self.optout_added}


# -- validation ----------------------------------------------------------------

def callee(config: Config, raw: str, field: str = "number") -> str:
    """The E.164 of a number typed by a person or sent by a CRM, read by the
    same parser as dialled numbers (so facts and decisions meet on one key)."""
    if not isinstance(raw, str) or not raw.strip():
        raise FactError(field, "required")
    try:
        number = parse(raw, config.policy.outside_prefix)
    except NumberError as exc:
        raise FactError(field, exc.why) from None
    if number.kind is Kind.SHORT:
        raise FactError(field, f"{raw!r} is an emergency/short number (R-00): nothing to record")
    return number.e164


def professional_of(config: Config, campaign: str | None, professional: str | None = None) -> str:
    """Facts belong to a professional; a campaign names one. Given both, they
    must agree: a consent filed under the wrong company would allow calls."""
    if campaign is not None:
        try:
            pro = config.campaign(campaign).professional
        except ConfigError:
            known = ", ".join(sorted(config.campaigns)) or "none"
            raise FactError("campaign", f"unknown campaign {campaign!r} (known: {known})") from None
        if professional is not None and professional != pro:
            raise FactError("professional", f"campaign {campaign!r} belongs to {pro!r}, "
                                            f"not {professional!r}")
        return pro
    if professional is not None:
        if professional not in config.professionals:
            raise FactError("professional", f"unknown professional {professional!r}")
        return professional
    raise FactError("campaign", "required (or professional)")


def instant(value: datetime | None, now: datetime, field: str = "at") -> datetime:
    """An instant a fact happened: not in the future (beyond clock skew),
    defaulting to now. Naive instants are refused here: the callers parse
    text with `parse_instant`, which reads a naive time as Paris time."""
    if value is None:
        return now
    if value.tzinfo is None:
        raise FactError(field, "an instant needs a time zone")
    if value > now + CLOCK_SKEW:
        raise FactError(field, f"{value.isoformat()} is in the future (now "
                               f"{now.isoformat(timespec='seconds')})")
    return value


def _text(value: str | None, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    text = (value or "").strip()
    if required and not text:
        raise FactError(field, "required: R-11 requires provable consent")
    if len(text) > limit:
        raise FactError(field, f"at most {limit} characters")
    if any(ord(c) < 32 and c not in "\t\n" for c in text):
        raise FactError(field, "control characters are not allowed")
    return text


# -- consents ------------------------------------------------------------------

def record_consent(
    store: Backend, config: Config, *, number: str, given_at: datetime, source: str,
    campaign: str | None = None, professional: str | None = None, channel: str = "",
    wording: str = "", evidence_ref: str = "", slot_from: datetime | None = None,
    slot_until: datetime | None = None, now: datetime | None = None,
) -> ConsentResult:
    """A prior consent (R-11) with the proof the professional must be able to
    show; with a slot, an R-22 outside-hours consent. A consent dated in the
    future is refused: it would make a callee callable from a date nobody saw."""
    now = now or system_clock()
    e164 = callee(config, number)
    pro = professional_of(config, campaign, professional)
    given = instant(given_at, now, "given_at")
    proof = ConsentProof(
        source=_text(source, "source", required=True, limit=MAX_SOURCE), given_at=given,
        channel=_text(channel, "channel", limit=MAX_SOURCE), wording=_text(wording, "wording"),
        evidence_ref=_text(evidence_ref, "evidence_ref"),
        slot_from=_slot(slot_from, "slot_from"), slot_until=_slot(slot_until, "slot_until"))
    if (slot_from is None) != (slot_until is None):
        raise FactError("slot_until" if slot_until is None else "slot_from",
                        "slot_from and slot_until go together (an open-ended slot lifts nothing)")
    if slot_from is not None and slot_until is not None and slot_until <= slot_from:
        raise FactError("slot_until", "must be after slot_from")
    return ConsentResult(store.add_consent(pro, e164, proof), e164, pro)


def _slot(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise FactError(field, "an instant needs a time zone")
    return value


def revoke_consents(
    store: Backend, config: Config, *, number: str, campaign: str | None = None,
    professional: str | None = None, at: datetime | None = None, now: datetime | None = None,
) -> RevocationResult:
    """The callee withdrew consent: every live consent to this professional
    ends at `at` (default now). Revoking twice revokes nothing the second time."""
    now = now or system_clock()
    e164 = callee(config, number)
    pro = professional_of(config, campaign, professional)
    when = instant(at, now)
    return RevocationResult(store.revoke_consent(pro, e164, when), e164, pro)


# -- refusals and dispositions ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Target:
    """Who a refusal or disposition is about: a call, or a callee of a professional."""

    e164: str
    professional: str
    campaign: str
    attempt_id: int | None
    attempt_at: datetime | None


def _target(store: Backend, config: Config, attempt_id: int | None, number: str | None,
            campaign: str | None) -> _Target:
    if attempt_id is None:
        if number is None:
            raise FactError("number", "required (or attempt_id)")
        e164 = callee(config, number)
        if campaign is None:
            raise FactError("campaign", "required with number")
        return _Target(e164, professional_of(config, campaign), campaign, None, None)
    if isinstance(attempt_id, bool) or not isinstance(attempt_id, int) or attempt_id <= 0:
        raise FactError("attempt_id", "must be a positive integer")
    row = store.attempt(attempt_id)
    if row is None:
        raise FactError("attempt_id", f"unknown attempt {attempt_id}")
    # A number or campaign sent with the attempt must agree with it: a
    # dialer mixing up two calls must not silence the wrong callee.
    if number is not None and callee(config, number) != row["e164"]:
        raise FactError("number", f"does not match attempt {attempt_id}")
    if campaign is not None and professional_of(config, campaign) != row["professional"]:
        raise FactError("campaign", f"does not match attempt {attempt_id}")
    return _Target(row["e164"], row["professional"], row["campaign"] or campaign or "",
                   attempt_id, from_ts(row["at"]))


def _refusal_instant(target: _Target, at: datetime | None, now: datetime) -> datetime:
    when = instant(at, now)
    if target.attempt_at is not None and when < target.attempt_at - CLOCK_SKEW:
        raise FactError("at", f"before attempt {target.attempt_id} was placed "
                              f"({target.attempt_at.isoformat()})")
    return when


def _refuse(store: Backend, target: _Target, when: datetime, source: str) -> RefusalResult:
    if target.attempt_id is None and when in store.history(target.professional, target.e164,
                                                           when).refusals:
        new = False  # the same refusal reported again (a retry): one refusal
    else:
        new = store.add_refusal(target.professional, target.campaign, target.e164, when, source,
                                target.attempt_id)
    return RefusalResult(new, target.e164, target.professional, target.campaign, when,
                         target.attempt_id)


def record_refusal(
    store: Backend, config: Config, *, at: datetime | None = None, source: str,
    attempt_id: int | None = None, number: str | None = None, campaign: str | None = None,
    now: datetime | None = None,
) -> RefusalResult:
    """R-31: 60 days of silence, and earlier consents revoked. Keyed by the
    call (`attempt_id`: the dialer reads SENTINELLE_ATTEMPT from the channel)
    or by (`number`, `campaign`, `at`); idempotent on either key, so a retried
    report is one refusal. `source` says who reported it (`http:<client>`,
    `cli`, `disposition:refused`...) and is kept with it as evidence."""
    now = now or system_clock()
    target = _target(store, config, attempt_id, number, campaign)
    when = _refusal_instant(target, at, now)
    return _refuse(store, target, when, _text(source, "source", limit=MAX_SOURCE) or "unknown")


def disposition_code(value: str) -> Disposition:
    try:
        return Disposition(value)
    except ValueError:
        allowed = ", ".join(d.value for d in Disposition)
        raise FactError("code", f"unknown disposition {value!r} (allowed: {allowed})") from None


def record_disposition(
    store: Backend, config: Config, *, code: str | Disposition, at: datetime | None = None,
    source: str, attempt_id: int | None = None, number: str | None = None,
    campaign: str | None = None, now: datetime | None = None,
) -> DispositionResult:
    """An agent's disposition of a call, as the ARI disposition keys record
    it: refused -> refusal (R-31); do-not-call -> refusal and the opposition
    list (R-12); callback and wrong-number are kept with the call only.

    Given by number, the call is the professional's last attempt on that
    callee in the DISPOSITION_WINDOW before `at`, so a DTMF refusal and a
    dialer's disposition of the same call are one refusal. No such call: the
    legal effects are still recorded (a refusal is a refusal), the
    disposition itself has nowhere to go and `recorded` says so."""
    now = now or system_clock()
    kind = code if isinstance(code, Disposition) else disposition_code(code)
    target = _target(store, config, attempt_id, number, campaign)
    when = _refusal_instant(target, at, now)
    if target.attempt_id is None:
        target = _nearest_attempt(store, target, when)
    source = _text(source, "source", limit=MAX_SOURCE) or "unknown"
    refusal, optout = None, None
    # The legal effects first, the most protective first (see the module docstring).
    if kind is Disposition.DO_NOT_CALL:
        optout = store.set_optout(target.professional, target.e164, True, source=source)
    if kind in (Disposition.REFUSED, Disposition.DO_NOT_CALL):
        refusal = _refuse(store, target, when, f"{source} disposition:{kind.value}")
    if target.attempt_id is not None:
        store.set_disposition(target.attempt_id, kind.value)
    return DispositionResult(kind, target.e164, target.professional, target.attempt_id, refusal,
                             optout)


def _nearest_attempt(store: Backend, target: _Target, when: datetime) -> _Target:
    """The call a disposition by number is about: the latest attempt of this
    professional on this callee from DISPOSITION_WINDOW before `when` to
    CLOCK_SKEW after it (a dialer may stamp the call's start, a hair before
    sentinelle recorded the attempt)."""
    best: tuple[datetime, dict[str, Any]] | None = None
    for row in store.timeline(target.e164)["attempts"]:
        at = from_ts(row["at"])
        if (row["professional"] != target.professional or at is None
                or not when - DISPOSITION_WINDOW <= at <= when + CLOCK_SKEW):
            continue
        if best is None or at > best[0]:
            best = (at, row)
    if best is None:
        return target
    return _Target(target.e164, target.professional, best[1]["campaign"] or target.campaign,
                   int(best[1]["id"]), best[0])
