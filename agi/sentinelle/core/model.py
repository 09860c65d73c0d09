"""The vocabulary of a decision: pure dataclasses and enums, no I/O.

Every layer speaks these types: the rules take a `Call`, a `History` and a
`Policy` and return a `Decision`; the store reads and writes them; the PBX and
evidence layers only render them. Keeping them apart from the rules and from
the TOML parsing means a reader of the model never pulls in SQLite, click or
the file system, and the rules cannot depend on how a setting was spelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sentinelle.core import calendar
from sentinelle.core.numbers import Number

# Regimes start on Paris dates, and every instant sentinelle prints is Paris
# time with its offset unless a rule judges it on the callee's clock.
PARIS = ZoneInfo("Europe/Paris")


class Purpose(StrEnum):
    PROSPECTING = "prospecting"
    SERVICE = "service"
    PRESS = "press"
    B2B = "b2b"

    @property
    def is_consumer_prospecting(self) -> bool:
        """`press` is still prospecting (hours, frequency, refusal apply); it
        is only exempt from the Bloctel / consent gate (R-10, R-11)."""
        return self in (Purpose.PROSPECTING, Purpose.PRESS)


class Sector(StrEnum):
    """What a campaign sells, for R-13 (values named after docs/rules.md's wording).

    Telephone prospecting for energy-renovation work or equipment (loi
    2020-901) and for home-adaptation work (loi 2025-594) is forbidden
    outright, whatever the consent. `other` is the neutral default: any sector
    the law does not ban.
    """

    ENERGY_RENOVATION = "energy-renovation"
    HOME_ADAPTATION = "home-adaptation"
    OTHER = "other"

    @property
    def is_banned(self) -> bool:
        return self in (Sector.ENERGY_RENOVATION, Sector.HOME_ADAPTATION)


class Dialing(StrEnum):
    AUTOMATED = "automated"
    MANUAL = "manual"


class Regime(StrEnum):
    FR_2023 = "fr-2023"
    FR_2026 = "fr-2026"


# The date a regime starts is data (docs/rules.md "Regimes"): kept here, in order.
REGIME_STARTS: tuple[tuple[Regime, date], ...] = (
    (Regime.FR_2023, date(2023, 3, 1)),
    (Regime.FR_2026, date(2026, 8, 11)),
)


def regime_for(day: date) -> Regime:
    """The regime in force on `day` (a Europe/Paris calendar date).

    Dates before the first known regime get the earliest one: an older
    regime is never more permissive than fr-2023 for our purposes.
    """
    current = REGIME_STARTS[0][0]
    for regime, start in REGIME_STARTS:
        if day >= start:
            current = regime
    return current


@dataclass(frozen=True, slots=True)
class Professional:
    """The company on whose behalf calls are made: limits are counted per
    professional, not per campaign (docs/rules.md "Scope")."""

    name: str
    caller_ids: frozenset[str] = frozenset()  # E.164, operator-authorised (R-42 manual)
    technical_caller_ids: frozenset[str] = frozenset()  # explicit R-43 authorisations


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    professional: str
    purpose: Purpose = Purpose.PROSPECTING
    dialing: Dialing = Dialing.AUTOMATED
    fail_open: bool = False  # on internal error: closed (block) unless the admin opts out
    sector: Sector = Sector.OTHER  # banned sectors block every prospecting call


@dataclass(frozen=True, slots=True)
class Policy:
    regime: str = "auto"  # "auto" or a Regime value
    consent_max_age_days: int = 365  # R-11, unverified 2026 decree: cautious default
    foreign: str = "block"
    outside_prefix: str = ""  # outside-line prefix stripped from dialled numbers
    cautious_alsace: bool = True  # unknown department -> also Alsace-Moselle days
    bloctel_max_age_days: int = 30  # R-10 staleness
    retention_days: int = 3 * 365  # evidence retention

    def regime_on(self, day: date) -> Regime:
        return regime_for(day) if self.regime == "auto" else Regime(self.regime)


class Disposition(StrEnum):
    """An agent's disposition of a call, however it arrives (ARI keys *81..*84,
    the HTTP API, a dialer's dispo URL): refused and do-not-call are refusals
    (R-31), do-not-call also puts the callee on the opposition list (R-12)."""

    REFUSED = "refused"
    DO_NOT_CALL = "do-not-call"
    CALLBACK = "callback"
    WRONG_NUMBER = "wrong-number"


class BloctelKind(StrEnum):
    """What a Bloctel answer lists: the opposed numbers (block those), or the
    cleaned list (call only those). A kind read from the store that is
    neither is kept as text and blocks (R-10 fails closed)."""

    OPPOSED = "opposed"
    CLEANED = "cleaned"


class Outcome(StrEnum):
    """What became of an attempt, as the listener (or an erasure) records it."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    UNKNOWN = "unknown"  # ended while sentinelle could not see it
    ERASED = "erased"  # minimal record kept after an erasure request


class Verdict(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Consent:
    """Proof of consent (R-11) and, with a slot, of R-22 outside-hours consent."""

    given_at: datetime
    source: str = ""
    revoked_at: datetime | None = None
    slot_from: datetime | None = None
    slot_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Bloctel:
    """The professional's current Bloctel snapshot and where the callee stands in it."""

    snapshot_date: date
    kind: str  # a BloctelKind value; any other text is an unknown list, which blocks
    listed: bool


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows of one (professional, callee), read at decision time."""

    attempts: tuple[datetime, ...] = ()
    refusals: tuple[datetime, ...] = ()
    consents: tuple[Consent, ...] = ()
    contract: bool = False
    opted_out: bool = False
    bloctel: Bloctel | None = None
    department: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    dialled: str
    at: datetime
    campaign: Campaign
    professional: Professional
    caller_id: str | None = None
    masked: bool = False


class Status(StrEnum):
    """Where one rule stands for one call at one instant."""

    BLOCKS = "blocks"
    PASSES = "passes"
    LIFTED = "lifted"  # would block, but an exception of the law lifts it (R-22 slot)
    NOT_APPLICABLE = "not applicable"  # another regime, purpose or callee kind


@dataclass(frozen=True, slots=True)
class RuleState:
    """The state of one rule, in words on the clock it is judged on.

    `decide` and `explain` both read these: a decision's rules are exactly the
    states that block, so what an auditor is shown cannot contradict it."""

    rule: str
    status: Status
    reason: str
    lifts_at: datetime | None = None  # when time alone lifts it; None: a new fact is needed
    is_hours: bool = False  # lifted by the next legal window

    @property
    def blocks(self) -> bool:
        return self.status is Status.BLOCKS


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    regime: str
    at: datetime
    callee: Number | None = None
    local_time: datetime | None = None
    retry_at: datetime | None = None
    counts: bool = False  # an allowed call that is recorded as an R-30 attempt
    notes: tuple[str, ...] = ()  # rules that applied without blocking (R-00, R-22...)
    campaign: str = ""
    professional: str = ""
    dialled: str = ""
    caller_id: str | None = None
    attempt_id: int | None = field(default=None, compare=False)
    # Every rule evaluated, blocking or not: what `explain` renders.
    states: tuple[RuleState, ...] = field(default=(), compare=False)

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW

    def to_dict(self) -> dict[str, Any]:
        callee = None
        if self.callee is not None:
            callee = {
                "e164": self.callee.e164,
                "territory": self.callee.territory.value if self.callee.territory else None,
                "kind": self.callee.kind.value,
                "timezone": (
                    calendar.TIMEZONES[self.callee.territory].key if self.callee.territory else None
                ),
                "local_time": self.local_time.isoformat() if self.local_time else None,
            }
        return {
            "verdict": self.verdict.value,
            "rules": list(self.rules),
            "reasons": list(self.reasons),
            "regime": self.regime,
            "at": self.at.astimezone(PARIS).isoformat(timespec="seconds"),
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "callee": callee,
            "campaign": self.campaign,
            "professional": self.professional,
            "dialled": self.dialled,
            "caller_id": self.caller_id,
            "counts": self.counts,
            "notes": list(self.notes),
            "attempt_id": self.attempt_id,
        }


# What a PBX or carrier puts in the caller ID when the number is withheld:
# the AGI header check (pbx) and R-40 (rules) read the same list, so a call
# masked this way is masked for both. Compared lowercased; an empty caller ID
# counts as masked too.
MASKED_CALLER_IDS = ("anonymous", "unknown", "restricted", "private")
