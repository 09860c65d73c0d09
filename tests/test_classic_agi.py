"""The classic per-call AGI (`sentinelle-agi`, `sentinelle agi`): what it
imports (its start-up is every call's post-dial delay), its holiday cache,
and stdin/stdout that are files rather than pipes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinelle.core import calendar
from sentinelle.pbx import holiday_cache
from sentinelle.store import ConsentProof
from tests.helpers.fakeasterisk import headers_for

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)
BIN = Path(sys.executable).parent
HEAVY = ("matplotlib", "numpy", "rich", "httpx", "aiohttp", "prometheus_client", "click",
         "sqlite_utils", "holidays", "sentinelle.cli", "sentinelle.http", "sentinelle.service",
         "sentinelle.pbx.server")


def _session(number: str = "0612345678", campaign: str = "service") -> str:
    headers = headers_for(number, campaign=campaign)
    headers.pop("agi_network_script")
    return "".join(f"{k}: {v}\n" for k, v in headers.items()) + "\n" + "200 result=1\n" * 5


@pytest.fixture(autouse=True)
def _fresh_calendars():
    """The cache preloads calendars into the process: leave none behind."""
    yield
    calendar._PRELOADED.clear()
    calendar._calendar.cache_clear()


@pytest.mark.sqlite_only
def test_classic_agi_imports_only_what_a_check_needs(config_path, store, tmp_path):
    """Run the console script's code in a subprocess, as Asterisk would, and
    list the modules loaded after the check. The first call builds the
    holiday cache (importing `holidays`); every later one reads it."""
    probe = ("import json, sys\n"
             "from sentinelle.pbx.stdio import main\n"
             "rc = main()\n"
             f"json.dump(sorted(sys.modules), open({str(tmp_path / 'modules.json')!r}, 'w'))\n"
             "sys.exit(rc)\n")
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", probe], input=_session(), capture_output=True,
                           text=True, timeout=60, env=env, cwd="/")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'
    loaded = set(json.loads((tmp_path / "modules.json").read_text()))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY
                   or any(m.startswith(h + ".") for h in HEAVY))
    assert heavy == []
    assert Path(store.path + holiday_cache.SUFFIX).exists()
    decisions = store.timeline("+33612345678")["decisions"]
    assert [d["source"] for d in decisions] == ["agi", "agi"]


def test_sentinelle_agi_script_points_at_the_light_entry():
    text = (BIN / "sentinelle-agi").read_text()
    assert "sentinelle.pbx.stdio" in text and "sentinelle.cli" not in text


# -- stdin/stdout as regular files (issue #10 item 18) ---------------------------

@pytest.mark.parametrize("command", [["sentinelle-agi"], ["sentinelle", "agi"]])
def test_session_file_on_stdin_and_answers_to_a_file(command, config_path, store, tmp_path):
    session = tmp_path / "session.txt"
    session.write_text(_session())
    out = tmp_path / "answers.txt"
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    with session.open("rb") as stdin, out.open("wb") as stdout:
        r = subprocess.run([str(BIN / command[0]), *command[1:]], stdin=stdin, stdout=stdout,
                           stderr=subprocess.PIPE, text=True, timeout=60, env=env, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert out.read_text().splitlines()[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'
    assert store.count("decisions") == 1


def test_dev_null_and_closed_streams_exit_cleanly(config_path, store, tmp_path):
    """/dev/null is no session (no verdict, exit 0); a closed stdout cannot
    carry one: exit 2 with a message, never a traceback."""
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    exe = str(BIN / "sentinelle-agi")
    r = subprocess.run([exe], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60, env=env)
    assert (r.returncode, r.stdout, "Traceback" in r.stderr) == (0, "", False)
    r = subprocess.run(["sh", "-c", f"exec {exe} >&-"], input=_session(), stdout=None,
                       stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert "error: classic AGI cannot use stdin/stdout: stdout is closed" in r.stderr
    assert "Traceback" not in r.stderr
    assert store.count("decisions") == 0


# -- the holiday cache ---------------------------------------------------------

def _db(tmp_path: Path) -> str:
    return str(tmp_path / "s.db")


def test_cache_is_built_then_used_without_computing(tmp_path, monkeypatch):
    assert holiday_cache.use(_db(tmp_path), NOW) == "rebuilt"
    calendar._PRELOADED.clear()

    def forbidden(subdiv, year):
        raise AssertionError(f"computed {subdiv} {year} despite the cache")

    monkeypatch.setattr(calendar, "compute_days", forbidden)
    assert holiday_cache.use(_db(tmp_path), NOW) == "hit"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 26)) == "Saint Stephen's Day"
    assert calendar.holiday(calendar.Territory.RE, date(2027, 12, 20)) is not None
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 1)) is None


def test_cache_holds_exactly_what_holidays_computes(tmp_path):
    holiday_cache.use(_db(tmp_path), NOW)
    loaded = holiday_cache.load(Path(_db(tmp_path) + holiday_cache.SUFFIX), [2025, 2026, 2027])
    assert loaded == holiday_cache.build([2025, 2026, 2027])


@pytest.mark.parametrize("change", ["version", "holidays", "year"])
def test_cache_is_rebuilt_when_a_version_or_the_year_changes(change, tmp_path, monkeypatch):
    holiday_cache.use(_db(tmp_path), NOW)
    now = NOW
    if change == "version":
        monkeypatch.setattr(holiday_cache, "__version__", "9.9.9")
    elif change == "holidays":
        monkeypatch.setattr(holiday_cache, "holidays_identity", lambda: "another holidays")
    else:
        now = datetime(2027, 1, 2, 10, 30, tzinfo=PARIS)
    assert holiday_cache.use(_db(tmp_path), now) == "rebuilt"
    assert holiday_cache.use(_db(tmp_path), now) == "hit"


def _corrupt(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "garbage":
        path.write_bytes(b"\x00not json")
    elif how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "edited":  # a holiday removed, checksum left as it was
        data = json.loads(text)
        data["calendars"]["-|2026"].pop("2026-12-25")
        path.write_text(json.dumps(data))
    elif how == "edited-with-crc":  # consistent checksum, but a date of the wrong year
        data = json.loads(text)
        data["calendars"]["-|2026"]["2031-05-05"] = "Invented Day"
        data["crc"] = holiday_cache._crc(data["calendars"])
        path.write_text(json.dumps(data))
    elif how == "list":
        path.write_text("[]")


@pytest.mark.parametrize("how", ["garbage", "truncated", "edited", "edited-with-crc", "list"])
def test_a_corrupt_cache_is_ignored_and_rewritten(how, tmp_path):
    holiday_cache.use(_db(tmp_path), NOW)
    path = Path(_db(tmp_path) + holiday_cache.SUFFIX)
    _corrupt(path, how)
    calendar._PRELOADED.clear()
    assert holiday_cache.use(_db(tmp_path), NOW) == "rebuilt"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert calendar.holiday(calendar.Territory.FR, date(2031, 5, 5)) is None
    assert holiday_cache.use(_db(tmp_path), NOW) == "hit"


def test_an_unwritable_directory_only_means_computing(tmp_path):
    assert holiday_cache.use(str(tmp_path / "missing-dir" / "s.db"), NOW) == "computed"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert holiday_cache.use(":memory:", NOW) == "off"


def test_consented_call_through_sentinelle_agi_with_the_cache(config_path, store, tmp_path):
    """A prospecting call on a frozen Tuesday through `sentinelle agi --at`:
    the same verdict with the cache built and with it read."""
    store.add_consent("acme", "+33612345678",
                      ConsentProof(source="web", given_at=datetime(2026, 11, 1, tzinfo=PARIS)))
    for _ in range(2):
        r = subprocess.run([str(BIN / "sentinelle"), "--config", str(config_path), "agi", "--at",
                            NOW.isoformat()], input=_session(campaign="promo"),
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.splitlines()[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"', r.stderr
    assert store.count("attempts") == 2
