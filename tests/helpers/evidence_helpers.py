"""A realistic store for the evidence tests (export, explain, report).

Every decision goes through `guard.check` with `record=True`, exactly like
the AGI, so the rows are the ones the service writes: allowed calls with
their attempts, blocks by R-10/R-11/R-20/R-21/R-30/R-31, outcomes and
refusals as the ARI listener records them. Seeded: same data every run.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from sentinelle.cli.main import main
from sentinelle.config import Config
from sentinelle.core.numbers import parse
from sentinelle.guard import Request, check
from sentinelle.store import ConsentProof, Store

PARIS = ZoneInfo("Europe/Paris")
NPV = "0162000000"


def invoker(config_path):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, ["--config", str(config_path), *args], input=input,
                             catch_exceptions=False)

    return invoke


def call(config: Config, store: Store, number: str, at: datetime, campaign: str = "promo",
         caller_id: str = NPV):
    return check(config, store, Request(dialled=number, at=at, campaign=campaign,
                                        caller_id=caller_id, record=True, source="fastagi"))


def populate(config: Config, store: Store, start: date = date(2026, 7, 27), days: int = 26,
             seed: int = 7) -> dict[str, int]:
    """About 2,000 decisions around the fr-2023 -> fr-2026 switch (2026-08-11)."""
    rng = random.Random(seed)
    fr = [f"06{rng.randrange(10**8):08d}" for _ in range(60)]
    overseas = [f"0692{rng.randrange(10**6):06d}" for _ in range(8)] + \
               [f"0690{rng.randrange(10**6):06d}" for _ in range(6)]
    numbers = fr + overseas
    # Bloctel snapshot (fr-2023 part): two numbers are opposed.
    sid = store.begin_snapshot("acme", date(2026, 7, 10), "opposed", "test")
    store.load_snapshot(sid, [int(parse(n).e164.lstrip("+")) for n in fr[:2]])
    store.commit_snapshot(sid)
    # fr-2026: two thirds have consent; three have a contract.
    for n in numbers[: len(numbers) * 2 // 3]:
        store.add_consent("acme", parse(n).e164, ConsentProof(
            source="web-form", given_at=datetime(2026, 7, 1, 12, tzinfo=PARIS), channel="web",
            wording="v3", evidence_ref=f"form-{n}"))
    for n in numbers[-3:]:
        store.add_contract("acme", parse(n).e164, "energy")
    counts = {"calls": 0, "allowed": 0}
    for offset in range(days):
        day = start + timedelta(days=offset)
        for n in rng.sample(numbers, 25):
            hour = rng.choice([9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21])
            at = datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=PARIS)
            campaign = rng.choices(["promo", "promo2", "press", "service"], [6, 2, 1, 1])[0]
            d = call(config, store, n, at, campaign)
            counts["calls"] += 1
            if d.attempt_id is None:
                continue
            counts["allowed"] += 1
            outcome = rng.choices(["answered", "busy", "no-answer", "failed"], [6, 1, 2, 1])[0]
            answered = at + timedelta(seconds=8) if outcome == "answered" else None
            store.record_outcome(d.attempt_id, outcome=outcome, answered_at=answered,
                                 ended_at=at + timedelta(seconds=90), cause=16 if answered else 17,
                                 cause_txt="Normal Clearing" if answered else "User busy")
            if answered and rng.random() < 0.15:
                store.add_refusal("acme", campaign, d.callee.e164, at + timedelta(seconds=60),
                                  "dtmf", d.attempt_id)
    return counts


def populate_span(config: Config, store: Store, first: date, days: int, calls_per_day: float,
                  seed: int = 11) -> dict[str, int]:
    """`days` days of traffic from `first`, at any density (a few calls a week over
    years, or dozens a day), for the report's charts at every span. Blocks come
    from the rules themselves: calls around midnight and at weekends (R-20/R-21,
    Paris days that are not UTC days), callees without consent under fr-2026
    (R-11), a Bloctel snapshot refreshed every three weeks but left stale once
    in a while (R-10), repeated callees (R-30), refusals (R-31)."""
    rng = random.Random(seed)
    numbers = [f"06{rng.randrange(10**8):08d}" for _ in range(36)] + \
              [f"0692{rng.randrange(10**6):06d}" for _ in range(4)]
    opposed = [int(parse(n).e164.lstrip("+")) for n in numbers[:2]]
    given = datetime.combine(first, datetime.min.time(), PARIS) - timedelta(days=1)
    for n in numbers[: len(numbers) * 2 // 3]:
        store.add_consent("acme", parse(n).e164, ConsentProof(
            source="web-form", given_at=given, channel="web", wording="v3",
            evidence_ref=f"form-{n}"))
    counts = {"calls": 0, "allowed": 0}
    snapshot: date | None = None
    for offset in range(days):
        day = first + timedelta(days=offset)
        if snapshot is None or (day - snapshot).days >= rng.choice([21, 21, 21, 40]):
            sid = store.begin_snapshot("acme", day, "opposed", "test")
            store.load_snapshot(sid, opposed)
            store.commit_snapshot(sid)
            snapshot = day
        due = int(calls_per_day) + (rng.random() < calls_per_day % 1)
        for _ in range(due):
            hour, minute = rng.choice([(0, 30), *((h, rng.randrange(60)) for h in range(9, 21)),
                                       (23, 30)])
            at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)
            campaign = rng.choices(["promo", "promo2", "press"], [6, 2, 1])[0]
            d = call(config, store, rng.choice(numbers), at, campaign)
            counts["calls"] += 1
            if d.attempt_id is None:
                continue
            counts["allowed"] += 1
            outcome = rng.choices(["answered", "busy", "no-answer"], [6, 1, 2])[0]
            answered = at + timedelta(seconds=8) if outcome == "answered" else None
            store.record_outcome(d.attempt_id, outcome=outcome, answered_at=answered,
                                 ended_at=at + timedelta(seconds=90), cause=16 if answered else 17,
                                 cause_txt="Normal Clearing" if answered else "User busy")
            if answered and rng.random() < 0.1:
                store.add_refusal("acme", campaign, d.callee.e164, at + timedelta(seconds=60),
                                  "dtmf", d.attempt_id)
    return counts
