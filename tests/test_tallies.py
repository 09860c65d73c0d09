"""The decision tallies that the FastAGI workers of one `serve` share."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from sentinelle.core.model import PARIS, Decision, Verdict
from sentinelle.service.tallies import Tallies


def _decision(verdict: Verdict, *rules: str) -> Decision:
    return Decision(verdict, rules, (), "fr-2026", datetime(2026, 12, 1, 10, 30, tzinfo=PARIS))


def test_rows_add_up_and_a_rule_not_listed_is_still_counted():
    t = Tallies(2)
    t.observe(0, _decision(Verdict.ALLOW), 0.0004)
    t.observe(1, _decision(Verdict.BLOCK, "R-11", "R-20"), 0.003)
    t.observe(1, _decision(Verdict.BLOCK, "R-99"), 3.0)
    assert sorted(t.decisions()) == [("allow", "", 1.0), ("block", "R-11", 1.0),
                                     ("block", "R-20", 1.0), ("block", "other", 1.0)]
    buckets, total = t.latency()
    counts = dict(buckets)
    assert (counts["0.0005"], counts["0.002"], counts["0.005"], counts["2.5"],
            counts["+Inf"]) == (1, 1, 2, 2, 3)
    assert total == pytest.approx(3.0034)


def test_a_forked_worker_writes_what_the_parent_reads():
    t = Tallies(2)
    pid = os.fork()
    if pid == 0:
        t.observe(1, _decision(Verdict.BLOCK, "R-30"), 0.01)
        t.set_inflight(1, 3)
        os._exit(0)
    os.waitpid(pid, 0)
    t.set_inflight(0, 2)
    assert list(t.decisions()) == [("block", "R-30", 1.0)]
    assert t.inflight() == 5


def test_a_worker_outside_the_rows_is_refused():
    with pytest.raises(ValueError):
        Tallies(2).set_inflight(2, 1)
