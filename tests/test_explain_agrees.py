"""`explain` and the decision cannot disagree.

For random histories, policies and instants, the rules `explain` shows as
blocking (in its text and in its JSON) are exactly the rules of the decision
the PBX would get, and exactly those of the pure `decide` on the same facts
held in memory: the store's reading of the history, the evaluation and its
rendering are checked against each other.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinelle.config import Config, parse_config
from sentinelle.core.model import PARIS, Bloctel, Call, Consent, Decision, History, Verdict
from sentinelle.core.numbers import parse
from sentinelle.core.rules import decide
from sentinelle.evidence.explain import explain, render
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, Store, e164_int

NUMBER = "+33612345678"
NPV = "0162000000"
BASE = datetime(2026, 7, 20, 9, 0, tzinfo=PARIS)  # spans both regimes (fr-2026 from 2026-08-11)


def instants(days: int = 120) -> st.SearchStrategy[datetime]:
    return st.integers(0, days * 24 * 4).map(lambda q: BASE + timedelta(minutes=15 * q))


facts = st.fixed_dictionaries({
    "at": instants(),
    "attempts": st.lists(st.integers(-45 * 24, 0), max_size=6),  # hours before `at`
    "refusal": st.one_of(st.none(), st.integers(-80 * 24, 0)),
    "consents": st.lists(st.tuples(st.integers(-400, 0), st.booleans()), max_size=2),
    "opted_out": st.booleans(),
    "contract": st.booleans(),
    "regime": st.sampled_from(["auto", "fr-2023", "fr-2026"]),
    "bloctel": st.one_of(st.none(), st.tuples(st.integers(-40, 2), st.sampled_from(
        ["opposed", "cleaned"]), st.booleans())),
    "campaign": st.sampled_from(["promo", "manual", "press", "service"]),
    "caller_id": st.sampled_from([NPV, "0612345678", "0142000000", "anonymous", None]),
})


def config_for(regime: str) -> Config:
    return parse_config({
        "store": {"path": ":memory:"},
        "policy": {"regime": regime},
        "professionals": {"acme": {"caller_ids": ["0142000000"]}},
        "campaigns": {"promo": {"professional": "acme"},
                      "manual": {"professional": "acme", "dialing": "manual"},
                      "press": {"professional": "acme", "purpose": "press"},
                      "service": {"professional": "acme", "purpose": "service"}},
    })


def build(store: Store, f: dict) -> History:
    """Write the facts through the store's own API, and keep them in memory."""
    at: datetime = f["at"]
    attempts = tuple(sorted(at + timedelta(hours=h) for h in f["attempts"]))
    for when in attempts:
        store.check_and_record("acme", NUMBER, when, lambda _h, w=when: _allowed(w), record=True,
                               source="test", inputs={})
    refusals: tuple[datetime, ...] = ()
    if f["refusal"] is not None:
        refusals = (at + timedelta(hours=f["refusal"]),)
        store.add_refusal("acme", "promo", NUMBER, refusals[0], "test")
    consents = []
    for days, slot in f["consents"]:
        given = at + timedelta(days=days)
        slot_from = at - timedelta(hours=1) if slot else None
        slot_until = at + timedelta(hours=1) if slot else None
        store.add_consent("acme", NUMBER, ConsentProof(source="web", given_at=given,
                                                       slot_from=slot_from, slot_until=slot_until))
        consents.append(Consent(given, "web", None, slot_from, slot_until))
    if f["opted_out"]:
        store.set_optout("acme", NUMBER, True, "test")
    if f["contract"]:
        store.add_contract("acme", NUMBER)
    bloctel = None
    if f["bloctel"] is not None:
        offset, kind, listed = f["bloctel"]
        day = at.astimezone(PARIS).date() + timedelta(days=offset)
        day = min(day, date.today())
        sid = store.begin_snapshot("acme", day, kind, "test")
        store.load_snapshot(sid, [e164_int(NUMBER)] if listed else [e164_int("+33600000001")])
        store.commit_snapshot(sid)
        bloctel = Bloctel(day, kind, listed)
    # Refusals revoke earlier consents in the store (and in the rules): same facts.
    return History(attempts=attempts, refusals=refusals, consents=tuple(consents),
                   contract=f["contract"], opted_out=f["opted_out"], bloctel=bloctel)


def _allowed(at: datetime) -> Decision:
    return Decision(verdict=Verdict.ALLOW, rules=(), reasons=(), regime="fr-2026", at=at,
                    counts=True, campaign="promo", professional="acme", dialled=NUMBER)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts)
def test_explain_blocks_exactly_the_decisions_rules(f):
    config = config_for(f["regime"])
    number = parse(NUMBER)
    with Store(":memory:", create=True) as store:
        history = build(store, f)
        x = explain(config, store, number, f["at"], [f["campaign"]], caller_id=f["caller_id"])
        pbx = check(config, store, Request(dialled=NUMBER, at=f["at"], campaign=f["campaign"],
                                           caller_id=f["caller_id"], source="test"))
    (decision, words), = x.decisions
    campaign = config.campaign(f["campaign"])
    pure = decide(Call(NUMBER, f["at"], campaign, config.professional_of(campaign),
                       caller_id=f["caller_id"]), number, history, config.policy)

    shown = [s["rule"] for s in x.to_dict()["decisions"][0]["states"] if s["status"] == "blocks"]
    text = render(x).split("Rules for campaign")[1].split("Decision that would")[0]
    in_text = [line.split()[0] for line in text.splitlines() if " blocks: " in line]

    assert tuple(dict.fromkeys(shown)) == decision.rules == pbx.rules, (shown, decision, pbx)
    assert tuple(dict.fromkeys(in_text)) == decision.rules
    assert pure.rules == decision.rules and pure.verdict == decision.verdict, (pure, decision)
    assert pure.retry_at == decision.retry_at
    assert ("would be ALLOWED" in words) == (decision.verdict is Verdict.ALLOW)
    for rule in decision.rules:
        assert f"{rule}:" in words


def test_the_property_can_fail():
    """A decision whose states were tampered with is caught by the same checks."""
    config = config_for("fr-2026")
    with Store(":memory:", create=True) as store:
        x = explain(config, store, parse(NUMBER), BASE + timedelta(days=30, hours=2), ["promo"], NPV)
    (d, _), = x.decisions
    assert d.rules == ("R-11",)
    tampered = dataclasses.replace(x, decisions=[(dataclasses.replace(d, states=()), "")])
    shown = [s["rule"] for s in tampered.to_dict()["decisions"][0]["states"] if s["status"] == "blocks"]
    assert tuple(shown) != d.rules
