"""Bulk imports: Bloctel snapshots and CSV files of consents, contracts and
departments.

All or nothing: every line is validated before anything becomes visible. A
bad line aborts the whole import with its line number (or, with
`skip_invalid`, is reported and skipped). Bloctel files reach ten million
lines, so they are streamed: a fast path handles the plain 10-digit national
form that Bloctel returns, anything else goes through `numbers.parse`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .clock import parse_instant
from .numbers import Kind, NumberError, parse
from .policy import Config, ConfigError
from .store import BLOCTEL_BATCH, ConsentProof, Store, e164_int

MAX_REPORTED = 20
# National prefixes that belong to overseas territories: never on the fast path.
_OVERSEAS = frozenset({"0262", "0263", "0269", "0508", "0590", "0594", "0596", "0639",
                       "0690", "0691", "0692", "0693", "0694", "0696", "0697"})
_NUMBER_COLUMNS = ("number", "numero", "numéro", "phone", "telephone", "téléphone", "e164", "msisdn")


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(ValueError):
    def __init__(self, what: str, errors: list[LineError]) -> None:
        self.errors = errors
        shown = "\n  ".join(str(e) for e in errors[:MAX_REPORTED])
        more = f"\n  ... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        super().__init__(f"{what}: {len(errors)} invalid line(s), nothing imported\n  {shown}{more}")


@dataclass(slots=True)
class ImportResult:
    count: int
    skipped: list[LineError] = field(default_factory=list)


Progress = Callable[[int], None]  # advance by N bytes


def bloctel_number(text: str) -> int:
    """One Bloctel line -> E.164 digits as an int; raises NumberError."""
    if len(text) == 10 and text[0] == "0" and text.isdigit() and text[1] != "0" \
            and text[:4] not in _OVERSEAS:
        return 33_000_000_000 + int(text[1:])
    number = parse(text)
    if number.kind in (Kind.SHORT, Kind.FOREIGN):
        raise NumberError(text, f"{number.kind.value} numbers are not on Bloctel")
    return e164_int(number.e164)


def import_bloctel(
    store: Store, professional: str, path: Path, snapshot_date: date, kind: str,
    *, skip_invalid: bool = False, progress: Progress | None = None,
) -> ImportResult:
    if kind not in ("opposed", "cleaned"):
        raise ValueError(f"kind must be opposed or cleaned, got {kind!r}")
    result = ImportResult(0)
    sid = store.begin_snapshot(professional, snapshot_date, kind, str(path))
    try:
        batch: list[int] = []
        for lineno, text, nbytes in _lines(path):
            if progress:
                progress(nbytes)
            if not text or (lineno == 1 and not any(c.isdigit() for c in text)):
                continue  # blank line or a header
            field0 = text.replace(";", ",").replace("\t", ",").split(",", 1)[0].strip()
            try:
                batch.append(bloctel_number(field0))
            except NumberError as exc:
                result.skipped.append(LineError(lineno, exc.why + f" ({field0[:40]!r})"))
                if not skip_invalid:
                    raise ImportRejected(str(path), result.skipped) from None
                continue
            if len(batch) >= BLOCTEL_BATCH:
                store.load_snapshot(sid, batch)
                batch.clear()
        if batch:
            store.load_snapshot(sid, batch)
        result.count = store.commit_snapshot(sid)
    except BaseException:
        store.abort_snapshot(sid)
        raise
    return result


def _lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, stripped text, bytes consumed). BOM and CRLF tolerated."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8", errors="replace")
            yield lineno, text.strip(), len(raw)


# -- CSV imports ------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[LineError]]:
    """Header-driven CSV with `,` `;` or tab, BOM and CRLF tolerated. A line
    with the wrong number of fields (e.g. a mixed separator) is an error."""
    text = path.read_bytes().decode("utf-8-sig", errors="strict")
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    errors: list[LineError] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [], [LineError(1, "empty file")]
    rows = []
    for fields in reader:
        lineno = reader.line_num
        if not any(f.strip() for f in fields):
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
    raise ConfigError("<csv header>", f"no number column (one of {', '.join(_NUMBER_COLUMNS)})")


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
    store: Store, config: Config, what: str, path: Path,
    *, campaign: str | None = None, skip_invalid: bool = False,
) -> ImportResult:
    header, rows, errors = read_csv(path)
    if not header:
        raise ImportRejected(str(path), errors)
    col = _number_column(header)
    builder = {"consents": _consent_row, "contracts": _contract_row,
               "departments": _department_row}[what]
    valid: list[dict[str, Any]] = []
    for lineno, row in rows:
        try:
            valid.append(builder(config, row, col, campaign))
        except (NumberError, ConfigError, ValueError, KeyError) as exc:
            message = exc.why if isinstance(exc, NumberError) else str(exc)
            errors.append(LineError(lineno, message))
    errors.sort(key=lambda e: e.line)
    if errors and not skip_invalid:
        raise ImportRejected(str(path), errors)
    count = store.import_rows(what, valid)
    return ImportResult(count, errors)


def _consent_row(config: Config, row: dict[str, str], col: str, campaign: str | None) -> dict:
    if not row.get("source"):
        raise ValueError("consent without a source: R-11 requires provable consent")
    if not row.get("given_at"):
        raise ValueError("consent without given_at (when it was given)")
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


def _contract_row(config: Config, row: dict[str, str], col: str, campaign: str | None) -> dict:
    return {"professional": _professional(config, row, campaign), "e164": _french(row[col]),
            "product": row.get("product", "")}


_DEPARTMENT_OK = {f"{n:02d}" for n in range(1, 96) if n != 20} | {"2A", "2B"} | {
    "971", "972", "973", "974", "975", "976", "977", "978"}


def _department_row(config: Config, row: dict[str, str], col: str, campaign: str | None) -> dict:
    dept = row.get("department", row.get("departement", "")).upper()
    if dept not in _DEPARTMENT_OK:
        raise ValueError(f"unknown department {dept!r}")
    return {"e164": _french(row[col]), "department": dept}

