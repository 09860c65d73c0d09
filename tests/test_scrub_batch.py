"""The scrub's fast path cannot tell a lead anything the plain path would not.

`Store.histories` reads a batch of callees at once; on random stores it
returns, for every callee, exactly what `Store.history` reads for that one
callee (same rows, same order). `Scrubber.verdicts` (batch read, shared
decisions) gives each lead the verdict of `Scrubber.decision` (one lead, one
history read, one `decide`), and a whole scrub writes the same text either
way: refusals old and new, opt-outs, contracts, attempts at the R-30 limit,
consents with slots, expired or revoked, Bloctel lists, departments, other
professionals' facts, every campaign purpose and caller ID.
"""

from __future__ import annotations

import io
import random
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinelle.config import Config, parse_config
from sentinelle.core.model import PARIS
from sentinelle.scrub import Options, Scrubber, lead_verdict, open_leads, scrub, serial
from sentinelle.store import Store, e164_int, ts
from sentinelle.store.batch import BATCH_KEYS

# Callees the facts are about: mobiles, a Paris fixed line, overseas (+262,
# +590 lines of one, two or three islands: same kind and first island, other
# calendars), a 09 line, and one foreign number.
POOL = ["+33612345601", "+33612345602", "+33612345603", "+33612345604", "+33142000001",
        "+262692123456", "+590690123456", "+590590871234", "+590590011234", "+590590331234",
        "+33948000001", "+4915112345678"]
# What a lead list may hold besides: spellings of the pool, strangers,
# garbage, short numbers.
OTHER_LEADS = ["0612345601", "+33 6 12 34 56 02", "0033612345603", "0692123456", "0590871234",
               "0612349999", "0590011299", "0590331299", "0700000000", "112", "", "abc",
               "+4915112345678", "06 12 34 56 04", "0948000001", "33612345601"]
SCENES = [datetime(2026, 11, 24, 11, 0, tzinfo=PARIS),   # Tuesday, legal hours
          datetime(2026, 11, 28, 15, 0, tzinfo=PARIS),   # Saturday
          datetime(2026, 11, 30, 19, 59, tzinfo=PARIS),  # a minute before the close
          datetime(2026, 10, 25, 2, 30, tzinfo=PARIS),   # the October fold, Sunday
          datetime(2026, 8, 10, 12, 30, tzinfo=PARIS)]   # the eve of fr-2026
PROS = ["acme", "other"]

callee = st.integers(0, len(POOL) - 1)
pro = st.sampled_from(PROS)
store_facts = st.fixed_dictionaries({
    "at": st.sampled_from(SCENES),
    # coarse offsets, so that several facts share an instant (ties)
    "attempts": st.lists(st.tuples(pro, callee, st.integers(-45 * 4, 2 * 4)), max_size=30),
    "refusals": st.lists(st.tuples(pro, callee, st.integers(-200, 3)), max_size=8),
    "consents": st.lists(st.tuples(
        pro, callee, st.integers(-400, 2), st.sampled_from(["web", "tel"]),
        st.one_of(st.none(), st.integers(-10, 5)),  # revoked, days from `at`
        st.one_of(st.none(), st.tuples(st.integers(-48, 48), st.integers(1, 72)))),  # slot, hours
        max_size=12),
    "optouts": st.lists(st.tuples(pro, callee), max_size=3),
    "contracts": st.lists(st.tuples(pro, callee), max_size=3),
    "departments": st.dictionaries(callee, st.sampled_from(["67", "75", "971", "978", "2A"]),
                                   max_size=4),
    "bloctel": st.one_of(st.none(), st.tuples(st.integers(-40, 1), st.sampled_from(
        ["opposed", "cleaned"]), st.sets(callee, max_size=5))),
})


def fill(store: Store, f: dict) -> datetime:
    """Write the facts with plain inserts (any ties and orders the API would
    refuse or smooth out are fair game for a read)."""
    at: datetime = f["at"]

    def write(conn) -> None:
        def many(sql: str, rows: list[tuple]) -> None:
            for row in rows:  # one at a time: PostgreSQL's transaction has no executemany
                conn.execute(sql, row)

        many("INSERT INTO attempts (professional, campaign, e164, at) VALUES (?, 'promo', ?, ?)",
             [(p, POOL[i], ts(at + timedelta(hours=6 * q))) for p, i, q in f["attempts"]])
        many("INSERT INTO refusals (professional, campaign, e164, at, source) VALUES"
             " (?, 'promo', ?, ?, 't')",
             [(p, POOL[i], ts(at + timedelta(days=d))) for p, i, d in f["refusals"]])
        many("INSERT INTO consents (professional, e164, given_at, source, revoked_at, slot_from,"
             " slot_until) VALUES (?,?,?,?,?,?,?)",
             [(p, POOL[i], ts(at + timedelta(days=d)), source,
               None if revoked is None else ts(at + timedelta(days=revoked)),
               None if slot is None else ts(at + timedelta(hours=slot[0])),
               None if slot is None else ts(at + timedelta(hours=slot[0] + slot[1])))
              for p, i, d, source, revoked, slot in f["consents"]])
        many("INSERT INTO optouts (professional, e164, added_at, source)"
             " VALUES (?, ?, ?, 't') ON CONFLICT DO NOTHING",
             [(p, POOL[i], ts(at)) for p, i in f["optouts"]])
        many("INSERT INTO contracts (professional, e164, product, added_at)"
             " VALUES (?, ?, '', ?) ON CONFLICT DO NOTHING",
             [(p, POOL[i], ts(at)) for p, i in f["contracts"]])
        many("INSERT INTO departments (e164, department) VALUES (?, ?)",
             [(POOL[i], dep) for i, dep in f["departments"].items()])

    store.run(write, immediate=True)
    if f["bloctel"] is not None:
        offset, kind, listed = f["bloctel"]
        day = min(at.astimezone(PARIS).date() + timedelta(days=offset), date.today())
        sid = store.begin_snapshot("acme", day, kind, "t")
        store.load_snapshot(sid, [e164_int(POOL[i]) for i in sorted(listed)])
        store.commit_snapshot(sid)
    return at


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(store_facts, st.lists(st.sampled_from([*POOL, "+33699999999", "+3361234"]), max_size=14),
       pro)
def test_batch_histories_are_the_per_callee_histories(f, keys, professional):
    with Store(":memory:", create=True) as store:
        at = fill(store, f)
        batch = store.histories(professional, keys, at)
        assert list(batch) == list(dict.fromkeys(keys))  # each callee once, in list order
        for e164 in keys:
            assert batch[e164] == store.history(professional, e164, at), e164


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_histories_on_every_backend(store, seed):
    """The same comparison on each backend the `store` fixture runs (the
    batch SQL is written once for both), with facts drawn from a seed."""
    f = _facts(random.Random(seed))
    at = fill(store, f)
    keys = [*POOL, "+33699999999"]
    for professional in PROS:
        batch = store.histories(professional, keys, at)
        for e164 in keys:
            assert batch[e164] == store.history(professional, e164, at), (professional, e164)


def _facts(rng: random.Random) -> dict:
    def who() -> tuple[str, int]:
        return rng.choice(PROS), rng.randrange(len(POOL))

    return {
        "at": rng.choice(SCENES),
        "attempts": [(*who(), rng.randint(-45 * 4, 2 * 4)) for _ in range(40)],
        "refusals": [(*who(), rng.randint(-200, 3)) for _ in range(10)],
        "consents": [(*who(), rng.randint(-400, 2), rng.choice(["web", "tel"]),
                      rng.choice([None, rng.randint(-10, 5)]),
                      rng.choice([None, (rng.randint(-48, 48), rng.randint(1, 72))]))
                     for _ in range(16)],
        "optouts": [who() for _ in range(3)],
        "contracts": [who() for _ in range(3)],
        "departments": {rng.randrange(len(POOL)): rng.choice(["67", "75", "971", "978"])
                        for _ in range(3)},
        "bloctel": (rng.randint(-40, 1), rng.choice(["opposed", "cleaned"]),
                    {rng.randrange(len(POOL)) for _ in range(4)}),
    }


def test_batches_larger_than_one_in_list_are_read_whole():
    """Keys beyond BATCH_KEYS go in further statements, none is dropped."""
    at = SCENES[0]
    keys = [f"+3361{i:07d}" for i in range(2 * BATCH_KEYS + 7)]
    with Store(":memory:", create=True) as store:
        store.run(lambda conn: conn.executemany(
            "INSERT INTO consents (professional, e164, given_at, source) VALUES ('acme',?,?,'w')",
            [(k, ts(at - timedelta(days=1))) for k in keys[::3]]), immediate=True)
        batch = store.histories("acme", keys, at)
    assert [k for k in keys if batch[k].consents] == keys[::3]


def config_for(f: dict) -> Config:
    return parse_config({
        "store": {"path": ":memory:"},
        "policy": {"regime": f["regime"], "foreign": f["foreign"],
                   "outside_prefix": f["outside_prefix"]},
        "professionals": {"acme": {"caller_ids": ["0142000000"]}},
        "campaigns": {"promo": {"professional": "acme"},
                      "manual": {"professional": "acme", "dialing": "manual"},
                      "press": {"professional": "acme", "purpose": "press"},
                      "service": {"professional": "acme", "purpose": "service"},
                      "reno": {"professional": "acme", "sector": "energy-renovation"}},
    })


scrub_setup = st.fixed_dictionaries({
    "regime": st.sampled_from(["auto", "fr-2023", "fr-2026"]),
    "foreign": st.sampled_from(["block", "allow"]),
    "outside_prefix": st.sampled_from(["", "0"]),
    "campaign": st.sampled_from(["promo", "manual", "press", "service", "reno"]),
    "caller_id": st.sampled_from(["0162000000", "0612345678", "0142000000", "0937000000",
                                  "anonymous", None]),
})
leads = st.lists(st.sampled_from([*POOL, *OTHER_LEADS]), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(store_facts, scrub_setup, leads)
def test_fast_verdicts_are_the_per_lead_verdicts(f, setup, numbers):
    config = config_for(setup)
    with Store(":memory:", create=True) as store:
        at = fill(store, f)
        fast = Scrubber(config, store, setup["campaign"], at, setup["caller_id"])
        plain = Scrubber(config, store, setup["campaign"], at, setup["caller_id"])
        got = fast.verdicts(numbers)
        assert got == [lead_verdict(plain.decision(raw)) for raw in numbers]
        again = fast.verdicts(numbers)  # now from the shared decisions
    assert again == got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(store_facts, scrub_setup, leads, st.booleans())
def test_a_scrub_writes_the_same_list_either_way(f, setup, numbers, sort):
    """The whole output (CSV columns, retry_at, needs, reasons, the sort),
    through the fast path and through one `decision` per lead."""
    config = config_for(setup)
    text = "lead_id,phone_number\n" + "".join(f"{i},{n}\n" for i, n in enumerate(numbers))
    outputs = []
    with Store(":memory:", create=True) as store:
        at = fill(store, f)
        options = Options(at=at, sort=sort)
        for fast in (True, False):
            sc = Scrubber(config, store, setup["campaign"], at, setup["caller_id"])
            decider = sc.verdicts if fast else (
                lambda ns, sc=sc: [lead_verdict(sc.decision(raw)) for raw in ns])
            out = io.StringIO()
            summary = scrub(open_leads(io.StringIO(text), options), serial(decider), options,
                            out.write)
            outputs.append((out.getvalue(), summary.to_dict()))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]["leads"] == len(numbers)


def test_leads_without_history_share_one_decision():
    """The point of the fast path: strangers of one territory are decided
    once, and each still gets its own number."""
    config = config_for({"regime": "fr-2026", "foreign": "block", "outside_prefix": ""})
    with Store(":memory:", create=True) as store:
        sc = Scrubber(config, store, "promo", SCENES[0])
        numbers = [f"06{i:08d}" for i in range(10_000_000, 10_000_050)]
        got = sc.verdicts(numbers)
    assert sc.memo_hits == len(numbers) - 1
    assert [v.e164 for v in got] == [f"+336{i:08d}" for i in range(10_000_000, 10_000_050)]
    assert {v.rules for v in got} == {("R-11",)}
