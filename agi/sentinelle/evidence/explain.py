"""`sentinelle explain NUMBER`: the view an admin shows an auditor.

For one callee: the timeline of everything recorded (attempts and their
outcomes, blocked calls, refusals, consents, contracts, opposition), the
state of each rule for each professional at the chosen instant, and the
decision that would be taken then for each campaign, in words, citing rule
ids. Why a separate module: `history` prints raw rows for admins who know the
schema; an auditor needs sentences, dates on the callee's clock, and the
rule behind each block.

The decision is taken by the same `guard.check` as the AGI, as a dry run
(nothing is recorded or logged), so what `explain` says is what the PBX would
do at that instant with the same caller ID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sentinelle.config import Config
from sentinelle.core import calendar
from sentinelle.core.model import PARIS, Decision
from sentinelle.core.numbers import Kind, Number
from sentinelle.core.rules import (
    REFUSAL_SILENCE,
    RULES,
)
from sentinelle.guard import Request, check
from sentinelle.store import Backend, from_ts


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str  # attempt, blocked, allowed, refusal, consent, revocation, contract, optout
    professional: str
    campaign: str
    text: str
    ref: str = ""  # e.g. "attempt #12"


@dataclass
class Explanation:
    number: Number
    zone: tzinfo
    at: datetime
    events: list[Event]
    facts: dict[str, list[str]]  # professional -> the state of each rule, from its decision
    decisions: list[tuple[Decision, str]]  # (decision, the same in words)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "e164": self.number.e164,
            "territory": self.number.territory.value if self.number.territory else None,
            "kind": self.number.kind.value,
            "timezone": getattr(self.zone, "key", str(self.zone)),
            "at": self.at.isoformat(),
            "callee_local_time": self.at.astimezone(self.zone).isoformat(),
            "timeline": [
                {"at": e.at.astimezone(self.zone).isoformat(), "kind": e.kind,
                 "professional": e.professional, "campaign": e.campaign, "ref": e.ref,
                 "text": e.text}
                for e in self.events
            ],
            "facts": self.facts,
            "decisions": [
                {**d.to_dict(), "explanation": words,
                 "states": [{"rule": st.rule, "status": st.status.value, "reason": st.reason,
                             "lifts_at": st.lifts_at.isoformat() if st.lifts_at else None}
                            for st in d.states]}
                for d, words in self.decisions
            ],
            "notes": self.notes,
        }


def _add_days(instant: datetime, delta: timedelta, zone: tzinfo) -> datetime:
    """Calendar days on the callee's clock, as the rules count them."""
    return instant.astimezone(zone) + delta


def _fmt(instant: datetime | None, zone: tzinfo) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _events(store: Backend, e164: str, zone: tzinfo, config: Config) -> list[Event]:
    tl = store.timeline(e164)
    max_age = timedelta(days=config.policy.consent_max_age_days)
    out: list[Event] = []
    for a in tl["attempts"]:
        at = from_ts(a["at"])
        assert at is not None
        bits = [f"call placed and counted (R-30), campaign {a['campaign'] or '-'}"]
        outcome = a.get("outcome")
        if outcome == "erased":
            bits = ["call placed (minimal record kept after an erasure request, R-30)"]
        elif outcome:
            bits.append(f"outcome {outcome}")
            if a.get("answered_at"):
                bits.append(f"answered {_fmt(from_ts(a['answered_at']), zone)}")
            if a.get("cause") is not None:
                bits.append(f"cause {a['cause']} {a.get('cause_txt') or ''}".rstrip())
        else:
            bits.append("outcome not known")
        if a.get("disposition"):
            bits.append(f"agent disposition {a['disposition']}")
        out.append(Event(at, "attempt", a["professional"], a["campaign"] or "",
                         "; ".join(bits), f"attempt #{a['id']}"))
    for r in tl["refusals"]:
        at = from_ts(r["at"])
        assert at is not None
        until = _add_days(at, REFUSAL_SILENCE, zone)
        how = "minimal record kept after an erasure request" if r["source"] == "erased" \
            else f"via {r['source']}"
        att = f", during attempt #{r['attempt_id']}" if r.get("attempt_id") else ""
        out.append(Event(at, "refusal", r["professional"], r["campaign"] or "",
                         f"refused further calls ({how}{att}): R-31 silence until "
                         f"{_fmt(until, zone)}; earlier consents revoked", f"refusal #{r['id']}"))
    for c in tl["consents"]:
        given = from_ts(c["given_at"])
        assert given is not None
        proof = ", ".join(f"{k} {c[k]}" for k in ("source", "channel", "wording", "evidence_ref")
                          if c.get(k))
        text = (f"consent given ({proof}); R-11 valid until "
                f"{_fmt(_add_days(given, max_age, zone), zone)} unless revoked")
        if c.get("slot_from"):
            text += (f"; R-22 slot {_fmt(from_ts(c['slot_from']), zone)} to "
                     f"{_fmt(from_ts(c['slot_until']), zone)}")
        out.append(Event(given, "consent", c["professional"], "", text, f"consent #{c['id']}"))
        revoked = from_ts(c.get("revoked_at"))
        if revoked is not None:
            out.append(Event(revoked, "revocation", c["professional"], "",
                             "consent revoked (by a refusal or `consent revoke`)",
                             f"consent #{c['id']}"))
    for k in tl["contracts"]:
        at = from_ts(k["added_at"])
        assert at is not None
        product = f" for {k['product']}" if k.get("product") else ""
        out.append(Event(at, "contract", k["professional"], "",
                         f"contract in progress recorded{product}: exception to R-10/R-11"))
    for o in tl["optouts"]:
        at = from_ts(o["added_at"])
        assert at is not None
        out.append(Event(at, "optout", o["professional"], "",
                         f"put on the internal opposition list (R-12, via {o['source']}): "
                         "blocked until an admin removes it"))
    for d in tl["decisions"]:
        if d["verdict"] == "allow" and d.get("attempt_id"):
            continue  # shown as its attempt
        at = from_ts(d["at"])
        assert at is not None
        if d["verdict"] == "block":
            reasons = "; ".join(json.loads(d["reasons"] or "[]"))
            text = f"call blocked, campaign {d['campaign']}: {reasons}"
        else:
            text = f"call allowed without counting, campaign {d['campaign']}"
        out.append(Event(at, "blocked" if d["verdict"] == "block" else "allowed",
                         d["professional"] or "", d["campaign"] or "", text, f"decision #{d['id']}"))
    out.sort(key=lambda e: (e.at, e.kind))
    return out


def facts_of(d: Decision) -> list[str]:
    """Every rule's state for one decision, in words: rendered from the very
    states the decision was made of, so the two can never disagree."""
    return [f"{st.rule} {st.status.value}: {st.reason}" for st in d.states]


def in_words(d: Decision) -> str:
    """One paragraph: the verdict, each blocking rule with its meaning, retry."""
    head = f"campaign {d.campaign} (professional {d.professional}, {d.regime}): "
    if d.allowed:
        text = head + "would be ALLOWED: no rule blocks this call."
        if d.counts:
            text += " It would count as an attempt (R-30)."
    else:
        parts = []
        for r in d.reasons:
            rule = r.split(":", 1)[0]
            meaning = RULES.get(rule, "")
            parts.append(f"{r} [{rule}: {meaning}]" if meaning else r)
        text = head + "would be BLOCKED because " + "; ".join(parts) + "."
        if d.retry_at is not None:
            text += f" Earliest legal retry: {d.retry_at.isoformat(timespec='seconds')}."
        else:
            text += " No retry time: a new fact is needed (consent, list, admin action)."
    for n in d.notes:
        text += f" Note: {n}."
    return text


def explain(config: Config, store: Backend, number: Number, at: datetime,
            campaigns: list[str], caller_id: str | None = None) -> Explanation:
    zone: tzinfo = (calendar.TIMEZONES[number.territory] if number.territory is not None
                    else PARIS)
    events = _events(store, number.e164, zone, config)
    decisions = []
    facts: dict[str, list[str]] = {}
    for name in campaigns:
        d = check(config, store, Request(dialled=number.e164, at=at, campaign=name,
                                         caller_id=caller_id, record=False, source="explain"))
        decisions.append((d, in_words(d)))
        facts.setdefault(d.professional, facts_of(d))
    notes = []
    if number.kind is Kind.FOREIGN:
        notes.append("foreign number: R-02 applies, hours are not judged (no French territory)")
    return Explanation(number, zone, at, events, facts, decisions, notes)


def render(x: Explanation) -> str:
    zone_name = getattr(x.zone, "key", str(x.zone))
    where = x.number.territory.value if x.number.territory else "foreign"
    lines = [
        f"{x.number.e164} ({where}, {x.number.kind.value}); times on the callee's clock "
        f"({zone_name})",
        f"as of {_fmt(x.at, x.zone)} (Paris {_fmt(x.at, PARIS)})",
        "",
        f"Timeline ({len(x.events)} event(s)):",
    ]
    if not x.events:
        lines.append("  nothing recorded for this number")
    for e in x.events:
        who = e.professional + (f"/{e.campaign}" if e.campaign else "")
        ref = f" [{e.ref}]" if e.ref else ""
        lines.append(f"  {_fmt(e.at, x.zone)}  {e.kind:<10} {who}{ref}: {e.text}")
    for d, _ in x.decisions:
        lines += ["", f"Rules for campaign {d.campaign} (professional {d.professional}, "
                      f"{d.regime}) at this instant:"]
        lines += [f"  {f}" for f in facts_of(d)]
    lines += ["", "Decision that would be taken at this instant (dry run, nothing recorded):"]
    for _, words in x.decisions:
        lines.append(f"  {words}")
    for n in x.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
