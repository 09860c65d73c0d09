"""The holiday calendars (R-21) in a small file beside the store, for the
classic AGI.

A per-call process would otherwise import `holidays` (~50 ms) and build its
calendars for every call, for data that changes once a year. The file holds
every subdivision R-21 consults (`calendar.SUBDIVISIONS`) for last year, this
year and next (a callee's local date and a retry_at 30 days ahead can fall
in either). It is trusted only when all of this holds, else ignored and
rebuilt from `holidays`:

- same sentinelle version, same installed `holidays` package (its file's
  path, size and mtime: an upgrade rewrites it), same language and
  subdivisions, and the years around the current one;
- its CRC over the calendars matches and every entry is a date of its year
  with a name: a torn or edited file never decides a call.

Writing is best effort (a temp file renamed into place, so a reader sees the
old file or the new one); a store directory the process may not write to
just means computing the calendars, as before.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sentinelle import __version__, logs
from sentinelle.core import calendar
from sentinelle.core.model import PARIS

log = logging.getLogger("sentinelle.agi")

FORMAT = 1
SUFFIX = ".holidays.json"

Calendars = dict[tuple[str | None, int], dict[date, str]]


def cache_path(store_path: str) -> Path | None:
    """The cache file of a store; None for an in-memory store."""
    return None if store_path == ":memory:" else Path(store_path + SUFFIX)


def years_around(now: datetime) -> list[int]:
    year = now.astimezone(PARIS).year
    return [year - 1, year, year + 1]


def holidays_identity() -> str:
    """Which `holidays` is installed, without importing it: the path, size
    and mtime of its package file (a pip upgrade rewrites it)."""
    from importlib.util import find_spec

    spec = find_spec("holidays")
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


def _crc(body: dict[str, dict[str, str]]) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, ensure_ascii=True).encode())


def _header(years: list[int]) -> dict[str, Any]:
    return {"format": FORMAT, "sentinelle": __version__, "holidays": holidays_identity(),
            "language": calendar._LANGUAGE, "subdivisions": [_key(s) for s in calendar.SUBDIVISIONS],
            "years": years}


def build(years: list[int]) -> Calendars:
    return {(s, y): calendar.compute_days(s, y) for s in calendar.SUBDIVISIONS for y in years}


def load(path: Path, years: list[int]) -> Calendars:
    """The calendars in `path`; ValueError saying why it cannot be trusted."""
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
    if not isinstance(body, dict) or data.get("crc") != _crc(body):
        raise ValueError("checksum mismatch")
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
    return out


def save(path: Path, years: list[int], calendars: Calendars) -> None:
    """Write atomically (temp file, fsync, rename); OSError if it cannot."""
    body = _encode(calendars)
    data = json.dumps({**_header(years), "crc": _crc(body), "calendars": body}).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def use(store_path: str, now: datetime) -> str:
    """Preload the calendars from the cache beside the store, rebuilding it
    when it is missing, stale or corrupt. Returns what happened ("hit",
    "rebuilt", "computed" when it could not be written, "off")."""
    path = cache_path(store_path)
    if path is None:
        return "off"
    years = years_around(now)
    try:
        calendar.preload(load(path, years))
        return "hit"
    except ValueError as exc:
        if path.exists():
            logs.event(log, "holiday cache ignored", logging.INFO, path=str(path), why=str(exc))
    calendars = build(years)
    calendar.preload(calendars)
    try:
        save(path, years, calendars)
    except OSError as exc:
        logs.event(log, "holiday cache not written", logging.INFO, path=str(path), error=str(exc))
        return "computed"
    return "rebuilt"
