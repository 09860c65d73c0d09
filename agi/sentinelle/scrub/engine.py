"""The verdict of one lead: the AGI's own decision, read-only and unlogged.

A dialer that loads numbers sentinelle will block wastes its attempts and
its agents' time; a scrub tells it beforehand. The answer must be the one
the AGI would give at that instant, so this is `guard`'s path (campaign,
`numbers.parse`, the store's history, `rules.decide`) without the two things
a list of a million leads cannot afford: a decision-log row and a JSON log
line per lead. `tests/test_scrub_cli.py` checks it against `guard.check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sentinelle.config import Config
from sentinelle.core.model import Call, Decision, History
from sentinelle.core.numbers import Kind, Number, NumberError, Territory, parse
from sentinelle.core.rules import decide
from sentinelle.guard import Request, resolve_call
from sentinelle.store import Backend

# What it takes, besides time, to lift a rule: the `needs` column. A rule
# missing here still needs something nobody named: "review".
NEEDS: dict[str, str] = {
    "R-01": "valid-number",
    "R-02": "french-number",
    "R-10": "bloctel",
    "R-11": "consent",
    "R-12": "optout-removal",
    "R-13": "other-sector",
    "R-40": "caller-id",
    "R-41": "caller-id",
    "R-42": "caller-id",
    "R-43": "caller-id",
    "SYS-CONFIG": "config",
    "SYS-STORE": "store",
    "SYS-TIMEOUT": "store",
    "SYS-ERROR": "sentinelle",
}
REVIEW = "review"


@dataclass(frozen=True, slots=True)
class LeadVerdict:
    """What a dialer needs of one decision; small, so it crosses processes cheaply."""

    e164: str  # "" when the number cannot be read
    allowed: bool
    rules: tuple[str, ...]
    retry_at: datetime | None  # earliest instant time alone makes it legal
    needs: tuple[str, ...]  # facts that must change first (retry_at is then None)
    reasons: tuple[str, ...]

    def callable_by(self, deadline: datetime | None) -> bool:
        """Allowed now, or (with a deadline) legal again by then."""
        if self.allowed:
            return True
        return deadline is not None and self.retry_at is not None and self.retry_at <= deadline

    def to_dict(self) -> dict[str, Any]:
        return {"e164": self.e164 or None, "verdict": "allow" if self.allowed else "block",
                "rules": list(self.rules),
                "retry_at": self.retry_at.isoformat() if self.retry_at else None,
                "needs": list(self.needs), "reasons": list(self.reasons)}


def needs_of(d: Decision) -> tuple[str, ...]:
    """The blocking rules time cannot lift, as the facts they wait for."""
    if d.allowed:
        return ()
    states = {s.rule: s for s in d.states if s.blocks}
    out: list[str] = []
    for rule in d.rules:
        state = states.get(rule)
        if state is not None and (state.lifts_at is not None or state.is_hours):
            continue
        need = NEEDS.get(rule, REVIEW)
        if need not in out:
            out.append(need)
    if not out and d.retry_at is None:
        out.append(REVIEW)  # only time blocks it, but no legal instant was found
    return tuple(out)


def lead_verdict(d: Decision) -> LeadVerdict:
    return LeadVerdict(d.callee.e164 if d.callee else "", d.allowed, d.rules, d.retry_at,
                       needs_of(d), d.reasons)


# Verdicts kept for reuse in one scrub; cleared when full (a bound, not an LRU).
MEMO_MAX = 4096
_MemoKey = tuple[Kind, Territory, frozenset[Territory], History]


class Scrubber:
    """Decides for many numbers of one campaign at one instant, reading the
    store and writing nothing. One per thread or process (a Store is).

    `decision` is the plain path, one lead at a time, as `guard.check`
    decides. `verdicts` gives the same verdicts for a chunk of leads faster:
    it reads the chunk's histories in one batch (`Store.histories`, one
    snapshot), and decides once for the leads that share every input of
    `decide`. For a French callee (not short, not foreign) those inputs are
    the call and policy (one per scrub), the callee's kind and territories
    (nothing else of the number reaches a rule or a reason) and the history;
    most leads of a list have no history at all, so they share one decision
    per territory. `tests/test_scrub_batch.py` compares the two paths."""

    def __init__(self, config: Config, store: Backend, campaign: str, at: datetime,
                 caller_id: str | None = None, masked: bool = False) -> None:
        config.campaign(campaign)  # ConfigError now, not once per lead
        self.config = config
        self.store = store
        self.at = at
        self._call: Call = resolve_call(config, Request(dialled="", at=at, campaign=campaign,
                                                        caller_id=caller_id, masked=masked))
        self._memo: dict[_MemoKey, LeadVerdict] = {}
        self.memo_hits = 0

    def _call_for(self, raw: str, at: datetime | None = None) -> Call:
        return Call(raw, self.at if at is None else at, self._call.campaign,
                    self._call.professional, self._call.caller_id, self._call.masked)

    def _parse(self, raw: str) -> Number | NumberError:
        try:
            return parse(raw, self.config.policy.outside_prefix)
        except NumberError as exc:
            return exc

    def decision(self, raw: str) -> Decision:
        """As `guard.check` decides with record=False. A store fault raises
        StoreError: a scrub that cannot read the history must stop, never
        print a verdict made without it."""
        call = self._call_for(raw)
        callee = self._parse(raw)
        if isinstance(callee, NumberError) or callee.kind is Kind.SHORT:
            return decide(call, callee, History(), self.config.policy)
        history = self.store.history(call.professional.name, callee.e164, self.at)
        return decide(call, callee, history, self.config.policy)

    def verdicts(self, numbers: list[str]) -> list[LeadVerdict]:
        """`lead_verdict(self.decision(raw))` for each number, in order."""
        callees = [self._parse(raw) for raw in numbers]
        keys = [c.e164 for c in callees if isinstance(c, Number) and c.kind is not Kind.SHORT]
        histories = (self.store.histories(self._call.professional.name, keys, self.at)
                     if keys else {})
        policy = self.config.policy
        # The same instant in UTC, the zone `decide` judges in: it then need
        # not copy the call for every lead. A verdict does not carry `at`.
        utc = self.at.astimezone(UTC)
        out: list[LeadVerdict] = []
        for raw, callee in zip(numbers, callees, strict=True):
            if isinstance(callee, NumberError) or callee.kind is Kind.SHORT:
                out.append(lead_verdict(decide(self._call_for(raw, utc), callee, History(),
                                               policy)))
                continue
            history = histories[callee.e164]
            if callee.territory is None:  # foreign: its reasons name the number
                out.append(lead_verdict(decide(self._call_for(raw, utc), callee, history, policy)))
                continue
            key = (callee.kind, callee.territory, callee.territories, history)
            shared = self._memo.get(key)
            if shared is None:
                shared = lead_verdict(decide(self._call_for(raw, utc), callee, history, policy))
                if len(self._memo) >= MEMO_MAX:
                    self._memo.clear()
                self._memo[key] = shared
            else:
                self.memo_hits += 1
            out.append(LeadVerdict(callee.e164, shared.allowed, shared.rules, shared.retry_at,
                                   shared.needs, shared.reasons))
        return out
