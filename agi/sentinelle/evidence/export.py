"""Streaming export of the evidence tables (`sentinelle export`), CSV or JSONL.

Why it is written this way:
- An auditor asks for "your calls of last March": that can be millions of
  decisions. Rows are read in chunks from one read transaction (a consistent
  snapshot that never blocks the live service in WAL mode) and written as
  they come, so memory stays flat whatever the volume.
- Column names are a contract (documented in README.md, "Export columns"):
  they are listed here once, in order, and never derived from the schema, so
  a new store column cannot silently change an export that scripts parse.
- Times are ISO 8601 with their offset, in one chosen zone (Europe/Paris by
  default), with milliseconds: a refusal at 10:30:05.2 and a call at
  10:30:05.1 must stay distinguishable. The store's UTC text is converted,
  never reinterpreted.
- JSONL carries the decision's `inputs` (policy, history seen, notes, AGI
  context) as a JSON object spliced verbatim from the store: re-parsing a
  kilobyte of JSON per row would triple the export time for no gain.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import partial
from operator import itemgetter
from typing import Any, TextIO

from sentinelle.core import calendar
from sentinelle.core.model import PARIS

FORMATS = ("csv", "jsonl")


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column: its public name, the store column it comes from,
    and how the value is rendered (text, int, time, rules, reasons, json, local)."""

    name: str
    source: str
    kind: str = "text"
    doc: str = ""


# The export contract. Order matters (CSV columns); add at the end only.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "decisions": (
        Column("id", "id", "int", "decision id (the decision log is append-only)"),
        Column("at", "at", "time", "instant of the decision"),
        Column("callee_local_time", "e164", "local", "the same instant on the callee's clock "
               "(R-20/R-21 are judged on it); empty for foreign or unparsable numbers"),
        Column("source", "source", doc="fastagi, agi or cli"),
        Column("campaign", "campaign", doc="campaign name (config)"),
        Column("professional", "professional", doc="the professional the call is made for "
               "(limits are per professional)"),
        Column("dialled", "dialled", doc="the number as dialled"),
        Column("e164", "e164", doc="the callee in E.164; empty if unparsable (R-01)"),
        Column("caller_id", "caller_id", doc="presented caller ID; empty if masked or not given"),
        Column("verdict", "verdict", doc="allow or block"),
        Column("rules", "rules", "rules", "rule ids that blocked (CSV: comma-separated; "
               "JSONL: list)"),
        Column("reasons", "reasons", "reasons", "one reason per finding, each starting with "
               "its rule id (CSV: joined by ' | '; JSONL: list)"),
        Column("regime", "regime", doc="fr-2023 or fr-2026"),
        Column("retry_at", "retry_at", "time", "earliest instant the same call becomes legal "
               "if only time must pass; empty when a new fact is needed"),
        Column("attempt_id", "attempt_id", "int", "the R-30 attempt recorded for an allowed "
               "prospecting call"),
        Column("inputs", "inputs", "json", "what the decision saw: dialled, caller ID, "
               "policy settings, history summary, notes, AGI context (JSON)"),
    ),
    "attempts": (
        Column("id", "id", "int", "attempt id"),
        Column("at", "at", "time", "instant the call was allowed and counted (R-30)"),
        Column("callee_local_time", "e164", "local", "the same instant on the callee's clock"),
        Column("professional", "professional", doc="the professional the call is made for "
               "(limits are per professional)"),
        Column("campaign", "campaign", doc="empty for a minimal record kept by `forget`"),
        Column("e164", "e164", doc="the callee in E.164"),
        Column("decision_id", "decision_id", "int", "the decision that allowed it"),
        Column("outcome", "outcome", doc="answered, busy, no-answer, failed, unknown (ARI), "
               "erased (kept by `forget`), empty while unknown"),
        Column("answered_at", "answered_at", "time", "when the callee answered (ARI)"),
        Column("ended_at", "ended_at", "time", "when the call ended (ARI)"),
        Column("cause", "cause", "int", "Q.850 hangup cause of the callee leg"),
        Column("cause_txt", "cause_txt", doc="the cause as Asterisk words it"),
        Column("disposition", "disposition", doc="agent disposition: refused, do-not-call, "
               "callback, wrong-number"),
    ),
    "refusals": (
        Column("id", "id", "int", "refusal id"),
        Column("at", "at", "time", "when the callee refused (R-31: 60 days of silence)"),
        Column("professional", "professional", doc="the professional the call is made for "
               "(limits are per professional)"),
        Column("campaign", "campaign", doc="campaign name (config)"),
        Column("e164", "e164", doc="the callee in E.164"),
        Column("source", "source", doc="dtmf, disposition, cli...; erased for a minimal "
               "record kept by `forget`"),
        Column("attempt_id", "attempt_id", "int", "the call it was expressed in"),
        Column("recorded_at", "recorded_at", "time", "when sentinelle recorded it"),
    ),
    "consents": (
        Column("id", "id", "int", "consent id"),
        Column("professional", "professional", doc="consents are given to a professional"),
        Column("e164", "e164", doc="the callee in E.164"),
        Column("given_at", "given_at", "time", "when the consent was given (R-11 proof)"),
        Column("source", "source", doc="where it comes from (form, call...)"),
        Column("channel", "channel", doc="web, paper, phone, email..."),
        Column("wording", "wording", doc="wording or its version"),
        Column("evidence_ref", "evidence_ref", doc="reference of the stored evidence"),
        Column("slot_from", "slot_from", "time", "R-22 outside-hours slot start"),
        Column("slot_until", "slot_until", "time", "R-22 slot end (exclusive)"),
        Column("revoked_at", "revoked_at", "time", "revocation or refusal that ended it"),
        Column("recorded_at", "recorded_at", "time", "when sentinelle recorded it"),
    ),
}


def _time_renderer(zone: tzinfo) -> Callable[[str | None], str | None]:
    """Store UTC text -> ISO 8601 with offset in `zone`, milliseconds kept."""
    if zone is UTC:
        def utc(value: str | None) -> str | None:
            # Already "YYYY-MM-DDTHH:MM:SS.ffffff+00:00": trim to milliseconds.
            return None if value is None else value[:23] + value[26:]
        return utc

    def convert(value: str | None) -> str | None:
        if value is None:
            return None
        return datetime.fromisoformat(value).astimezone(zone).isoformat(timespec="milliseconds")
    return convert


def _local_renderer() -> Callable[[str | None, str | None], str | None]:
    def local(e164: str | None, at: str | None) -> str | None:
        if not e164 or at is None:
            return None
        zone = calendar.zone_of(e164)
        if zone is None:
            return None
        return datetime.fromisoformat(at).astimezone(zone).isoformat(timespec="milliseconds")
    return local


class Writer:
    """Turns store rows into CSV or JSONL lines on `out`, one row at a time."""

    def __init__(self, table: str, fmt: str, out: TextIO, zone: tzinfo = PARIS) -> None:
        if table not in COLUMNS:
            raise ValueError(f"unknown export {table!r} (known: {', '.join(COLUMNS)})")
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        self.table, self.fmt, self.out = table, fmt, out
        self.columns = COLUMNS[table]
        self._time = _time_renderer(zone)
        self._local = _local_renderer()
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        self.rows = 0

    def _prepare(self, store_columns: list[str]) -> Callable[[tuple[Any, ...]], list[Any]]:
        """Compile one row function for this table: index lookups resolved once."""
        index = {name: i for i, name in enumerate(store_columns)}
        at_index = index.get("at")
        getters: list[Callable[[tuple[Any, ...]], Any]] = []
        for col in self.columns:
            i = index.get(col.source)
            if i is None or (col.kind == "local" and at_index is None):
                getters.append(_none)  # an older store without this column: empty, never a crash
            elif col.kind == "time":
                getters.append(partial(_time_at, self._time, i))
            elif col.kind == "local" and at_index is not None:
                getters.append(partial(_local_at, self._local, i, at_index))
            else:
                getters.append(itemgetter(i))
        return lambda row: [g(row) for g in getters]

    def header(self) -> None:
        if self._csv is not None:
            self._csv.writerow([c.name for c in self.columns])

    def write_all(self, store_columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
        values_of = self._prepare(store_columns)
        kinds = [c.kind for c in self.columns]
        names = [c.name for c in self.columns]
        if self._csv is not None:
            writerow = self._csv.writerow
            for row in rows:
                values = values_of(row)
                for k, kind in enumerate(kinds):
                    if kind == "reasons" and values[k]:
                        values[k] = " | ".join(json.loads(values[k]))
                writerow(values)
                self.rows += 1
            return self.rows
        write = self.out.write
        for row in rows:
            write(_jsonl_line(names, kinds, values_of(row)))
            self.rows += 1
        return self.rows


def _jsonl_line(names: list[str], kinds: list[str], values: list[Any]) -> str:
    """One JSON object per line; stored JSON (reasons, inputs) is spliced raw."""
    parts = []
    for name, kind, value in zip(names, kinds, values, strict=True):
        if value is None:
            text = "null"
        elif kind in ("json", "reasons"):
            text = value  # written by sentinelle with json.dumps: valid JSON, no newline
        elif kind == "rules":
            text = json.dumps(value.split(",") if value else [])
        else:
            text = json.dumps(value, ensure_ascii=False)
        parts.append(f'"{name}": {text}')
    return "{" + ", ".join(parts) + "}\n"


def export(columns: list[str], rows: Iterable[tuple[Any, ...]], table: str, fmt: str,
           out: TextIO, zone: tzinfo = PARIS) -> int:
    """Write rows read by `Store.evidence_rows` to `out`; returns the row count."""
    writer = Writer(table, fmt, out, zone)
    writer.header()
    return writer.write_all(columns, rows)


def column_reference() -> str:
    """The column reference in Markdown (README.md is checked against it)."""
    lines = []
    for table, cols in COLUMNS.items():
        lines.append(f"`{table}`:\n")
        lines.append("| column | meaning |")
        lines.append("|---|---|")
        for c in cols:
            text = (c.doc or c.name.replace("_", " ")).replace("|", "\\|")
            lines.append(f"| `{c.name}` | {text} |")
        lines.append("")
    return "\n".join(lines)


def _none(row: tuple[Any, ...]) -> None:
    return None


def _time_at(render: Callable[[Any], Any], i: int, row: tuple[Any, ...]) -> Any:
    return render(row[i])


def _local_at(render: Callable[[Any, Any], Any], i: int, at_index: int, row: tuple[Any, ...]) -> Any:
    return render(row[i], row[at_index])
