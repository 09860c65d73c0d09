"""The classic per-call AGI (`sentinelle-agi`, `sentinelle agi`): what it
imports (its start-up is every call's post-dial delay), its start-up cache
(holiday calendars and +33 number validity),
stdin/stdout that are files rather than pipes, that it answers exactly as
the FastAGI `check` route does, and that it fails closed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinelle.config import Config
from sentinelle.core import calendar, numbers
from sentinelle.core.clock import frozen
from sentinelle.pbx import classic, startup_cache, wire
from sentinelle.pbx.server import FastAgiServer
from sentinelle.store import ConsentProof, Store
from tests.helpers.fakeasterisk import call, classic_stdin, headers_for

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)
BIN = Path(sys.executable).parent
HEAVY = ("matplotlib", "numpy", "rich", "httpx", "aiohttp", "prometheus_client", "click",
         "sqlite_utils", "holidays", "phonenumbers", "hashlib", "sentinelle.cli", "sentinelle.http",
         "sentinelle.service",
         "sentinelle.pbx.server", "asyncio", "panoramisk", "concurrent", "ssl",
         "sentinelle.pbx.routes", "sentinelle.pbx.agi", "sentinelle.pbx.session")


def _session(number: str = "0612345678", campaign: str = "service") -> str:
    return classic_stdin(number, campaign)


@pytest.fixture(autouse=True)
def _fresh_calendars():
    """The cache preloads calendars and the number table into the process:
    leave none behind."""
    yield
    calendar._PRELOADED.clear()
    calendar._calendar.cache_clear()
    numbers.forget_fr_validity()


@pytest.mark.sqlite_only
def test_classic_agi_imports_only_what_a_check_needs(config_path, store, tmp_path):
    """Run the console script's code in a subprocess, as Asterisk would, and
    list the modules loaded after the check. The first call builds the
    start-up cache (importing `holidays` and `phonenumbers`); every later
    one reads it."""
    probe = ("import gc, json, sys\n"
             "from sentinelle.pbx.stdio import one_call as main\n"
             "before = sorted(sys.modules)\n"
             "rc = main()\n"
             f"json.dump([before, sorted(sys.modules), gc.isenabled()], "
             f"open({str(tmp_path / 'modules.json')!r}, 'w'))\n"
             "sys.exit(rc)\n")
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", probe], input=_session(), capture_output=True,
                           text=True, timeout=60, env=env, cwd="/")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"'
    before, after, gc_on = json.loads((tmp_path / "modules.json").read_text())
    loaded = set(after)
    # the console script's module loads nothing of the check before main()
    # has turned the GC off (see pbx/stdio.py)
    assert not gc_on
    assert {"sentinelle.config", "sentinelle.guard", "sentinelle.core.model"} & set(before) == set()
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY
                   or any(m.startswith(h + ".") for h in HEAVY))
    assert heavy == []
    assert Path(store.path + startup_cache.SUFFIX).exists()
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


# -- the start-up cache ----------------------------------------------------------

def _db(tmp_path: Path) -> str:
    return str(tmp_path / "s.db")


def test_cache_is_built_then_used_without_computing(tmp_path, monkeypatch):
    assert startup_cache.use(_db(tmp_path), NOW) == "rebuilt"
    calendar._PRELOADED.clear()

    def forbidden(subdiv, year):
        raise AssertionError(f"computed {subdiv} {year} despite the cache")

    monkeypatch.setattr(calendar, "compute_days", forbidden)
    assert startup_cache.use(_db(tmp_path), NOW) == "hit"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 26)) == "Saint Stephen's Day"
    assert calendar.holiday(calendar.Territory.RE, date(2027, 12, 20)) is not None
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 1)) is None


def test_cache_holds_exactly_what_the_packages_compute(tmp_path):
    startup_cache.use(_db(tmp_path), NOW)
    calendars, table = startup_cache.load(Path(_db(tmp_path) + startup_cache.SUFFIX),
                                          [2025, 2026, 2027])
    assert calendars == startup_cache.build([2025, 2026, 2027])
    assert table == numbers.fr_validity_table()


def test_the_number_table_answers_as_phonenumbers(tmp_path):
    """Every 5-digit +33 prefix with a random tail, read off the cached
    table in a process that never asks phonenumbers, against phonenumbers."""
    import phonenumbers

    startup_cache.use(_db(tmp_path), NOW)
    numbers.forget_fr_validity()
    _, table = startup_cache.load(Path(_db(tmp_path) + startup_cache.SUFFIX), [2025, 2026, 2027])
    assert table is not None
    numbers.preload_fr_validity(*table)
    asked = []
    real = numbers._phonenumbers_valid_fr
    numbers._phonenumbers_valid_fr = lambda nsn: asked.append(nsn) or real(nsn)  # type: ignore[assignment]
    try:
        rng = random.Random(15)
        valid = 0
        for prefix in range(10_000, 100_000):
            nsn = f"{prefix}{rng.randrange(10_000):04d}"
            want = phonenumbers.is_valid_number(
                phonenumbers.PhoneNumber(country_code=33, national_number=int(nsn)))
            assert numbers._valid_metropolitan(nsn) is want, nsn
            valid += want
    finally:
        numbers._phonenumbers_valid_fr = real  # type: ignore[assignment]
    assert asked == []
    assert 50_000 < valid < 90_000  # both answers occur, in bulk


def test_a_table_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        numbers.preload_fr_validity(5, b"\xff" * 100)


@pytest.mark.parametrize("change", ["version", "holidays", "phonenumbers", "year"])
def test_cache_is_rebuilt_when_a_version_or_the_year_changes(change, tmp_path, monkeypatch):
    startup_cache.use(_db(tmp_path), NOW)
    now = NOW
    if change == "version":
        monkeypatch.setattr(startup_cache, "__version__", "9.9.9")
    elif change in ("holidays", "phonenumbers"):
        real = startup_cache.package_identity
        monkeypatch.setattr(startup_cache, "package_identity",
                            lambda name: f"another {name}" if name == change else real(name))
    else:
        now = datetime(2027, 1, 2, 10, 30, tzinfo=PARIS)
    assert startup_cache.use(_db(tmp_path), now) == "rebuilt"
    assert startup_cache.use(_db(tmp_path), now) == "hit"


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
        data["crc"] = startup_cache._crc(data["calendars"], data["numbers"])
        path.write_text(json.dumps(data))
    elif how == "table-edited":  # a range turned valid, checksum left as it was
        data = json.loads(text)
        bits = data["numbers"]["bits"]
        data["numbers"]["bits"] = ("B" if bits[0] == "A" else "A") + bits[1:]
        path.write_text(json.dumps(data))
    elif how == "table-short":  # consistent checksum, a table cut short
        data = json.loads(text)
        data["numbers"]["bits"] = data["numbers"]["bits"][:-8]
        data["crc"] = startup_cache._crc(data["calendars"], data["numbers"])
        path.write_text(json.dumps(data))
    elif how == "list":
        path.write_text("[]")


@pytest.mark.parametrize("how", ["garbage", "truncated", "edited", "edited-with-crc", "list",
                                 "table-edited", "table-short"])
def test_a_corrupt_cache_is_ignored_and_rewritten(how, tmp_path):
    startup_cache.use(_db(tmp_path), NOW)
    path = Path(_db(tmp_path) + startup_cache.SUFFIX)
    _corrupt(path, how)
    calendar._PRELOADED.clear()
    assert startup_cache.use(_db(tmp_path), NOW) == "rebuilt"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert calendar.holiday(calendar.Territory.FR, date(2031, 5, 5)) is None
    assert startup_cache.use(_db(tmp_path), NOW) == "hit"


def test_an_unwritable_directory_only_means_computing(tmp_path):
    """Computing the calendars, and no number table: it costs ~0.8 s to build,
    and a process that cannot keep it would pay that at every call."""
    assert startup_cache.use(str(tmp_path / "missing-dir" / "s.db"), NOW) == "computed"
    assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    assert numbers._FR_TABLE is None
    assert numbers.parse("0612345678").e164 == "+33612345678"
    assert startup_cache.use(":memory:", NOW) == "off"


def test_one_process_rebuilds_while_the_others_compute(tmp_path):
    """After an upgrade every call starts without a cache at once: one builds
    the number table (~0.8 s of CPU), the others compute their calendars and
    ask phonenumbers per number, rather than each building it."""
    import fcntl

    path = Path(_db(tmp_path) + startup_cache.SUFFIX)
    fd = os.open(f"{path}.lock", os.O_WRONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is building
        assert startup_cache.use(_db(tmp_path), NOW) == "computed"
        assert numbers._FR_TABLE is None and not path.exists()
        assert calendar.holiday(calendar.Territory.FR, date(2026, 12, 25)) == "Christmas Day"
    finally:
        os.close(fd)
    assert startup_cache.use(_db(tmp_path), NOW) == "rebuilt"
    assert numbers._FR_TABLE is not None and path.exists()


def test_a_cache_left_by_another_user_is_rebuilt(tmp_path):
    """Root tried a call by hand: the cache and its lock belong to root. The
    Asterisk user still rebuilds a stale cache (the lock is opened
    read-only, the cache replaced by a rename the directory allows) instead
    of paying for the calendars and phonenumbers at every call. Played by
    root without the capability that lets it ignore permission bits, the
    files given to another user."""
    startup_cache.use(_db(tmp_path), NOW)
    path = Path(_db(tmp_path) + startup_cache.SUFFIX)
    for f in (path, Path(f"{path}.lock")):
        os.chown(f, 65534, 65534)
        f.chmod(0o644)
    probe = ("import sys\n"
             "from datetime import datetime\n"
             "from zoneinfo import ZoneInfo\n"
             "from sentinelle.pbx import startup_cache\n"
             "paris = ZoneInfo('Europe/Paris')\n"
             "print(startup_cache.use(sys.argv[1], datetime(2027, 1, 4, 10, tzinfo=paris)))\n")
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                        sys.executable, "-c", probe, _db(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "rebuilt", r.stderr
    assert path.stat().st_uid == 0


def test_the_holidays_only_cache_of_earlier_versions_is_removed(tmp_path):
    old = Path(_db(tmp_path) + startup_cache.OLD_SUFFIX)
    old.write_text("{}")
    assert startup_cache.use(_db(tmp_path), NOW) == "rebuilt"
    assert not old.exists()


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


# -- the classic path and the FastAGI route agree (issue #15) --------------------

# Recorded requests: (headers, channel variables Asterisk would return to GET
# VARIABLE). They cover an ALLOW with an attempt, blocks with reasons and a
# retry_at, a masked caller ID, a campaign read from the channel, an unknown
# campaign, numbers the guard refuses, and repeats that exhaust the attempts.
RECORDED: list[tuple[dict[str, str], dict[str, str]]] = [
    (headers_for("0612345678"), {}),
    (headers_for("0612345678"), {}),
    (headers_for("+33 6 12 34 56 78", callerid="0612000000"), {}),
    (headers_for("0612345678", callingpres=32), {}),
    (headers_for("0612345678", campaign=None), {"SENTINELLE_CAMPAIGN": "promo"}),
    (headers_for("0612345678", campaign=""), {}),
    (headers_for("0698765432", campaign="nosuch"), {}),
    (headers_for("06ABC"), {}),
    (headers_for("0262123456"), {}),
    (headers_for("0590871234"), {}),
    (headers_for("+4915112345678"), {}),
    (headers_for("112"), {}),
    (headers_for("0612345678", campaign="manual", callerid="anonymous"), {}),
    (headers_for("0699999999", agi_channel='Local/x"\nSET VARIABLE'), {}),
    *[(headers_for("0611111111"), {}) for _ in range(5)],
]


def _recorded_session(headers: dict[str, str], variables: dict[str, str]) -> bytes:
    """What Asterisk writes to a classic AGI: the headers, then the answer
    to each command, in order (a GET VARIABLE first when argument 2 is
    empty)."""
    h = {k: v for k, v in headers.items() if k != "agi_network_script"}
    text = "".join(f"{k}: {v}\n" for k, v in h.items()) + "\n"
    if not headers.get("agi_arg_2", "").strip():
        value = variables.get("SENTINELLE_CAMPAIGN")
        text += f"200 result=1 ({value})\n" if value is not None else "200 result=0\n"
    return (text + "200 result=1\n" * 5).encode()


def _set_variables(output: bytes) -> list[tuple[str, str]]:
    out = []
    for line in output.decode().splitlines():
        m = re.fullmatch(r'SET VARIABLE (\S+) "(.*)"', line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _records(path: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in insertion order; `decisions.source` is
    left out, as it names the path on purpose, and `refusals.recorded_at`,
    the store's own clock when the row was written."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for table in tables:
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")
                    if (table, r[1]) not in (("decisions", "source"),
                                             ("refusals", "recorded_at"))]
            # names read from the test store's own schema, not input
            out[table] = db.execute(f"SELECT {', '.join(cols)} FROM {table} "  # noqa: S608
                                    "ORDER BY rowid").fetchall()
        return out
    finally:
        db.close()


def _fastagi(config: Config, requests: list[tuple[dict[str, str], dict[str, str]]]):
    async def scenario():
        sc = dataclasses.replace(config.server, listen="127.0.0.1:0")
        srv = FastAgiServer(dataclasses.replace(config, server=sc), frozen(NOW))
        _, port = await srv.start()
        try:
            return [await call(port, h, variables=v) for h, v in requests]
        finally:
            await srv.stop()

    return asyncio.run(scenario())


def _classic(config: Config, requests, tmp_path: Path) -> list[list[tuple[str, str]]]:
    """Each request through `classic.run`, stdin and stdout regular files."""
    out = []
    for i, (headers, variables) in enumerate(requests):
        src, dst = tmp_path / f"in{i}", tmp_path / f"out{i}"
        src.write_bytes(_recorded_session(headers, variables))
        with src.open("rb") as stdin, dst.open("wb") as stdout:
            assert classic.run(config, frozen(NOW), stdin, stdout) == classic.EXIT_OK
        out.append(_set_variables(dst.read_bytes()))
    return out


def _two_stores(config: Config, tmp_path: Path) -> tuple[Config, Config]:
    """Configs for two byte-identical stores holding two consents."""
    first = tmp_path / "fast.db"
    s = Store(str(first), create=True)  # sqlite_only: the test copies the file
    for e164 in ("+33612345678", "+33611111111"):
        s.add_consent("acme", e164,
                      ConsentProof(source="web", given_at=datetime(2026, 11, 1, tzinfo=PARIS)))
    s.close()
    shutil.copy(first, tmp_path / "classic.db")
    return tuple(dataclasses.replace(config, store=dataclasses.replace(config.store, path=str(p)))
                 for p in (first, tmp_path / "classic.db"))  # type: ignore[return-value]


@pytest.mark.sqlite_only
def test_classic_and_fastagi_give_the_same_variables_and_records(config, tmp_path):
    """The same recorded requests, in the same order, on two copies of one
    store: the classic path sets the same variables, in the same order, as
    the FastAGI route, and leaves the same rows (attempts, decisions with
    their inputs) behind; only `decisions.source` differs."""
    fast_cfg, classic_cfg = _two_stores(config, tmp_path)
    fast = _fastagi(fast_cfg, RECORDED)
    by_classic = _classic(classic_cfg, RECORDED, tmp_path)
    fast_vars = [[(m.group(1), m.group(2)) for c in r.commands
                  if (m := re.fullmatch(r'SET VARIABLE (\S+) "(.*)"', c))] for r in fast]
    assert by_classic == fast_vars
    verdicts = [dict(v).get("SENTINELLE_VERDICT") for v in by_classic]
    assert "ALLOW" in verdicts and "BLOCK" in verdicts  # the corpus exercises both
    assert all(v[-1][0] == "SENTINELLE_VERDICT" for v in by_classic)
    fast_rows, classic_rows = _records(str(tmp_path / "fast.db")), _records(str(tmp_path / "classic.db"))
    assert classic_rows == fast_rows
    assert len(classic_rows["decisions"]) == len(RECORDED)
    sources = {r[0] for r in sqlite3.connect(tmp_path / "classic.db").execute(
        "SELECT source FROM decisions")}
    assert sources == {"agi"}


# -- the result lines: one parser for both paths -----------------------------------

RESULT_LINES = ["200 result=1", "200 result=0", "200 result=1 (promo)", "200 result=1 (a b (c))",
                "200 result=-1", "200 result=1 (hangup)", "200 result= (timeout)", "200",
                "100 result=0 Trying...", "510 Invalid or unknown command", "511 Command Not Permitted",
                "520 End of proper usage.", "HANGUP", "200 result=1 endpos=1234", "999 what",
                "200 result=2 (x) extra=3 (y)"]


@pytest.mark.parametrize("line", RESULT_LINES)
def test_result_lines_read_as_panoramisk_read_them(line):
    """`wire.parse_result` replaced panoramisk's parse_agi_result on both
    paths: the same result, and an AgiError exactly where panoramisk
    reported an error (None for its intermediate 100)."""
    from panoramisk.utils import parse_agi_result

    theirs = parse_agi_result(line)
    if "error" in theirs:
        with pytest.raises(wire.AgiError, match=theirs["error"]):
            wire.parse_result(line, "SET VARIABLE")
    elif theirs["status_code"] == 100:
        assert wire.parse_result(line, "SET VARIABLE") is None
    else:
        assert wire.parse_result(line, "SET VARIABLE") == theirs


@pytest.mark.parametrize("line", ["", "OK", "2000 result=1", "abc 200"])
def test_unparsable_result_lines_are_errors(line):
    with pytest.raises(wire.AgiError, match="unparsable"):
        wire.parse_result(line, "SET VARIABLE")


# -- fail closed on the classic path ---------------------------------------------

def _run_classic(config: Config, session: bytes, tmp_path: Path, name: str = "s"
                 ) -> tuple[classic.Stats, list[tuple[str, str]]]:
    src, dst = tmp_path / f"{name}.in", tmp_path / f"{name}.out"
    src.write_bytes(session)
    stats = classic.Stats()
    with src.open("rb") as stdin, dst.open("wb") as stdout:
        assert classic.run(config, frozen(NOW), stdin, stdout, stats) == classic.EXIT_OK
    return stats, _set_variables(dst.read_bytes())


@pytest.mark.sqlite_only
def test_missing_store_blocks_with_sys_store(config, tmp_path):
    cfg = dataclasses.replace(config, store=dataclasses.replace(config.store,
                                                                path=str(tmp_path / "none.db")))
    _, variables = _run_classic(cfg, _recorded_session(headers_for("0612345678"), {}), tmp_path)
    assert dict(variables)["SENTINELLE_RULES"] == "SYS-STORE"
    assert variables[-1] == ("SENTINELLE_VERDICT", "BLOCK")
    assert not (tmp_path / "none.db").exists()


@pytest.mark.sqlite_only
def test_locked_store_blocks_with_sys_store_and_records_nothing(config, store, tmp_path):
    """Another process holds the write lock past the busy timeout: BLOCK
    SYS-STORE, as the FastAGI route answers, and no attempt is written."""
    _consent(store)
    cfg = dataclasses.replace(config, store=dataclasses.replace(config.store, busy_timeout_ms=0))
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        _, variables = _run_classic(cfg, _recorded_session(headers_for("0612345678"), {}),
                                    tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert dict(variables)["SENTINELLE_RULES"] == "SYS-STORE"
    assert variables[-1] == ("SENTINELLE_VERDICT", "BLOCK")
    assert store.count("attempts") == 0


def _consent(store: Store) -> None:
    store.add_consent("acme", "+33612345678",
                      ConsentProof(source="web", given_at=datetime(2026, 11, 1, tzinfo=PARIS)))


@pytest.mark.parametrize("session, why", [
    (b"agi_arg_1: 0612345678\nagi_arg_2: promo\n", "closed inside the AGI headers"),
    (b"agi_x: " + b"y" * 5000 + b"\n\n", "line too long"),
    (b"".join(b"agi_h%d: %s\n" % (i, b"v" * 200) for i in range(100)) + b"\n", "too large"),
    (b"".join(b"agi_h%d: v\n" % i for i in range(200)) + b"\n", "too many AGI header lines"),
])
def test_malformed_headers_say_why_and_set_nothing(session, why, config, store, tmp_path, capsys):
    """No verdict reaches the channel (the dialplan blocks), nothing is
    recorded, and stderr (which Asterisk logs) says what was wrong."""
    from sentinelle import logs

    logs.setup("WARNING")
    stats, variables = _run_classic(config, session, tmp_path)
    assert variables == [] and stats.decisions == {"allow": 0, "block": 0}
    assert why in capsys.readouterr().err
    assert store.count("decisions") == 0


@pytest.mark.parametrize("answers, why", [
    (b"", "connection closed waiting for the result of SET VARIABLE"),
    (b"HANGUP\n", "AGIResultHangup for SET VARIABLE"),
    (b"garbage\n", "unparsable AGI result"),
    (b"520-Invalid command syntax.\nusage\n520 End of proper usage.\n", "usage error"),
    (b"200 result=-1\n", "AGIAppError"),
])
def test_bad_answers_end_the_dialogue_before_the_verdict(answers, why, config, store, tmp_path,
                                                         capsys):
    """The decision is taken (and logged) before the answers; a broken answer
    stops the dialogue there, so no VERDICT is sent after it."""
    from sentinelle import logs

    logs.setup("WARNING")
    h = {k: v for k, v in headers_for("0612345678").items() if k != "agi_network_script"}
    session = ("".join(f"{k}: {v}\n" for k, v in h.items()) + "\n").encode() + answers
    stats, variables = _run_classic(config, session, tmp_path)
    assert stats.decisions == {"allow": 0, "block": 1}
    assert variables and variables[-1][0] != "SENTINELLE_VERDICT"
    assert why in capsys.readouterr().err


def test_a_silent_pipe_meets_the_header_deadline(config, store, tmp_path):
    """Asterisk's side of the pipe open but silent: the header deadline
    ends the session (no verdict, nothing recorded) instead of hanging."""
    cfg = dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                 header_timeout_s=0.2))
    r, w = os.pipe()
    out = tmp_path / "out"
    stats = classic.Stats()
    try:
        with os.fdopen(r, "rb") as stdin, out.open("wb") as stdout:
            assert classic.run(cfg, frozen(NOW), stdin, stdout, stats) == classic.EXIT_OK
    finally:
        os.close(w)
    assert stats.bad_headers == 1 and out.read_bytes() == b""
    assert store.count("decisions") == 0


def test_an_unanswered_command_on_a_pipe_is_a_lost_dialogue(config, store, tmp_path, capsys,
                                                             monkeypatch):
    """The headers come, then Asterisk never answers the first SET VARIABLE:
    the answer deadline drops the session rather than wait for ever."""
    from sentinelle import logs

    logs.setup("WARNING")
    cfg = dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                 request_timeout_s=0.2))
    h = {k: v for k, v in headers_for("0612345678").items() if k != "agi_network_script"}
    r, w = os.pipe()
    os.write(w, ("".join(f"{k}: {v}\n" for k, v in h.items()) + "\n").encode())
    monkeypatch.setattr(classic, "ANSWER_MIN_S", 0.2)
    try:
        with os.fdopen(r, "rb") as stdin, (tmp_path / "out").open("wb") as stdout:
            assert classic.run(cfg, frozen(NOW), stdin, stdout) == classic.EXIT_OK
    finally:
        os.close(w)
    assert "no answer to SET VARIABLE before the deadline" in capsys.readouterr().err
    assert (tmp_path / "out").read_text().count("SET VARIABLE") == 1


# -- the disposition and outcome routes on the classic path ---------------------------

def _routed(number_or_code: str, route: str, arg_2: str | None = None, **fields: str
            ) -> dict[str, str]:
    """Headers of `AGI(<dir>/<route>,...)`: the FastAGI test helper's, with
    the route in the script's name as a classic AGI gets it."""
    headers = headers_for(number_or_code, campaign=arg_2, script=route)
    for n, (key, value) in enumerate(fields.items(), start=2):
        headers[f"agi_arg_{n}"] = f"{key}={value}"
    return headers


ROUTED = [
    (headers_for("0612345678"), {}),  # ALLOW: attempt 1
    (headers_for("0611111111"), {}),  # ALLOW: attempt 2
    (_routed("refused", "disposition", "1"), {}),
    (_routed("refused", "disposition", "1"), {}),  # keyed twice: one refusal
    (_routed("callback", "disposition", "2"), {}),
    (_routed("refused", "disposition", "x"), {}),  # no attempt id: ERROR
    (_routed("1", "outcome", checked="1000.250", current="1", dialstatus="ANSWER",
             leg_cause="16", cause="16", answered_ms="5000", dialled_ms="9000",
             ended="1012.750"), {}),
    (_routed("2", "outcome", checked="1000.250", current="2", dialstatus="BUSY",
             leg_cause="17", cause="17", answered_ms="", dialled_ms="2000",
             ended="1002.500"), {}),
    (_routed("999", "outcome", checked="1", current="999", dialstatus="ANSWER"), {}),
]


def _classic_session(headers: dict[str, str]) -> bytes:
    """As Asterisk starts `<dir>/<route>`: agi_request is the script's path."""
    h = {k: v for k, v in headers.items() if k not in ("agi_network", "agi_network_script")}
    h["agi_request"] = f"/opt/sentinelle/agi/{headers['agi_network_script']}"
    return ("".join(f"{k}: {v}\n" for k, v in h.items()) + "\n" + "200 result=1\n" * 5).encode()


@pytest.mark.sqlite_only
def test_classic_disposition_and_outcome_routes_answer_and_record_as_fastagi(config, tmp_path):
    """With the shipped subroutines and SENTINELLE_AGI a directory, Asterisk
    starts `<dir>/disposition` and `<dir>/outcome` too: the classic path
    answers them as the FastAGI routes do and leaves the same rows, so a PBX
    without the service records refusals and outcomes as well. Sources name
    the path (`agi`, `fastagi`)."""
    fast_cfg, classic_cfg = _two_stores(config, tmp_path)
    fast = _fastagi(fast_cfg, ROUTED)
    fast_vars = [[(m.group(1), m.group(2)) for c in r.commands
                  if (m := re.fullmatch(r'SET VARIABLE (\S+) "(.*)"', c))] for r in fast]
    by_classic = []
    for i, (headers, _) in enumerate(ROUTED):
        _, variables = _run_classic(classic_cfg, _classic_session(headers), tmp_path, f"r{i}")
        by_classic.append(variables)
    assert by_classic == fast_vars
    status = [dict(v).get("SENTINELLE_DISPOSITION") or dict(v).get("SENTINELLE_OUTCOME")
              for v in by_classic[2:]]
    assert status == ["OK", "OK", "OK", "ERROR", "answered", "busy", "ERROR"]

    def same_path(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
        return {t: [tuple(c.replace("fastagi", "agi") if isinstance(c, str) else c for c in r)
                    for r in rs] for t, rs in rows.items()}

    classic_rows = _records(str(tmp_path / "classic.db"))
    assert classic_rows == same_path(_records(str(tmp_path / "fast.db")))
    assert len(classic_rows["refusals"]) == 1
    db = sqlite3.connect(tmp_path / "classic.db")
    try:
        assert db.execute("SELECT source FROM refusals").fetchone()[0].startswith("agi ")
        assert db.execute("SELECT outcome FROM attempts ORDER BY id").fetchall() == [
            ("answered",), ("busy",)]
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_a_check_loads_neither_the_disposition_nor_the_outcome_code(config_path, store):
    """A check is the call's post-dial delay: the two other routes' code is
    loaded only by the processes that run them."""
    probe = ("import sys\n"
             "from sentinelle.pbx.stdio import one_call as main\n"
             "rc = main()\n"
             "print('LOADED', file=sys.stderr, *[sorted(m for m in sys.modules if m in "
             "('sentinelle.pbx.dispositions', 'sentinelle.pbx.outcomes', 'sentinelle.facts'))])\n"
             "sys.exit(rc)\n")
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", probe], input=_session(), capture_output=True,
                       text=True, timeout=60, env=env, cwd="/")
    assert r.returncode == 0, r.stderr
    assert 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"' in r.stdout
    assert "LOADED []" in r.stderr


@pytest.mark.sqlite_only
def test_an_outcome_loads_neither_the_rules_nor_phonenumbers(config_path, store):
    """The hangup handler starts an outcome process for every call: it
    records what became of the call, and has no use for the rules, the
    guard or phonenumbers (the campaigns' caller IDs are read off the
    start-up cache, which the first call built)."""
    probe = ("import sys\n"
             "from sentinelle.pbx.stdio import one_call\n"
             "rc = one_call()\n"
             "print('LOADED', file=sys.stderr, *[sorted(m for m in sys.modules if m in "
             "('sentinelle.guard', 'sentinelle.core.rules', 'sentinelle.pbx.verdict', "
             "'phonenumbers', 'holidays'))])\n"
             "sys.exit(rc)\n")
    env = {"SENTINELLE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin"}
    outcome = dict(headers_for("0612345678"), agi_network_script="outcome", agi_arg_1="nosuch")
    for session, seen in ((_session(), None), (_classic_session(outcome).decode(), "LOADED []")):
        r = subprocess.run([sys.executable, "-c", probe], input=session, capture_output=True,
                           text=True, timeout=60, env=env, cwd="/")
        assert r.returncode == 0, r.stderr
        if seen:
            assert 'SET VARIABLE SENTINELLE_OUTCOME "ERROR"' in r.stdout
            assert seen in r.stderr
