"""`sentinelle export`: stable columns, ISO 8601 times with offset, ranges,
filters, CSV and JSONL, and flat memory on large tables."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from sentinelle.evidence.export import COLUMNS
from sentinelle.store import ConsentProof, open_store
from tests.helpers.evidence_helpers import PARIS, call, invoker, populate

DOC = Path(__file__).parent.parent / "README.md"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")

# The contract, spelled out: changing a name or the order must fail here.
EXPECTED = {
    "decisions": ["id", "at", "callee_local_time", "source", "campaign", "professional",
                  "dialled", "e164", "caller_id", "verdict", "rules", "reasons", "regime",
                  "retry_at", "attempt_id", "inputs"],
    "attempts": ["id", "at", "callee_local_time", "professional", "campaign", "e164",
                 "decision_id", "outcome", "answered_at", "ended_at", "cause", "cause_txt",
                 "disposition"],
    "refusals": ["id", "at", "professional", "campaign", "e164", "source", "attempt_id",
                 "recorded_at"],
    "consents": ["id", "professional", "e164", "given_at", "source", "channel", "wording",
                 "evidence_ref", "slot_from", "slot_until", "revoked_at", "recorded_at"],
}


@pytest.fixture
def cli(config_path, config, store):
    populate(config, store, days=6)
    return invoker(config_path)


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_column_names_are_the_documented_contract(cli):
    assert {t: [c.name for c in cols] for t, cols in COLUMNS.items()} == EXPECTED
    for table, names in EXPECTED.items():
        r = cli("export", table, "--from", "2026-06-01", "--to", "2026-12-31")
        assert r.exit_code == 0, r.output
        assert r.output.splitlines()[0] == ",".join(names)
    doc = DOC.read_text()
    for table, names in EXPECTED.items():
        for name in names:
            assert f"| `{name}` |" in doc, f"{table}.{name} undocumented in README.md"


def test_decisions_csv_times_rules_and_callee_clock(cli):
    rows = _csv(cli("export", "decisions", "--from", "2026-07-27", "--to", "2026-08-01").output)
    assert len(rows) == 6 * 25
    for row in rows:
        assert ISO.match(row["at"]) and row["at"].endswith("+02:00")  # Paris summer time
        assert ISO.match(row["callee_local_time"])
        assert row["verdict"] in ("allow", "block")
        if row["verdict"] == "block":
            rules = row["rules"].split(",")
            assert rules and all(re.fullmatch(r"R-\d\d|SYS-[A-Z]+", r) for r in rules)
            assert {r.split(":")[0] for r in row["reasons"].split(" | ")} == set(rules)
        json.loads(row["inputs"])  # the evidence of what the decision saw
    reunion = [r for r in rows if r["e164"].startswith("+262")]
    assert reunion and all(r["callee_local_time"].endswith("+04:00") for r in reunion)
    # Same instant, two clocks.
    r = reunion[0]
    assert datetime.fromisoformat(r["at"]) == datetime.fromisoformat(r["callee_local_time"])
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_jsonl_types_and_utc(cli):
    out = cli("export", "decisions", "--from", "2026-07-27", "--to", "2026-07-27",
              "--format", "jsonl", "--tz", "UTC").output
    lines = out.splitlines()
    assert len(lines) == 25
    for line in lines:
        obj = json.loads(line)
        assert list(obj) == EXPECTED["decisions"]
        assert obj["at"].endswith("+00:00") and ISO.match(obj["at"])
        assert isinstance(obj["rules"], list) and isinstance(obj["reasons"], list)
        assert isinstance(obj["inputs"], dict) and "policy" in obj["inputs"]
        assert isinstance(obj["id"], int)
        assert (obj["verdict"] == "allow") == (obj["rules"] == [])


def test_range_bounds_campaign_filter_and_file_output(cli, tmp_path):
    day = _csv(cli("export", "attempts", "--from", "2026-07-28", "--to", "2026-07-28").output)
    assert day and all(r["at"].startswith("2026-07-28T") for r in day)
    # An instant bound is exclusive; a day bound includes the whole day.
    half = _csv(cli("export", "attempts", "--from", "2026-07-28",
                    "--to", "2026-07-28T14:00:00+02:00").output)
    assert half == [r for r in day if r["at"] < "2026-07-28T14:00"]
    promo = _csv(cli("export", "decisions", "--from", "2026-07-27", "--to", "2026-08-01",
                     "--campaign", "press").output)
    assert promo and {r["campaign"] for r in promo} == {"press"}
    consents = _csv(cli("export", "consents", "--from", "2026-07-01", "--to", "2026-07-01",
                        "--campaign", "elsewhere").output)
    assert consents == []  # another professional
    out = tmp_path / "attempts.csv"
    r = cli("export", "attempts", "--from", "2026-07-27", "--to", "2026-08-01", "--out", str(out))
    assert r.exit_code == 0 and "exported" in r.output
    rows = _csv(out.read_text())
    assert rows and {r["outcome"] for r in rows} <= {"answered", "busy", "no-answer", "failed"}
    assert not list(tmp_path.glob(".*.partial"))


def test_usage_errors(cli):
    assert cli("export", "decisions", "--from", "2026-08-01", "--to", "2026-07-01").exit_code == 2
    assert cli("export", "decisions", "--from", "yesterday", "--to", "2026-07-01").exit_code == 2
    assert cli("export", "calls", "--from", "2026-07-01", "--to", "2026-07-02").exit_code == 2
    assert cli("export", "decisions", "--from", "2026-07-01", "--to", "2026-07-02",
               "--tz", "Mars/Olympus").exit_code == 2
    assert cli("export", "decisions", "--from", "2026-07-01", "--to", "2026-07-02",
               "--campaign", "nope").exit_code == 2


def test_consent_proof_and_refusal_exported(config_path, config, store):
    store.add_consent("acme", "+33612345678", ConsentProof(
        source="paper", given_at=datetime(2026, 9, 1, 10, tzinfo=PARIS), channel="mail",
        wording="v1, \"quoted\", comma", evidence_ref="scan-42",
        slot_from=datetime(2026, 9, 5, 21, tzinfo=PARIS),
        slot_until=datetime(2026, 9, 5, 22, tzinfo=PARIS)))
    store.add_refusal("acme", "promo", "+33612345678", datetime(2026, 9, 10, 11, tzinfo=PARIS),
                      "dtmf")
    cli = invoker(config_path)
    (c,) = _csv(cli("export", "consents", "--from", "2026-09-01", "--to", "2026-09-01").output)
    assert c["wording"] == 'v1, "quoted", comma' and c["evidence_ref"] == "scan-42"
    assert c["slot_from"] == "2026-09-05T21:00:00.000+02:00"
    assert c["revoked_at"] == "2026-09-10T11:00:00.000+02:00"  # the refusal revoked it
    (r,) = _csv(cli("export", "refusals", "--from", "2026-09-01", "--to", "2026-09-30").output)
    assert r["source"] == "dtmf" and r["at"] == "2026-09-10T11:00:00.000+02:00"


def _fill(path: Path, n: int) -> None:
    """n decisions written the way the service writes them, then copied in bulk."""
    from sentinelle.config import load_config

    config = load_config(str(path.parent / "sentinelle.toml"))
    with open_store(config.store, create=True) as store:
        call(config, store, "0612345678", datetime(2026, 9, 1, 10, 30, tzinfo=PARIS))
        call(config, store, "0612345678", datetime(2026, 9, 1, 21, 30, tzinfo=PARIS))

        def copy(conn):
            cols = ("at, source, campaign, professional, dialled, e164, caller_id, verdict, rules,"
                    " reasons, regime, retry_at, attempt_id, inputs")
            while (have := conn.execute("SELECT count(*) FROM decisions").fetchone()[0]) < n:
                conn.execute(f"INSERT INTO decisions ({cols}) SELECT {cols} FROM decisions"  # noqa: S608
                             " LIMIT ?", (n - have,))

        store.run(copy, immediate=True)


def _peak_rss_kib(config_path: Path, out: Path) -> tuple[int, int]:
    code = (
        "import sys\n"
        "from sentinelle.cli import main\n"
        "try:\n"
        f"    main(['--config', {str(config_path)!r}, 'export', 'decisions', '--from',"
        f" '2026-01-01', '--to', '2026-12-31', '--format', 'jsonl', '--out', {str(out)!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        # VmHWM, not ru_maxrss: the latter survives exec and would report pytest's peak.
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1]), sum(1 for _ in out.open())


def test_export_memory_is_flat(tmp_path, config_path):
    """40x more rows must not mean more memory: rows are streamed, never loaded."""
    small_dir, big_dir = tmp_path / "small", tmp_path / "big"
    peaks = {}
    for d, n in ((small_dir, 2_000), (big_dir, 80_000)):
        d.mkdir()
        (d / "sentinelle.toml").write_text(config_path.read_text())
        _fill(d / "sentinelle.db", n)
        peaks[n], rows = _peak_rss_kib(d / "sentinelle.toml", d / "out.jsonl")
        assert rows >= n
    # 80,000 decisions are ~60 MB of JSONL; loading them would add far more than 8 MB.
    assert peaks[80_000] - peaks[2_000] < 8 * 1024, peaks


def test_every_evidence_command_is_documented():
    from sentinelle.cli.main import evidence

    doc = DOC.read_text()
    for command in (evidence.export_cmd, evidence.explain_cmd, evidence.report_cmd,
                    evidence.audit_cmd, evidence.purge_cmd, evidence.forget_cmd):
        assert f"### sentinelle {command.name}\n" in doc, command.name
