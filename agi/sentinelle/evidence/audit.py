"""An independent check of the store against the law: did any recorded attempt
break a rule?

`rules.py` decides one call from a history; this module looks at the whole
store afterwards, written separately and on purpose without `rules`'s
decision code, so that a bug in a decision (or in the history it was given,
or in the atomic check-and-record) shows up here as a violation. It reuses
only the facts both must agree on: number parsing (`numbers`), time zones,
windows and holidays (`calendar`) and the configuration (`policy`).

Invariants, for every recorded attempt (only allowed prospecting calls are
recorded, so every row is a call that was placed):

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

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.request import pathname2url
from zoneinfo import ZoneInfo

from sentinelle.config import Config
from sentinelle.core import calendar
from sentinelle.core.model import PARIS, Policy, Purpose, Regime
from sentinelle.core.numbers import Number, NumberError, parse

MAX_ATTEMPTS = 4
WINDOW_DAYS = 30
SILENCE_DAYS = 60


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    professional: str
    e164: str
    attempt_id: int
    at: datetime
    detail: str

    def __str__(self) -> str:
        return (f"{self.rule} attempt #{self.attempt_id} {self.professional} {self.e164} "
                f"at {self.at.isoformat()}: {self.detail}")


@dataclass(slots=True)
class AuditReport:
    attempts: int = 0
    callees: int = 0
    violations: list[Violation] = field(default_factory=list)
    unverifiable: list[tuple[int, str]] = field(default_factory=list)  # (attempt id, why)

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for v in self.violations:
            out[v.rule] += 1
        return dict(out)

    def __str__(self) -> str:
        head = (f"{self.attempts} attempts, {self.callees} (professional, callee) pairs, "
                f"{len(self.violations)} violation(s), {len(self.unverifiable)} unverifiable")
        return "\n".join([head, *(f"  {v}" for v in self.violations[:50])])


@dataclass(frozen=True, slots=True)
class _Consent:
    given_at: datetime
    revoked_at: datetime | None
    slot_from: datetime | None
    slot_until: datetime | None


def _t(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _plus_days(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    """Same wall-clock time `days` calendar days later in `tz` (docs/rules.md: calendar days)."""
    return (instant.astimezone(tz) + timedelta(days=days)).astimezone(UTC)


def _regime(config: Config, at: datetime) -> Regime:
    """The regime in force on the attempt's Europe/Paris date (policy data)."""
    return config.policy.regime_on(at.astimezone(PARIS).date())


def audit_path(path: str | Path, config: Config) -> AuditReport:
    """Audit a store file, opened read-only."""
    uri = f"file:{pathname2url(str(Path(path).resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        return audit(conn, config)
    finally:
        conn.close()


def audit(conn: sqlite3.Connection, config: Config) -> AuditReport:
    """Check every recorded attempt against the invariants (module docstring)."""
    report = AuditReport()
    policy = config.policy
    refusals: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for pro, e164, at, recorded in conn.execute(
            "SELECT professional, e164, at, recorded_at FROM refusals"):
        refusals[(pro, e164)].append((_t(at), recorded or "?"))
    consents: dict[tuple[str, str], list[_Consent]] = defaultdict(list)
    for pro, e164, given, revoked, s_from, s_until in conn.execute(
            "SELECT professional, e164, given_at, revoked_at, slot_from, slot_until FROM consents"):
        consents[(pro, e164)].append(_Consent(_t(given), _t(revoked), _t(s_from), _t(s_until)))
    contracts = {(p, e): _t(a) for p, e, a in conn.execute(
        "SELECT professional, e164, added_at FROM contracts")}
    optouts = {(p, e): _t(a) for p, e, a in conn.execute(
        "SELECT professional, e164, added_at FROM optouts")}
    departments = dict(conn.execute("SELECT e164, department FROM departments"))
    snapshots = {row[0]: row[1:] for row in conn.execute(
        "SELECT professional, id, snapshot_date, kind, imported_at FROM bloctel_snapshots"
        " WHERE state='current'")}
    decisions = {row[0]: row[1:] for row in conn.execute(
        "SELECT d.id, d.verdict, d.e164 FROM decisions d JOIN attempts a ON a.decision_id = d.id")}

    groups: dict[tuple[str, str], list[tuple[int, str, datetime, int | None]]] = defaultdict(list)
    for aid, pro, campaign, e164, at, decision_id in conn.execute(
            "SELECT id, professional, campaign, e164, at, decision_id FROM attempts"):
        groups[(pro, e164)].append((aid, campaign, _t(at), decision_id))
    report.callees = len(groups)

    for (pro, e164), rows in groups.items():
        rows.sort(key=lambda r: (r[2], r[0]))
        report.attempts += len(rows)
        number = _number(e164)
        tz = calendar.TIMEZONES[number.territory] if number and number.territory else PARIS
        key = (pro, e164)

        def bad(rule: str, aid: int, at: datetime, detail: str, pro: str = pro,
                e164: str = e164) -> None:
            report.violations.append(Violation(rule, pro, e164, aid, at, detail))

        for aid, _campaign, at, decision_id in rows:
            verdict, logged_e164 = decisions.get(decision_id, (None, None))
            if verdict != "allow" or logged_e164 != e164:
                bad("EVIDENCE", aid, at, f"decision #{decision_id} is {verdict!r} for {logged_e164!r}")
        _frequency(rows, tz, bad)
        for aid, campaign, at, _ in rows:
            purpose = config.campaigns[campaign].purpose if campaign in config.campaigns \
                else Purpose.PROSPECTING
            last_refusal = None
            for r_at, recorded in refusals.get(key, ()):
                if r_at <= at and (last_refusal is None or r_at > last_refusal):
                    last_refusal = r_at
                if r_at <= at < _plus_days(r_at, SILENCE_DAYS, tz):
                    bad("R-31", aid, at, f"refusal of {r_at.isoformat()} (recorded {recorded})")
            added = optouts.get(key)
            if added is not None and added <= at:
                bad("R-12", aid, at, f"on the opposition list since {added.isoformat()}")
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
            sid, snap_date, kind, imported_at = snap
            if _t(imported_at) > at:
                report.unverifiable.append((aid, "placed before the current snapshot was imported"))
                continue
            age = (at.astimezone(PARIS).date() - date.fromisoformat(snap_date)).days
            if not 0 <= age <= policy.bloctel_max_age_days:
                bad("R-10", aid, at, f"Bloctel snapshot of {snap_date} is {age} days from the call")
                continue
            listed = _listed(conn, int(sid), e164)
            if (kind == "opposed" and listed) or (kind == "cleaned" and not listed) \
                    or kind not in ("opposed", "cleaned"):
                bad("R-10", aid, at, f"{kind} snapshot of {snap_date}, listed={listed}")
    return report


def _number(e164: str) -> Number | None:
    try:
        return parse(e164)
    except NumberError:
        return None


def _valid(c: _Consent, at: datetime, last_refusal: datetime | None, tz: ZoneInfo,
           policy: Policy) -> bool:
    return (c.given_at <= at
            and (c.revoked_at is None or c.revoked_at > at)
            and at <= _plus_days(c.given_at, policy.consent_max_age_days, tz)
            and (last_refusal is None or c.given_at > last_refusal))


def _frequency(rows: Iterable[tuple[int, str, datetime, int | None]], tz: ZoneInfo,
               bad: Callable[[str, int, datetime, str], None]) -> None:
    ordered = list(rows)  # sorted by instant
    flagged: set[int] = set()
    for i, (_, _, start, _) in enumerate(ordered):
        end = _plus_days(start, WINDOW_DAYS, tz)
        inside = [r for r in ordered[i:] if r[2] < end]
        for extra in inside[MAX_ATTEMPTS:]:
            if extra[0] not in flagged:
                flagged.add(extra[0])
                ids = ", ".join(f"#{r[0]}" for r in inside)
                bad("R-30", extra[0], extra[2],
                    f"{len(inside)} attempts in the 30 days from {start.isoformat()} ({ids})")


def _listed(conn: sqlite3.Connection, sid: int, e164: str) -> bool:
    try:
        number = int(e164.lstrip("+"))
    except ValueError:
        return False
    table = f"bloctel_{int(sid)}"
    return conn.execute(f"SELECT 1 FROM {table} WHERE e164=?",  # noqa: S608 - int id
                        (number,)).fetchone() is not None
