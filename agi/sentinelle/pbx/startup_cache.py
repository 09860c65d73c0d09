"""What a classic AGI process would otherwise compute at every call, in a
small file beside the store: the holiday calendars (R-21) and the validity
of +33 numbers (R-01).

A per-call process would otherwise import `holidays` (~50 ms) and build its
calendars, and import phonenumbers (~20 ms) to tell an allocated French
range from a typo, for data that changes with a package upgrade or once a
year. The file holds every subdivision R-21 consults
(`calendar.SUBDIVISIONS`) for last year, this year and next (a callee's
local date and a retry_at 30 days ahead can fall in either), and
`numbers.fr_validity_table()` (a bit per 5-digit prefix). It is trusted
only when all of this holds, else ignored and rebuilt from the packages:

- same sentinelle version, same installed `holidays` and `phonenumbers`
  packages (each package file's path, size and mtime: an upgrade rewrites
  it), same language and subdivisions, and the years around the current one;
- its CRC over the calendars and the table matches, every entry is a date
  of its year with a name, and the table has the size its depth calls for:
  a torn or edited file never decides a call.

Built by the first call after an install, an upgrade or New Year (about a
second: the table is 90,000 phonenumbers checks); never inside a call's
deadline, which starts once its headers are read.

Writing is best effort (a temp file renamed into place, so a reader sees the
old file or the new one); a store directory the process may not write to
just means computing the calendars, as before.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import zlib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sentinelle import __version__, logs
from sentinelle.core import calendar, numbers
from sentinelle.core.model import PARIS

log = logging.getLogger("sentinelle.agi")

FORMAT = 2
SUFFIX = ".startup.json"
OLD_SUFFIX = ".holidays.json"  # the earlier, holidays-only cache: removed on rebuild

Calendars = dict[tuple[str | None, int], dict[date, str]]
Table = tuple[int, bytes] | None  # numbers.fr_validity_table()


def cache_path(store_path: str) -> Path | None:
    """The cache file of a store; None for an in-memory store."""
    return None if store_path == ":memory:" else Path(store_path + SUFFIX)


def years_around(now: datetime) -> list[int]:
    year = now.astimezone(PARIS).year
    return [year - 1, year, year + 1]


def package_identity(name: str) -> str:
    """Which version of a package is installed, without importing it: the
    path, size and mtime of its package file (a pip upgrade rewrites it)."""
    from importlib.util import find_spec

    spec = find_spec(name)
    origin = spec.origin if spec is not None else None
    if origin is None:
        return "missing"
    st = os.stat(origin)
    return f"{origin}:{st.st_size}:{st.st_mtime_ns}"


def _key(subdiv: str | None) -> str:
    return subdiv or "-"


def _encode(calendars: Calendars) -> dict[str, dict[str, str]]:
    return {f"{_key(s)}|{y}": {d.isoformat(): n for d, n in sorted(days.items())}
            for (s, y), days in sorted(calendars.items(), key=lambda kv: (_key(kv[0][0]), kv[0][1]))}


def _encode_table(table: Table) -> dict[str, Any] | None:
    if table is None:
        return None
    depth, bits = table
    return {"depth": depth, "bits": base64.b64encode(bits).decode("ascii")}


def _decode_table(raw: object) -> Table:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("depth"), int):
        raise ValueError("bad number table")
    try:
        bits = base64.b64decode(str(raw.get("bits")), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad number table") from None
    depth = raw["depth"]
    numbers.check_fr_table(depth, bits)
    return depth, bits


def _crc(body: dict[str, dict[str, str]], table: object = None) -> int:
    return zlib.crc32(json.dumps([body, table], sort_keys=True, ensure_ascii=True).encode())


def _header(years: list[int]) -> dict[str, Any]:
    return {"format": FORMAT, "sentinelle": __version__,
            "holidays": package_identity("holidays"), "phonenumbers": package_identity("phonenumbers"),
            "language": calendar._LANGUAGE, "subdivisions": [_key(s) for s in calendar.SUBDIVISIONS],
            "years": years}


def build(years: list[int]) -> Calendars:
    return {(s, y): calendar.compute_days(s, y) for s in calendar.SUBDIVISIONS for y in years}


def load(path: Path, years: list[int]) -> tuple[Calendars, Table]:
    """The calendars and number table in `path`; ValueError saying why they
    cannot be trusted."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not an object")
    body = data.get("calendars")
    for key, want in _header(years).items():
        if data.get(key) != want:
            raise ValueError(f"{key} changed ({data.get(key)!r} -> {want!r})")
    if not isinstance(body, dict) or data.get("crc") != _crc(body, data.get("numbers")):
        raise ValueError("checksum mismatch")
    table = _decode_table(data.get("numbers"))
    by_key = {_key(s): s for s in calendar.SUBDIVISIONS}
    out: Calendars = {}
    for name, days in body.items():
        subdiv_key, _, year_text = str(name).partition("|")
        if subdiv_key not in by_key or not year_text.isdigit() or not isinstance(days, dict):
            raise ValueError(f"bad entry {name!r}")
        year = int(year_text)
        parsed = {date.fromisoformat(d): n for d, n in days.items() if isinstance(n, str) and n}
        if len(parsed) != len(days) or any(d.year != year for d in parsed):
            raise ValueError(f"bad days in {name!r}")
        out[(by_key[subdiv_key], year)] = parsed
    if set(out) != {(s, y) for s in calendar.SUBDIVISIONS for y in years}:
        raise ValueError("calendars missing")
    return out, table


def save(path: Path, years: list[int], calendars: Calendars, table: Table) -> None:
    """Write atomically (temp file, fsync, rename); OSError if it cannot."""
    body = _encode(calendars)
    encoded = _encode_table(table)
    data = json.dumps({**_header(years), "crc": _crc(body, encoded), "calendars": body,
                       "numbers": encoded}).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _preload(calendars: Calendars, table: Table) -> None:
    calendar.preload(calendars)
    if table is not None:
        numbers.preload_fr_validity(*table)


def use(store_path: str, now: datetime) -> str:
    """Preload the calendars and the number table from the cache beside the
    store, rebuilding it when it is missing, stale or corrupt. Returns what
    happened: "hit", "rebuilt", "computed" (the calendars computed for this
    call alone: the cache could not be written, or another process is
    rebuilding it), "off" (an in-memory store)."""
    path = cache_path(store_path)
    if path is None:
        return "off"
    years = years_around(now)
    try:
        _preload(*load(path, years))
        return "hit"
    except ValueError as exc:
        if path.exists():
            logs.event(log, "start-up cache ignored", logging.INFO, path=str(path), why=str(exc))
    # The table costs ~0.8 s of CPU: worth it once, never at every call of
    # a process that cannot keep it, nor in each of the calls that start
    # together after an upgrade (one builds; the others compute their
    # calendars and ask phonenumbers per number, as before).
    with _builder(path) as building:
        calendars = build(years)
        table = numbers.fr_validity_table() if building else None
        _preload(calendars, table)
        if not building:
            return "computed"
        try:
            save(path, years, calendars, table)
        except OSError as exc:
            logs.event(log, "start-up cache not written", logging.INFO, path=str(path),
                       error=str(exc))
            return "computed"
    with contextlib.suppress(OSError):
        Path(store_path + OLD_SUFFIX).unlink(missing_ok=True)
    return "rebuilt"


@contextlib.contextmanager
def _builder(path: Path) -> Iterator[bool]:
    """True for the one process that may rebuild the cache now: it holds an
    exclusive lock on `<cache>.lock` (taken without waiting) in a
    directory it can write to. The lock file is opened read-only: one left
    by another user (root trying a call by hand) still serves, and the
    cache itself is replaced by a rename, which the directory allows."""
    import fcntl

    if not os.access(path.parent, os.W_OK):
        yield False
        return
    try:
        fd = os.open(f"{path}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock; the empty file stays for the next rebuild
