"""`sentinelle audit`: the independent invariant checker (evidence.audit)
as an admin command, with SQLite's integrity check of the store file.

The breach is made the way a bug would make it: through the store's own
check-and-record, with a decision that was given the history without its
attempts, so the fifth call in 30 days is allowed and recorded (R-30)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sentinelle.core.model import Call
from sentinelle.core.numbers import parse
from sentinelle.core.rules import decide
from sentinelle.store import ConsentProof, Store
from tests.helpers.evidence_helpers import NPV, PARIS, call, invoker

AGI = Path(__file__).resolve().parent.parent / "agi" / "sentinelle"
NUMBER, E164 = "0612345678", "+33612345678"
DAYS = (1, 2, 3, 4, 8)  # December 2026, weekdays: five attempts within 30 days


def _at(day: int) -> datetime:
    return datetime(2026, 12, day, 10, 30, tzinfo=PARIS)


def _consent(store: Store) -> None:
    store.add_consent("acme", E164, ConsentProof(source="web", given_at=_at(1) - timedelta(days=30)))


def _record_blind_to_attempts(config, store: Store, at: datetime) -> None:
    """A buggy check: the decision does not see the attempts already recorded."""
    campaign = config.campaign("promo")
    c = Call(NUMBER, at, campaign, config.professional_of(campaign), caller_id=NPV)
    d = store.check_and_record(
        "acme", E164, at, lambda h: decide(c, parse(NUMBER), dataclasses.replace(h, attempts=()),
                                           config.policy),
        record=True, source="test")
    assert d.allowed and d.attempt_id is not None, d.reasons


@pytest.fixture
def breached(config, store):
    _consent(store)
    for day in DAYS:
        _record_blind_to_attempts(config, store, _at(day))
    return store


@pytest.fixture
def lawful(config, store):
    _consent(store)
    for day in DAYS:
        call(config, store, NUMBER, _at(day))  # the fifth is blocked by R-30, not recorded
    assert store.count("attempts") == 4
    return store


def test_r30_breach_is_reported_with_its_attempts_and_exit_1(config_path, breached):
    r = invoker(config_path)("audit")
    assert r.exit_code == 1, r.output
    assert "R-30 acme +33612345678 attempt #5 at 2026-12-08T10:30:00.000+01:00" in r.output
    for n, day in enumerate(DAYS, 1):  # every attempt of the window, Paris time with offset
        assert f"    #{n} 2026-12-{day:02d}T10:30:00.000+01:00" in r.output
    assert r.output.splitlines()[-1].startswith("BREACHES FOUND: 5 attempts, 1 (professional")
    assert "1 violation(s) (R-30 1)" in r.output and "integrity: ok" in r.output


def test_json_report(config_path, breached):
    r = invoker(config_path)("audit", "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["clean"] is False and out["by_rule"] == {"R-30": 1}
    assert out["integrity"] == [] and out["attempts"] == 5 and out["callees"] == 1
    (v,) = out["violations"]
    assert (v["rule"], v["professional"], v["e164"], v["attempt_id"]) == ("R-30", "acme", E164, 5)
    assert [a["id"] for a in v["attempts"]] == [1, 2, 3, 4, 5]
    assert all(a["at"].endswith("+01:00") for a in v["attempts"])


def test_clean_store_exits_0(config_path, lawful):
    r = invoker(config_path)("audit")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == ("clean: 4 attempts, 1 (professional, callee) pairs, "
                                         "0 violation(s), 0 unverifiable; integrity: ok")
    out = json.loads(invoker(config_path)("audit", "--json").output)
    assert out["clean"] is True and out["violations"] == [] and out["attempts"] == 4


def test_period_reads_the_windows_that_end_in_it(config_path, breached):
    cli = invoker(config_path)
    # The breaching attempt alone is in the period; its window's first four are read too.
    r = cli("audit", "--from", "2026-12-08", "--to", "2026-12-08", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["attempts"] == 1
    assert len(json.loads(r.output)["violations"][0]["attempts"]) == 5
    # Before it, or after it: nothing to report.
    assert cli("audit", "--to", "2026-12-07").exit_code == 0
    r = cli("audit", "--from", "2026-12-09T00:00:00+01:00", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["attempts"] == 0


def test_usage_errors_exit_2(config_path, lawful):
    cli = invoker(config_path)
    assert cli("audit", "--from", "2026-12-09", "--to", "2026-12-01").exit_code == 2
    assert cli("audit", "--from", "last week").exit_code == 2
    assert cli("audit", "--sure").exit_code == 2


def test_missing_store_exits_1(tmp_path, config_path):
    r = invoker(config_path)("audit")
    assert r.exit_code == 1 and "store missing" in r.output
    assert not (tmp_path / "sentinelle.db").exists()


@pytest.mark.sqlite_only
def test_integrity_problem_exits_1(config, config_path, lawful):
    assert lawful.check_integrity() == []
    lawful.checkpoint()
    lawful.close()
    _corrupt_index(Path(config.store.path), "idx_decisions_e164", E164.encode())
    r = invoker(config_path)("audit")
    assert r.exit_code == 1, r.output
    assert "integrity: row" in r.output and "missing from index idx_decisions_e164" in r.output
    assert "0 violation(s)" in r.output and re.search(r"integrity: \d+ problem\(s\)", r.output)


def _corrupt_index(path: Path, index: str, key: bytes) -> None:
    """Change one key inside an index page: the table row no longer has its
    index entry, the kind of damage a bad disk or a stray write leaves."""
    store = Store(path)
    page_size, root = store.run(lambda c: (
        c.execute("PRAGMA page_size").fetchone()[0],
        c.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (index,)).fetchone()[0]))
    store.close()
    data = bytearray(path.read_bytes())
    at = data.find(key, (root - 1) * page_size, root * page_size)
    assert at > 0
    data[at:at + len(key)] = key[:-4] + b"9999"
    path.write_bytes(bytes(data))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_the_checker_shares_no_decision_code():
    """The point of the audit: a bug in the decision code cannot hide from it."""
    for path in (AGI / "evidence" / "audit.py", AGI / "store" / "audit.py"):
        assert not _imports(path) & {"sentinelle.core.rules", "sentinelle.guard",
                                     "sentinelle.store.hot"}, path
