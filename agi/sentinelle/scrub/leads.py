"""Lead lists in and out: CSV as dialers export it, CSV or NDJSON back.

Every column of the lead is kept, in order, and sentinelle's own columns are
added after them, so the output loads into the dialer's hopper with the same
list mapping as the input. A lead list is read as a stream (one row at a
time), whatever its size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from sentinelle.scrub.engine import LeadVerdict

# Columns that may hold the number, first match wins (`phone_number`: VICIdial's lists).
NUMBER_COLUMNS = ("number", "phone_number", "phone", "numero", "numéro", "telephone",
                  "téléphone", "e164", "msisdn")
OUR_COLUMNS = ("e164", "verdict", "rules", "retry_at", "needs", "reasons")
FORMATS = ("csv", "ndjson")


class LeadsError(ValueError):
    """The list itself cannot be read (header, column): nothing is scrubbed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Leads:
    header: list[str]
    column: int  # index of the number column
    delimiter: str
    rows: Iterator[list[str]]


def read_leads(source: TextIO, column: str | None = None) -> Leads:
    """The header line names the columns and the separator (`,` `;` or tab,
    whichever it holds most of, as `import consents` reads it)."""
    first = source.readline()
    if not first.strip():
        raise LeadsError("leads", "empty list: the first line must name the columns")
    delimiter = max((",", ";", "\t"), key=first.count)
    header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter))]
    names = [h.lower() for h in header]
    if column is not None:
        if column.lower() not in names:
            raise LeadsError("column", f"no column {column!r} in the header ({', '.join(header)})")
        index = names.index(column.lower())
    else:
        found = [names.index(n) for n in NUMBER_COLUMNS if n in names]
        if not found:
            raise LeadsError("column", "no number column in the header (one of "
                                       f"{', '.join(NUMBER_COLUMNS)}; or name it with column)")
        index = found[0]
    clash = [c for c in OUR_COLUMNS if c in names and names.index(c) != index]
    if clash:
        raise LeadsError("leads", f"the list already has column(s) {', '.join(clash)}: "
                                  "scrub the original list, not a scrubbed one")
    return Leads(header, index, delimiter, csv.reader(source, delimiter=delimiter))


def number_of(leads: Leads, row: list[str]) -> str:
    return row[leads.column] if leads.column < len(row) else ""


class CsvOut:
    """The lead's own columns, then sentinelle's: `rules` and `needs`
    comma-joined, `reasons` joined by ' | ' (as `export` writes them)."""

    def __init__(self, leads: Leads) -> None:
        self.header = [*leads.header, *OUR_COLUMNS]
        self.width = len(leads.header)
        self.delimiter = leads.delimiter
        # One writer for every row (a writer per row cost as much as the row).
        self._buf = _Line()
        self._writer = csv.writer(self._buf, delimiter=self.delimiter, lineterminator="\n")

    def head(self) -> str:
        return self._line(self.header)

    def row(self, line: int, row: list[str], v: LeadVerdict) -> str:
        own = (row + [""] * self.width)[: self.width]
        return self._line([*own, v.e164, "allow" if v.allowed else "block", ",".join(v.rules),
                           v.retry_at.isoformat() if v.retry_at else "", ",".join(v.needs),
                           " | ".join(v.reasons)])

    def _line(self, values: list[str]) -> str:
        self._buf.text = ""
        self._writer.writerow(values)
        return self._buf.text

    def tail(self, summary: dict[str, Any]) -> str:
        return ""


class NdjsonOut:
    """One object a lead: `line` (in the input file), `lead` (its columns by
    name), then the verdict; a last line `{"summary": ...}` says the list
    was scrubbed to the end (a stream cut short has none)."""

    def __init__(self, leads: Leads) -> None:
        self.header = leads.header

    def head(self) -> str:
        return ""

    def row(self, line: int, row: list[str], v: LeadVerdict) -> str:
        lead = dict(zip(self.header, row, strict=False))
        return json.dumps({"line": line, "lead": lead, **v.to_dict()}, ensure_ascii=False) + "\n"

    def tail(self, summary: dict[str, Any]) -> str:
        return json.dumps({"summary": summary}) + "\n"


def formatter(fmt: str, leads: Leads) -> CsvOut | NdjsonOut:
    if fmt == "csv":
        return CsvOut(leads)
    if fmt == "ndjson":
        return NdjsonOut(leads)
    raise LeadsError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")


class _Line:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)
