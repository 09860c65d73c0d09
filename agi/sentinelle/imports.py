"""Bulk imports: Bloctel snapshots and CSV files of consents, contracts and
departments.

All or nothing: every line is validated before anything becomes visible. A
bad line aborts the whole import with its line number (or, with
`skip_invalid`, is reported and skipped). Bloctel files reach ten million
lines, so they are streamed: a fast path handles the plain 10-digit national
form that Bloctel returns, anything else goes through `numbers.parse`.

A file that is not a list at all is refused whatever `skip_invalid` says:
empty, without a single valid row, binary (NUL bytes), not UTF-8, or markup
(an HTML error page saved instead of the answer). For Bloctel this matters
most: the import REPLACES the opposition list, so an empty or truncated one
would make every opposed number callable (R-10). Hence also the shrink guard:
a snapshot under half the current one (same professional and kind) needs
`allow_shrink`.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sentinelle.config import Config, ConfigError
from sentinelle.core.clock import parse_instant, refuse_future, system_clock
from sentinelle.core.model import BloctelKind
from sentinelle.core.numbers import _OVERSEAS as _PLAN_OVERSEAS  # the one table of overseas prefixes
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.store import BLOCTEL_BATCH, Backend, ConsentProof, SnapshotShrinks, e164_int

# A rejected import lists this many invalid lines, then how many more: every
# problem of a file in one run, without printing ten million lines.
MAX_REPORTED = 100
# A new Bloctel snapshot under this fraction of the current one is refused
# without `allow_shrink`: a truncated download looks exactly like that.
SHRINK_FLOOR = 0.5
# "<html", "<?xml", "<!DOCTYPE", "</p>": a line no list of numbers starts with.
_MARKUP = re.compile(r"<(?:[!?/]|[A-Za-z][\w:-]*(?:[\s/>]|$))")
_NUL_MESSAGE = "NUL byte: not a text file (binary, or UTF-16?)"
_MARKUP_MESSAGE = "HTML/XML markup (an error page?), not a list of numbers"
_NUMBER_COLUMNS = ("number", "numero", "numéro", "phone", "telephone", "téléphone", "e164", "msisdn")


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(ValueError):
    """Nothing was imported. `errors` name lines; `reason` is for what is wrong
    with the file as a whole (no line to point at)."""

    def __init__(self, what: str, errors: list[LineError], reason: str = "",
                 total: int | None = None) -> None:
        self.errors = errors
        self.total = len(errors) if total is None else total
        if reason:
            super().__init__(f"{what}: {reason}; nothing imported")
            return
        shown = "\n  ".join(str(e) for e in errors[:MAX_REPORTED])
        hidden = self.total - min(len(errors), MAX_REPORTED)
        more = f"\n  ... and {hidden} more invalid line(s)" if hidden > 0 else ""
        super().__init__(f"{what}: {self.total} invalid line(s), nothing imported\n  {shown}{more}")


@dataclass(slots=True)
class ImportResult:
    count: int
    skipped: list[LineError] = field(default_factory=list)  # the first MAX_REPORTED
    invalid: int = 0  # every invalid line, reported or not

    def invalid_line(self, error: LineError) -> None:
        self.invalid += 1
        if len(self.skipped) < MAX_REPORTED:
            self.skipped.append(error)


Progress = Callable[[int], None]  # advance by N bytes


def bloctel_number(text: str) -> int:
    """One Bloctel line -> E.164 digits as an int; raises NumberError."""
    if len(text) == 10 and text[0] == "0" and text.isascii() and text.isdigit() \
            and text[1] != "0" and not text.startswith(_SLOW):
        return _OFFSETS.get(text[:4], _METRO) + int(text[1:])
    number = parse(text)
    if number.kind in (Kind.SHORT, Kind.FOREIGN):
        raise NumberError(text, f"{number.kind.value} numbers are not on Bloctel")
    return e164_int(number.e164)


def import_bloctel(
    store: Backend, professional: str, path: Path, snapshot_date: date, kind: str,
    *, skip_invalid: bool = False, progress: Progress | None = None, allow_shrink: bool = False,
) -> ImportResult:
    """Two phases. 1: read and validate the whole file (a bad line aborts here,
    before anything is written), keeping the numbers in sorted buckets of
    machine ints (~80 MB for 10 M). 2: load them in ascending order, one short
    transaction per BLOCTEL_BATCH, then switch snapshots atomically. A shrink
    under SHRINK_FLOOR (unless `allow_shrink`) is refused before phase 2 when
    the lines read already show it, else by the switch on the exact count."""
    if kind not in set(BloctelKind):
        raise ValueError(f"kind must be opposed or cleaned, got {kind!r}")
    result = ImportResult(0)
    buckets, others = _read_bloctel(path, result, skip_invalid, progress)
    if result.invalid and not skip_invalid:  # every invalid line of the file, in one run
        raise ImportRejected(str(path), result.skipped, total=result.invalid)
    read = len(others) + sum(map(len, buckets))  # duplicates included: an upper bound
    if not read:
        skipped = f" ({result.invalid} invalid line(s) skipped)" if result.invalid else ""
        raise ImportRejected(str(path), [], f"no valid number in the file{skipped}: an empty list "
                             "would replace the current one")
    if not allow_shrink:  # the obvious shrinks, before writing anything; commit checks exactly
        for snap in store.snapshots(professional):
            if snap.kind == kind and read < snap.count * SHRINK_FLOOR:
                exc = SnapshotShrinks(read, snap.count, snap.snapshot_date.isoformat())
                raise ImportRejected(str(path), [], _shrink_message(exc, professional, kind))
    sid = store.begin_snapshot(professional, snapshot_date, kind, str(path))
    try:
        for batch in _ascending(buckets, others, BLOCTEL_BATCH):
            store.load_snapshot(sid, batch)
        result.count = store.commit_snapshot(sid, 0.0 if allow_shrink else SHRINK_FLOOR)
    except SnapshotShrinks as exc:
        store.abort_snapshot(sid)
        raise ImportRejected(str(path), [], _shrink_message(exc, professional, kind)) from None
    except BaseException:
        store.abort_snapshot(sid)
        raise
    return result


def _shrink_message(exc: SnapshotShrinks, professional: str, kind: str) -> str:
    return (f"the new snapshot holds {exc.new} numbers or fewer, less than half of the current {kind} "
            f"snapshot of {professional} ({exc.current} numbers, dated {exc.current_date}): a "
            "truncated answer? If the list really shrank, import it again with --allow-shrink")


# The fast path: a plain 10-digit national line, read without decoding it.
# Overseas numbers with a 4-digit prefix are fast too (their E.164 is the
# country code + the 9 digits); 0508 (SPM) and the 0709x blocks go to
# `numbers.parse`, like anything else that is not the plain form.
_OFFSETS = {p: cc * 1_000_000_000 for p, (cc, _t, _k) in _PLAN_OVERSEAS.items()
            if len(p) == 4 and cc != 508}
_SLOW = tuple(sorted({p[:4] for p in _PLAN_OVERSEAS} - set(_OFFSETS)))  # 0508, 0709
_METRO = 33_000_000_000
_NOT_FAST = b"|".join(p[1:].encode() for p in _SLOW)
_FAST_LINE = re.compile(rb"0(?!" + _NOT_FAST + rb")[1-9][0-9]{8}\r?")
_FAST_CHUNK = re.compile(rb"(?:0(?!" + _NOT_FAST + rb")[1-9][0-9]{8}\r?\n)*")
_CHUNK = 1 << 20
# Fast-path numbers are kept as their 9 national digits (100_000_000..999_999_999)
# in arrays split by value, so sorting needs one small bucket in memory at a time.
_BUCKETS = 1024
_WIDTH = 900_000_000 // _BUCKETS + 1
_BOUNDS = [100_000_000 + k * _WIDTH for k in range(1, _BUCKETS)]


def _read_bloctel(path: Path, result: ImportResult, skip_invalid: bool,
                  progress: Progress | None) -> tuple[list[array[int]], list[int]]:
    buckets = [array("q") for _ in range(_BUCKETS)]
    others: list[int] = []  # slow-path numbers outside the +33 range
    lineno = 0
    tail = b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if lineno == 0 and b"\0" in chunk:  # binary: do not wait for a line end
                line = chunk[:chunk.index(b"\0")].count(b"\n") + 1
                raise ImportRejected(str(path), [LineError(line, _NUL_MESSAGE)])
            if chunk:
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:  # no line end yet
                    tail += chunk
                    if progress:
                        progress(len(chunk))
                    continue
                buf, tail = tail + chunk[:cut], chunk[cut:]
            else:
                buf, tail = (tail + b"\n" if tail else b""), b""
            if buf:
                if lineno == 0:  # BOM or header: the first line always takes the slow path
                    first, _, buf = buf.partition(b"\n")
                    lineno = 1
                    _slow_line(path, 1, first, result, skip_invalid, buckets, others)
                if _FAST_CHUNK.fullmatch(buf):  # the common case: no Python work per line
                    nums = list(map(int, buf.split()))
                else:
                    nums = _mixed_lines(path, lineno, buf, result, skip_invalid, buckets, others)
                lineno += buf.count(b"\n")
                _spread(nums, buckets)
            if progress:
                progress(len(chunk))
            if not chunk:
                return buckets, others


def _mixed_lines(path: Path, lineno: int, buf: bytes, result: ImportResult, skip_invalid: bool,
                 buckets: list[array[int]], others: list[int]) -> list[int]:
    fast = _FAST_LINE.fullmatch
    nums = []
    for i, raw in enumerate(buf.split(b"\n")[:-1], lineno + 1):
        if fast(raw):
            nums.append(int(raw))
        else:
            _slow_line(path, i, raw, result, skip_invalid, buckets, others)
    return nums


def _slow_line(path: Path, lineno: int, raw: bytes, result: ImportResult, skip_invalid: bool,
               buckets: list[array[int]], others: list[int]) -> None:
    try:
        text = _text_line(path, lineno, raw)
    except ImportRejected as exc:  # not a list at all: stop, naming the bad lines seen so far too
        if skip_invalid:
            raise
        raise ImportRejected(str(path), [*result.skipped, *exc.errors][:MAX_REPORTED],
                             total=result.invalid + len(exc.errors)) from None
    if not text or (lineno == 1 and not any(c.isdigit() for c in text)):
        return  # blank line or a header
    field0 = text.replace(";", ",").replace("\t", ",").split(",", 1)[0].strip()
    try:
        number = bloctel_number(field0)
    except NumberError as exc:
        result.invalid_line(LineError(lineno, exc.why + f" ({field0[:40]!r})"))
        return
    nsn = number - _METRO
    if 100_000_000 <= nsn <= 999_999_999 and nsn // 1_000_000 not in _OVERSEAS_NSN:
        buckets[bisect_right(_BOUNDS, nsn)].append(nsn)  # "+33 6 12..." joins the fast ones
    else:
        others.append(number)


def _text_line(path: Path, lineno: int, raw: bytes) -> str:
    """A line of a text list, or the whole file is refused: a NUL byte, bytes
    that are not UTF-8 or markup say it is not a list, whatever `skip_invalid`
    says (skipping its lines would import what is left of a wrong file)."""
    if b"\0" in raw:
        raise ImportRejected(str(path), [LineError(lineno, _NUL_MESSAGE)])
    try:
        text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ImportRejected(str(path), [LineError(lineno, _not_utf8(raw, exc))]) from None
    if _MARKUP.match(text):
        raise ImportRejected(str(path), [LineError(lineno, _MARKUP_MESSAGE)])
    return text


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    return (f"not UTF-8 (byte 0x{data[exc.start]:02x}): not a text file as expected, save it as "
            "UTF-8")


def _spread(nums: list[int], buckets: list[array[int]]) -> None:
    nums.sort()
    lo = 0
    for k, bound in enumerate(_BOUNDS):
        hi = bisect_left(nums, bound, lo)
        if hi > lo:
            buckets[k].extend(nums[lo:hi])
            lo = hi
    buckets[-1].extend(nums[lo:])


_OVERSEAS_NSN = {int(p[1:]): off for p, off in _OFFSETS.items()}  # 692 -> 262_000_000_000
_OVERSEAS_RANGES = sorted((n * 1_000_000, off) for n, off in _OVERSEAS_NSN.items())


def _ascending(buckets: list[array[int]], others: list[int], size: int) -> Iterator[list[int]]:
    """Distinct E.164 ints in batches, ascending except for the few slow-path
    numbers outside +33 (INSERT OR IGNORE keeps any order correct)."""
    out: list[int] = []
    for k in range(len(buckets)):
        values = sorted(set(buckets[k]))
        buckets[k] = array("q")  # free as we go
        for lo, offset in _OVERSEAS_RANGES:  # overseas 9-digit ranges are contiguous
            i = bisect_left(values, lo)
            j = bisect_left(values, lo + 1_000_000, i)
            if i < j:
                others.extend(offset + v for v in values[i:j])
                del values[i:j]
        out.extend(_METRO + v for v in values)
        while len(out) >= size:  # never more than `size` rows per write transaction
            yield out[:size]
            del out[:size]
    rest = sorted(set(others))
    others.clear()
    out.extend(rest)
    for start in range(0, len(out), size):
        yield out[start:start + size]


# -- CSV imports ------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[LineError]]:
    """Header-driven CSV with `,` `;` or tab, BOM and CRLF tolerated. A line
    with the wrong number of fields (e.g. a mixed separator), bytes that are
    not UTF-8, an oversized field or a quote left open (which would silently
    swallow the following lines) is an error naming its line."""
    data = path.read_bytes()
    if b"\0" in data:
        return [], [], [LineError(data[:data.index(b"\0")].count(b"\n") + 1, _NUL_MESSAGE)]
    try:
        text = data.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return [], [], [LineError(line, f"not UTF-8 (byte 0x{data[exc.start]:02x}): save the file "
                                        "as UTF-8, nothing imported")]
    if _MARKUP.match(text.lstrip()):
        return [], [], [LineError(text[:len(text) - len(text.lstrip())].count("\n") + 1,
                                  _MARKUP_MESSAGE)]
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    errors: list[LineError] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [], [LineError(1, "empty file")]
    except csv.Error as exc:
        return [], [], [LineError(1, f"unreadable header: {exc}")]
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(LineError(reader.line_num, f"unreadable line: {exc}"))
            continue
        lineno = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if lineno != start or any("\n" in f or "\r" in f for f in fields):
            errors.append(LineError(start, f"a quoted field runs over lines {start}-{lineno} "
                                           "(unbalanced quote?)"))
            continue
        if len(fields) != len(header):
            errors.append(LineError(lineno, f"{len(fields)} fields, header has {len(header)} "
                                            f"(separator is {delimiter!r})"))
            continue
        rows.append((lineno, {h: f.strip() for h, f in zip(header, fields, strict=True)}))
    return header, rows, errors


def _number_column(header: list[str]) -> str:
    for name in _NUMBER_COLUMNS:
        if name in header:
            return name
    raise ValueError(f"the CSV header has no number column (one of {', '.join(_NUMBER_COLUMNS)})")


def _professional(config: Config, row: dict[str, str], default: str | None) -> str:
    if row.get("campaign"):
        return config.campaign(row["campaign"]).professional
    if row.get("professional"):
        if row["professional"] not in config.professionals:
            raise ValueError(f"unknown professional {row['professional']!r}")
        return row["professional"]
    if default:
        return config.campaign(default).professional
    return config.campaign(None).professional


def _french(raw: str) -> str:
    number = parse(raw)
    if number.kind is Kind.SHORT:
        raise NumberError(raw, "short numbers carry no consent, contract or department")
    return number.e164


def import_csv(
    store: Backend, config: Config, what: str, path: Path,
    *, campaign: str | None = None, skip_invalid: bool = False,
    now: datetime | None = None, allow_future: bool = False,
) -> ImportResult:
    """`now` (default: the system clock) bounds the instants of the rows: one
    beyond it plus FUTURE_TOLERANCE is an invalid line unless `allow_future`."""
    header, rows, errors = read_csv(path)
    if not header:
        raise ImportRejected(str(path), errors)
    try:
        col = _number_column(header)
    except ValueError as exc:
        raise ImportRejected(str(path), [], str(exc)) from None
    builder = {"consents": _consent_row, "contracts": _contract_row,
               "departments": _department_row}[what]
    latest = None if allow_future else (now or system_clock())
    valid: list[dict[str, Any]] = []
    for lineno, row in rows:
        try:
            valid.append(builder(config, row, col, campaign, latest))
        except (NumberError, ConfigError, ValueError, KeyError) as exc:
            message = exc.why if isinstance(exc, NumberError) else str(exc)
            errors.append(LineError(lineno, message))
    errors.sort(key=lambda e: e.line)
    if errors and not skip_invalid:
        raise ImportRejected(str(path), errors[:MAX_REPORTED], total=len(errors))
    if not valid:  # an import that changes nothing is a wrong file, not a success
        reason = f"no valid row ({len(errors)} invalid skipped)" if errors else "no data row under the header"
        raise ImportRejected(str(path), [], reason)
    count = store.import_rows(what, valid)
    return ImportResult(count, errors[:MAX_REPORTED], len(errors))


def _consent_row(config: Config, row: dict[str, str], col: str, campaign: str | None,
                 latest: datetime | None) -> dict[str, Any]:
    if not row.get("source"):
        raise ValueError("consent without a source: R-11 requires provable consent")
    if not row.get("given_at"):
        raise ValueError("consent without given_at (when it was given)")
    if latest is not None:  # slots are in the future by nature: only given_at is bounded
        refuse_future(parse_instant(row["given_at"]), latest, "given_at")
    slot_from = parse_instant(row["slot_from"]) if row.get("slot_from") else None
    slot_until = parse_instant(row["slot_until"]) if row.get("slot_until") else None
    if (slot_from is None) != (slot_until is None) or (slot_from and slot_until
                                                      and slot_until <= slot_from):
        raise ValueError("slot_from and slot_until go together, from before until")
    proof = ConsentProof(
        source=row["source"], given_at=parse_instant(row["given_at"]),
        channel=row.get("channel", ""), wording=row.get("wording", ""),
        evidence_ref=row.get("evidence_ref", ""), slot_from=slot_from, slot_until=slot_until)
    return {"professional": _professional(config, row, campaign), "e164": _french(row[col]),
            "proof": proof}


def _contract_row(config: Config, row: dict[str, str], col: str, campaign: str | None,
                  latest: datetime | None) -> dict[str, Any]:
    return {"professional": _professional(config, row, campaign), "e164": _french(row[col]),
            "product": row.get("product", "")}


_DEPARTMENT_OK = {f"{n:02d}" for n in range(1, 96) if n != 20} | {"2A", "2B"} | {
    "971", "972", "973", "974", "975", "976", "977", "978"}


def _department_row(config: Config, row: dict[str, str], col: str, campaign: str | None,
                    latest: datetime | None) -> dict[str, Any]:
    dept = row.get("department", row.get("departement", "")).upper()
    if dept not in _DEPARTMENT_OK:
        raise ValueError(f"unknown department {dept!r}")
    return {"e164": _french(row[col]), "department": dept}

