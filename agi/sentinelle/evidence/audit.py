"""An independent check of the store against the law: did any recorded attempt
break a rule?

`rules.py` decides one call from a history; this module looks at the whole
store afterwards, written separately and on purpose without `rules`'s
decision code, so that a bug in a decision (or in the history it was given,
or in the atomic check-and-record) shows up here as a violation. It reuses
only the facts both must agree on: number parsing (`numbers`), time zones,
windows and holidays (`calendar`) and the configuration (`policy`). It reads
the store through `store.audit`: the rows as recorded, not the history a
decision is given. `sentinelle audit` runs it (README.md, "Evidence").

Invariants, for every recorded attempt (only allowed prospecting calls are
recorded, so every row is a call that was placed), or every attempt of a
period [start, end) (the 30 days before it are read too, to complete the
R-30 windows that end in it):

- R-30: no (professional, callee) has more than 4 attempts in any rolling
  window of 30 calendar days (same wall-clock time 30 days later, in the
  callee's time zone). A window holding 5 attempts can always be slid to
  start on its first attempt, so checking the windows that start on an
  attempt is exhaustive.
- R-31: no attempt within 60 calendar days after a refusal of that callee to
  that professional (refusal instant included).
- R-20/R-21: no attempt outside the callee's legal days and hours, unless a
  consent valid at that instant has a slot (R-22) containing it.
- R-10/R-11 under the regime of the attempt's date (Europe/Paris), except for
  `press` campaigns and contracts recorded before the attempt: fr-2026 needs a
  consent given before the attempt, not revoked at it, not older than
  `consent_max_age_days`, and given after the last refusal; fr-2023 needs the
  current Bloctel snapshot to be dated on or before the attempt's date and at
  most `bloctel_max_age_days` old, and the callee not opposed (or listed, for a
  `cleaned` snapshot). Attempts made before the current snapshot was imported
  were checked against a snapshot the store no longer keeps: they are counted
  as unverifiable, not as violations.
- R-12: no attempt after the callee joined the professional's opposition list.
- R-13: no prospecting attempt of a campaign whose sector is banned, unless a
  contract with the callee was recorded before it.
- R-02: no prospecting attempt to a foreign number when `policy.foreign` is block.
- Evidence: every attempt points to a logged ALLOW decision for the same callee.

Facts are read with the times they carry, so the checker assumes they were
recorded in time order, as in production. A refusal typed in late with
`--at` in the past shows up against the attempts placed before it was typed
in; its `recorded_at` is given in the violation so an auditor can tell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sentinelle.config import Config
from sentinelle.core import calendar
from sentinelle.core.model import PARIS, BloctelKind, Policy, Purpose, Regime
from sentinelle.core.numbers import Number, NumberError, parse
from sentinelle.store import Backend, Store
from sentinelle.store.backend import AuditConsent, AuditSource

MAX_ATTEMPTS = 4
WINDOW_DAYS = 30
SILENCE_DAYS = 60
# Attempts read before a `start`: a window ending in the period may begin up
# to 30 calendar days earlier (one more for a DST change, one for slack).
LOOKBACK = timedelta(days=WINDOW_DAYS + 2)


def paris(instant: datetime | None) -> str:
    """Europe/Paris with its offset and milliseconds, as `sentinelle export` writes times."""
    return "?" if instant is None else instant.astimezone(PARIS).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    professional: str
    e164: str
    attempt_id: int
    at: datetime
    detail: str
    # every attempt involved, (id, instant): the breaching one, or the whole R-30 window
    attempts: tuple[tuple[int, datetime], ...] = ()

    def __str__(self) -> str:
        text = (f"{self.rule} attempt #{self.attempt_id} {self.professional} {self.e164} "
                f"at {paris(self.at)}: {self.detail}")
        if len(self.attempts) > 1:
            text += "; attempts " + ", ".join(f"#{i} {paris(at)}" for i, at in self.attempts)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "professional": self.professional, "e164": self.e164,
                "attempt_id": self.attempt_id, "at": paris(self.at), "detail": self.detail,
                "attempts": [{"id": i, "at": paris(at)} for i, at in self.attempts]}


@dataclass(slots=True)
class AuditReport:
    attempts: int = 0
    callees: int = 0
    violations: list[Violation] = field(default_factory=list)
    unverifiable: list[tuple[int, str]] = field(default_factory=list)  # (attempt id, why)
    start: datetime | None = None  # attempts audited: [start, end), open when None
    end: datetime | None = None
    integrity: list[str] | None = None  # problems of the store file; None: not checked

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for v in self.violations:
            out[v.rule] += 1
        return dict(out)

    @property
    def clean(self) -> bool:
        return not self.violations and not self.integrity

    def summary(self) -> str:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(self.by_rule().items()))
        integrity = ("not checked" if self.integrity is None
                     else "ok" if not self.integrity else f"{len(self.integrity)} problem(s)")
        return (f"{self.attempts} attempts, {self.callees} (professional, callee) pairs, "
                f"{len(self.violations)} violation(s){f' ({rules})' if rules else ''}, "
                f"{len(self.unverifiable)} unverifiable; integrity: {integrity}")

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(f"  {v}" for v in self.violations[:50])])

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": None if self.start is None else paris(self.start),
            "to": None if self.end is None else paris(self.end),
            "clean": self.clean,
            "attempts": self.attempts,
            "callees": self.callees,
            "by_rule": self.by_rule(),
            "violations": [v.to_dict() for v in self.violations],
            "unverifiable": [{"attempt_id": i, "why": why} for i, why in self.unverifiable],
            "integrity": self.integrity,
        }


def _plus_days(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    """Same wall-clock time `days` calendar days later in `tz` (docs/rules.md: calendar days)."""
    return (instant.astimezone(tz) + timedelta(days=days)).astimezone(UTC)


def _regime(config: Config, at: datetime) -> Regime:
    """The regime in force on the attempt's Europe/Paris date (policy data)."""
    return config.policy.regime_on(at.astimezone(PARIS).date())


def audit_path(path: str | Path, config: Config, start: datetime | None = None,
               end: datetime | None = None) -> AuditReport:
    """Audit a store file (it must exist: an audit never creates one)."""
    with Store(path, create=False, busy_timeout_ms=10_000) as store:
        return audit(store, config, start, end)


def audit(store: Backend, config: Config, start: datetime | None = None,
          end: datetime | None = None, *, integrity: bool = False) -> AuditReport:
    """Check every attempt recorded in [start, end) against the invariants
    (module docstring); with `integrity`, the store's own check of its file too."""
    report = AuditReport(start=start, end=end)
    if integrity:
        report.integrity = store.check_integrity()
    with store.audit_view() as view:
        _audit(view, config, report)
    return report


def _audit(view: AuditSource, config: Config, report: AuditReport) -> None:
    policy = config.policy
    start, end = report.start, report.end

    def in_period(at: datetime) -> bool:
        return (start is None or at >= start) and (end is None or at < end)

    refusals: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for r in view.refusals():
        refusals[(r.professional, r.e164)].append((r.at, r.recorded_at))
    consents: dict[tuple[str, str], list[AuditConsent]] = defaultdict(list)
    for c in view.consents():
        consents[(c.professional, c.e164)].append(c)
    contracts = {(f.professional, f.e164): f.added_at for f in view.contracts()}
    optouts = {(f.professional, f.e164): f.added_at for f in view.optouts()}
    departments = dict(view.departments())
    snapshots = {s.professional: s for s in view.current_snapshots()}
    since = None if start is None else start - LOOKBACK
    decisions: dict[int | None, tuple[str | None, str | None]] = {
        d.id: (d.verdict, d.e164) for d in view.attempt_decisions(since, end)}

    groups: dict[tuple[str, str], list[tuple[int, str, datetime, int | None]]] = defaultdict(list)
    for a in view.attempts(since, end):
        groups[(a.professional, a.e164)].append((a.id, a.campaign, a.at, a.decision_id))

    for (pro, e164), rows in groups.items():
        rows.sort(key=lambda r: (r[2], r[0]))
        audited = [r for r in rows if in_period(r[2])]
        if not audited:
            continue  # read only to complete the R-30 windows of the period
        report.callees += 1
        report.attempts += len(audited)
        number = _number(e164)
        tz = calendar.TIMEZONES[number.territory] if number and number.territory else PARIS
        key = (pro, e164)

        def bad(rule: str, aid: int, at: datetime, detail: str,
                involved: tuple[tuple[int, datetime], ...] = (), pro: str = pro,
                e164: str = e164) -> None:
            if in_period(at):
                report.violations.append(
                    Violation(rule, pro, e164, aid, at, detail, involved or ((aid, at),)))

        for aid, _campaign, at, decision_id in audited:
            verdict, logged_e164 = decisions.get(decision_id, (None, None))
            if verdict != "allow" or logged_e164 != e164:
                bad("EVIDENCE", aid, at, f"decision #{decision_id} is {verdict!r} for {logged_e164!r}")
        _frequency(rows, tz, bad)
        for aid, campaign, at, _ in audited:
            purpose = config.campaigns[campaign].purpose if campaign in config.campaigns \
                else Purpose.PROSPECTING
            last_refusal = None
            for r_at, recorded in refusals.get(key, ()):
                if r_at <= at and (last_refusal is None or r_at > last_refusal):
                    last_refusal = r_at
                if r_at <= at < _plus_days(r_at, SILENCE_DAYS, tz):
                    bad("R-31", aid, at, f"refusal of {paris(r_at)} (recorded {paris(recorded)})")
            added = optouts.get(key)
            if added is not None and added <= at:
                bad("R-12", aid, at, f"on the opposition list since {paris(added)}")
            sector = config.campaigns[campaign].sector if campaign in config.campaigns else None
            under_contract = contracts.get(key) is not None and contracts[key] <= at
            if sector is not None and sector.is_banned and purpose.is_consumer_prospecting \
                    and not under_contract:
                bad("R-13", aid, at, f"campaign sector {sector.value} is banned (no contract)")
            if number is None:
                bad("R-01", aid, at, "the recorded callee is not a valid number")
                continue
            if number.territory is None:
                if purpose.is_consumer_prospecting and policy.foreign == "block":
                    bad("R-02", aid, at, "foreign number with policy foreign=block")
                continue
            valid = [c for c in consents.get(key, ()) if _valid(c, at, last_refusal, tz, policy)]
            ok, _rule, reason = calendar.allowed_at(number.territories, at, departments.get(e164),
                                                    policy.cautious_alsace)
            if not ok and not any(c.slot_from is not None and c.slot_until is not None
                                  and c.slot_from <= at < c.slot_until for c in valid):
                bad("R-20/R-21", aid, at, reason or "outside the legal days and hours")
            if purpose is Purpose.PRESS:
                continue
            contract = contracts.get(key)
            if contract is not None and contract <= at:
                continue
            if _regime(config, at) is Regime.FR_2026:
                if not valid:
                    bad("R-11", aid, at, "no consent valid at this instant")
                continue
            snap = snapshots.get(pro)
            if snap is None:
                bad("R-10", aid, at, "no Bloctel snapshot for this professional")
                continue
            if snap.imported_at > at:
                report.unverifiable.append((aid, "placed before the current snapshot was imported"))
                continue
            age = (at.astimezone(PARIS).date() - snap.snapshot_date).days
            if not 0 <= age <= policy.bloctel_max_age_days:
                bad("R-10", aid, at, f"Bloctel snapshot of {snap.snapshot_date} is {age} days "
                                     "from the call")
                continue
            listed = view.listed(snap.id, e164)
            if (snap.kind == BloctelKind.OPPOSED and listed) \
                    or (snap.kind == BloctelKind.CLEANED and not listed) \
                    or snap.kind not in set(BloctelKind):
                bad("R-10", aid, at, f"{snap.kind} snapshot of {snap.snapshot_date}, listed={listed}")


def _number(e164: str) -> Number | None:
    try:
        return parse(e164)
    except NumberError:
        return None


def _valid(c: AuditConsent, at: datetime, last_refusal: datetime | None, tz: ZoneInfo,
           policy: Policy) -> bool:
    return (c.given_at <= at
            and (c.revoked_at is None or c.revoked_at > at)
            and at <= _plus_days(c.given_at, policy.consent_max_age_days, tz)
            and (last_refusal is None or c.given_at > last_refusal))


def _frequency(rows: Iterable[tuple[int, str, datetime, int | None]], tz: ZoneInfo,
               bad: Callable[..., None]) -> None:
    ordered = list(rows)  # sorted by instant
    flagged: set[int] = set()
    for i, (_, _, start, _) in enumerate(ordered):
        end = _plus_days(start, WINDOW_DAYS, tz)
        inside = [r for r in ordered[i:] if r[2] < end]
        for extra in inside[MAX_ATTEMPTS:]:
            if extra[0] not in flagged:
                flagged.add(extra[0])
                bad("R-30", extra[0], extra[2],
                    f"{len(inside)} attempts in the 30 days from {paris(start)}",
                    tuple((r[0], r[2]) for r in inside))


def render(report: AuditReport) -> str:
    """The `sentinelle audit` text: every breach, then the summary."""
    period = "every recorded attempt"
    if report.start is not None:
        period = f"the attempts recorded from {paris(report.start)}"
    if report.end is not None:
        period += (f" to {paris(report.end)} (excluded)" if report.start
                   else f" before {paris(report.end)}")
    lines = [f"audit of {period}; times Europe/Paris"]
    for v in report.violations:
        lines.append(f"{v.rule} {v.professional} {v.e164} attempt #{v.attempt_id} at "
                     f"{paris(v.at)}: {v.detail}")
        if len(v.attempts) > 1:
            lines += [f"    #{i} {paris(at)}" for i, at in v.attempts]
    for aid, why in report.unverifiable:
        lines.append(f"unverifiable attempt #{aid}: {why}")
    for problem in report.integrity or ():
        lines.append(f"integrity: {problem}")
    lines.append(("clean: " if report.clean else "BREACHES FOUND: ") + report.summary())
    return "\n".join(lines)
