"""`sentinelle scrub`: each lead's verdict is the AGI's own (guard.check,
dry run), retry_at and needs say when or on what it becomes callable, the
filters and the sort keep the list's rows intact, and memory stays bounded."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import timedelta

import pytest
from click.testing import CliRunner

from sentinelle import facts
from sentinelle.cli.main import main
from sentinelle.core.clock import parse_instant
from sentinelle.guard import Request, check
from sentinelle.scrub import Scrubber, lead_verdict
from sentinelle.scrub.order import sorted_lines

AT = "2026-12-01T10:30:00+01:00"  # a Tuesday in the legal hours, fr-2026
NOW = parse_instant(AT)
NPV = "0162000000"


@pytest.fixture
def cli(config_path):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, ["--config", str(config_path), *args], input=input,
                             catch_exceptions=False)

    invoke("init")
    return invoke


def _history(store, config) -> None:
    """One callee per situation: consent, none, refusal, opt-out, four
    attempts, a slot, a contract, overseas and foreign."""
    def consent(n, days=10, **kw):
        facts.record_consent(store, config, number=n, campaign="promo", source="web",
                             given_at=NOW - timedelta(days=days), now=NOW, **kw)

    for n in ("0611111111", "0622222222", "0633333333", "0644444444", "0692123456"):
        consent(n)
    facts.record_refusal(store, config, number="0622222222", campaign="promo",
                         at=NOW - timedelta(days=3), source="t", now=NOW)
    store.set_optout("acme", "+33633333333", True)
    for day in (1, 5, 6, 7):  # Mon 30 Nov, Thu 26, Wed 25, Tue 24
        check(config, store, Request(dialled="0644444444", at=NOW - timedelta(days=day),
                                     campaign="promo", caller_id=NPV, record=True))
    consent("0655555555", days=400)  # expired
    store.add_contract("acme", "+33666666666")


LEADS = ["0611111111", "0622222222", "0633333333", "0644444444", "0655555555", "0666666666",
         "0677777777", "0692123456", "+4915112345678", "112", "12", "", "06 11 11 11 11"]


def _csv(numbers: list[str]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "name", "phone_number"])
    for i, n in enumerate(numbers):
        w.writerow([i, f"lead, {i}\nsecond line", n])
    return out.getvalue()


@pytest.mark.parametrize("at", [AT, "2026-12-01T22:15:00+01:00", "2026-12-25T11:00:00+01:00",
                                "2026-05-04T11:00:00+02:00"])
def test_each_verdict_is_the_agis_dry_run(store, config, at):
    _history(store, config)
    when = parse_instant(at)
    scrubber = Scrubber(config, store, "promo", when, caller_id=NPV)
    for raw in LEADS:
        d = check(config, store, Request(dialled=raw, at=when, campaign="promo", caller_id=NPV))
        assert scrubber.verdicts([raw]) == [lead_verdict(d)], raw
    assert store.count("decisions") == 4  # only the four attempts recorded above


def test_random_numbers_agree_with_guard(store, config):
    _history(store, config)
    rng = random.Random(7)
    numbers = [rng.choice(["06", "07", "01", "09", "0262", "+33 6", "0590"]) +
               "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 9)))
               for _ in range(300)]
    when = NOW + timedelta(hours=rng.randint(0, 24 * 40))
    got = Scrubber(config, store, "promo", when).verdicts(numbers)
    want = [lead_verdict(check(config, store, Request(dialled=n, at=when, campaign="promo")))
            for n in numbers]
    assert got == want


def test_cli_columns_needs_and_retry(cli, store, config, tmp_path):
    _history(store, config)
    leads = tmp_path / "leads.csv"
    leads.write_text(_csv(LEADS))
    out = tmp_path / "out.csv"
    r = cli("scrub", str(leads), "--campaign", "promo", "--at", AT, "--out", str(out),
            "--caller-id", NPV, "--jobs", "1")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert [row["phone_number"] for row in rows] == LEADS
    assert rows[0]["name"] == "lead, 0\nsecond line"  # the lead's own columns, untouched
    by = {row["phone_number"]: row for row in rows}
    assert by["0611111111"]["verdict"] == "allow" and by["0611111111"]["e164"] == "+33611111111"
    assert by["0622222222"]["rules"] == "R-11,R-31"
    assert by["0622222222"]["needs"] == "consent" and by["0622222222"]["retry_at"] == ""
    assert by["0633333333"]["needs"] == "optout-removal"
    assert by["0644444444"]["rules"] == "R-30"
    assert by["0644444444"]["retry_at"].startswith("2026-12-24T10:30:00")
    assert by["0644444444"]["needs"] == ""
    assert by["0655555555"]["needs"] == "consent"
    assert by["0666666666"]["verdict"] == "allow"  # contract
    assert by["+4915112345678"]["needs"] == "french-number"
    assert by["112"]["verdict"] == "allow"
    assert by["12"]["needs"] == "valid-number" and by[""]["rules"] == "R-01"
    assert "scrubbed 13 leads: 4 callable now" in r.output


def test_filters_and_sort(cli, store, config, tmp_path):
    _history(store, config)
    leads = tmp_path / "leads.csv"
    leads.write_text(_csv(LEADS))
    night = "2026-12-01T21:00:00+01:00"

    def run(*extra: str) -> list[dict]:
        r = cli("scrub", str(leads), "--campaign", "promo", "--at", night, "--format", "ndjson",
                "--caller-id", NPV, "--jobs", "1", *extra)
        assert r.exit_code == 0, r.output
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert lines[-1]["summary"]["leads"] == len(LEADS)
        return lines[:-1]

    assert [x["lead"]["phone_number"] for x in run("--callable-only")] == ["112"]
    within = run("--callable-within", "24h")
    assert {x["lead"]["phone_number"] for x in within} == {
        "112", "0611111111", "0666666666", "0692123456", "06 11 11 11 11"}
    assert all(x["retry_at"] is None or x["retry_at"] <= "2026-12-02T21:00:00+01:00"
               for x in within)
    ordered = run("--sort")
    keys = [(x["verdict"] != "allow", x["retry_at"] is None, x["retry_at"] or "")
            for x in ordered]
    assert keys == sorted(keys)
    assert ordered[0]["lead"]["phone_number"] == "112"
    assert {x["lead"]["phone_number"] for x in ordered} == set(LEADS)


def test_usage_errors(cli, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("id,name\n1,x\n")
    r = cli("scrub", str(leads), "--campaign", "promo")
    assert r.exit_code == 2 and "no number column" in r.output
    leads.write_text("id,number,verdict\n1,0611111111,allow\n")
    assert cli("scrub", str(leads), "--campaign", "promo").exit_code == 2
    leads.write_text("number\n0611111111\n")
    assert cli("scrub", str(leads), "--campaign", "nope").exit_code == 2
    r = cli("scrub", str(leads), "--campaign", "promo", "--callable-within", "soon")
    assert r.exit_code == 2 and "--callable-within" in r.output
    assert cli("scrub", str(tmp_path / "missing.csv"), "--campaign", "promo").exit_code == 2


def test_store_missing_exits_1_and_writes_nothing(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "none.db"}"\n')
    leads = tmp_path / "leads.csv"
    leads.write_text("number\n0611111111\n")
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(main, ["--config", str(cfg), "scrub", str(leads), "--campaign",
                                  "default", "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 1 and not out.exists()


def test_worker_processes_give_the_same_output(cli, store, config, tmp_path):
    _history(store, config)
    leads = tmp_path / "leads.csv"
    leads.write_text(_csv(LEADS * 400))  # several chunks
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}.csv"
        r = cli("scrub", str(leads), "--campaign", "promo", "--at", AT, "--out", str(out),
                "--jobs", jobs, "--sort")
        assert r.exit_code == 0, r.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]


def test_external_sort_spills_runs_and_keeps_every_line():
    rng = random.Random(1)
    items = [(f"{rng.randrange(1000):04d}|{i:06d}", f"line {i}\\ with \"x\"\n") for i in range(2500)]
    got = list(sorted_lines(iter(items), run_rows=100))
    assert got == [text for _, text in sorted(items)]


def test_sort_is_bounded_in_memory():
    """20 runs' worth of 1 KB lines through the sort: memory holds one run
    (tracemalloc peak), not the list."""
    import tracemalloc

    n = 20_000

    def items():
        for i in range(n):
            yield f"{(i * 7919) % n:08d}|{i:012d}", f"{i},{'x' * 1000}\n"

    def peak(run_rows: int) -> int:
        tracemalloc.start()
        try:
            count = sum(1 for _ in sorted_lines(items(), run_rows=run_rows))
            assert count == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole, runs = peak(n + 1), peak(n // 20)
    assert whole > 20_000_000 and runs < whole / 8, (runs, whole)
