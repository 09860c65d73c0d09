"""The store read for people: `sentinelle history/export/explain/report`
and the metrics.

Reads run in plain read transactions: in WAL mode they never block the live
checks, and one transaction gives an export a consistent snapshot while
the service keeps writing. Large results are streamed in chunks, so memory
stays flat whatever the volume.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sentinelle.store.database import Database
from sentinelle.store.schema import TABLES
from sentinelle.store.values import ts

# table -> the instant a row is filed under (export ranges, purge)
EVIDENCE_TIME = (("decisions", "at"), ("attempts", "at"), ("refusals", "at"),
                 ("consents", "given_at"))


class EvidenceReads(Database):
    EVIDENCE_TIME = EVIDENCE_TIME

    def timeline(self, e164: str) -> dict[str, list[dict[str, Any]]]:
        """Everything known of one callee, for `sentinelle history`."""
        out: dict[str, list[dict[str, Any]]] = {}
        queries = {
            "attempts": "SELECT * FROM attempts WHERE e164=? ORDER BY at",
            "refusals": "SELECT * FROM refusals WHERE e164=? ORDER BY at",
            "consents": "SELECT * FROM consents WHERE e164=? ORDER BY given_at",
            "contracts": "SELECT * FROM contracts WHERE e164=?",
            "optouts": "SELECT * FROM optouts WHERE e164=?",
            "decisions": "SELECT * FROM decisions WHERE e164=? ORDER BY id",
        }
        with self.transaction(immediate=False) as conn:
            for name, sql in queries.items():
                cur = conn.execute(sql, (e164,))
                cols = [c[0] for c in cur.description]
                out[name] = [dict(zip(cols, row, strict=True)) for row in cur]
        return out

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        with self.transaction(immediate=False) as conn:
            n: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            return n

    @contextlib.contextmanager
    def evidence_rows(
        self, table: str, start: datetime, end: datetime, *, campaign: str | None = None,
        professional: str | None = None, chunk: int = 1000,
    ) -> Iterator[tuple[list[str], Iterator[tuple[Any, ...]]]]:
        """Rows of an evidence table filed in [start, end), oldest first, read in
        chunks inside one read transaction: constant memory on any volume, and
        a consistent snapshot while the service keeps writing."""
        time_col = dict(EVIDENCE_TIME)[table]
        where = [f"{time_col} >= :start", f"{time_col} < :end"]
        if campaign is not None:
            where.append("campaign = :campaign")
        if professional is not None:
            where.append("professional = :professional")
        sql = (f"SELECT * FROM {table} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed names
               f" ORDER BY {time_col}, id")
        params = {"start": ts(start), "end": ts(end)}
        if campaign is not None:
            params["campaign"] = campaign
        if professional is not None:
            params["professional"] = professional
        with self.transaction(immediate=False) as conn:
            yield self.stream(conn, sql, params, chunk)

    def iter_calls(self, start: datetime, end: datetime, campaign: str | None = None
                   ) -> Iterator[tuple[str, str, str, bool]]:
        """(e164, UTC hour 'YYYY-MM-DDTHH', verdict, placed) of every decision on
        a parsed number: the report's calls-per-local-hour chart. Consume it
        fully (it holds a read transaction while it runs)."""
        params = {"start": ts(start), "end": ts(end), "campaign": campaign}
        with self.transaction(immediate=False) as conn:
            _, rows = self.stream(
                conn,
                "SELECT e164, substr(at, 1, 13), verdict, attempt_id IS NOT NULL"  # noqa: S608
                " FROM decisions"
                " WHERE at >= :start AND at < :end AND e164 IS NOT NULL"
                + ("" if campaign is None else " AND campaign = :campaign"), params, 5000)
            yield from rows

    def iter_attempt_series(self, start: datetime, end: datetime,
                            professional: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(professional, e164, at) ordered by callee then time: R-30 windows
        are per (professional, callee), so each series is scanned once."""
        params = {"start": ts(start), "end": ts(end), "professional": professional}
        with self.transaction(immediate=False) as conn:
            _, rows = self.stream(
                conn,
                "SELECT professional, e164, at FROM attempts"  # noqa: S608 - fixed fragments
                " WHERE at >= :start AND at < :end"
                + ("" if professional is None else " AND professional = :professional")
                + " ORDER BY professional, e164, at", params, 5000)
            yield from rows

    def evidence_groups(self, start: datetime, end: datetime, campaign: str | None = None
                        ) -> dict[str, list[tuple[Any, ...]]]:
        """Small GROUP BY results for the report (blocks by rule and hour,
        outcomes and refusals per campaign, legal basis of the calls placed)."""
        p = {"start": ts(start), "end": ts(end), "campaign": campaign}
        with self.transaction(immediate=False) as conn:
            return {name: conn.execute(sql, p).fetchall()
                    for name, sql in _group_queries(self.json_text).items()}

    def coverage(self, now: datetime, consent_max_age: timedelta,
                 horizon: timedelta = timedelta(days=30)) -> dict[str, list[tuple[Any, ...]]]:
        """Per professional: Bloctel snapshots (current and replaced, for the
        report's snapshot table), consents valid now / expiring within `horizon` / revoked, contracts
        and opt-outs. Consent age is approximated in elapsed days here (a
        report figure; the rules use calendar days)."""
        valid_from = ts(now - consent_max_age)
        soon = ts(now - consent_max_age + horizon)
        with self.transaction(immediate=False) as conn:
            return {
                "snapshots": conn.execute(
                    "SELECT professional, snapshot_date, kind, count, state, imported_at"
                    " FROM bloctel_snapshots WHERE state IN ('current', 'replaced')"
                    " ORDER BY professional, imported_at").fetchall(),
                "consents": conn.execute(
                    "SELECT professional,"
                    " count(*) FILTER (WHERE revoked_at IS NULL AND given_at >= ? AND given_at <= ?),"
                    " count(*) FILTER (WHERE revoked_at IS NULL AND given_at >= ? AND given_at < ?),"
                    " count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*) FROM consents"
                    " GROUP BY 1 ORDER BY 1",
                    (valid_from, ts(now), valid_from, soon)).fetchall(),
                "contracts": conn.execute(
                    "SELECT professional, count(*) FROM contracts GROUP BY 1 ORDER BY 1").fetchall(),
                "optouts": conn.execute(
                    "SELECT professional, count(*) FROM optouts GROUP BY 1 ORDER BY 1").fetchall(),
            }

    def consents_expiring(self, now: datetime, max_age_days: int,
                          within_days: int = 30) -> dict[str, int]:
        """Per professional, live consents that reach `consent_max_age_days`
        (R-11) within `within_days`: the callees to ask again soon."""
        lo = ts(now - timedelta(days=max_age_days))
        hi = ts(now - timedelta(days=max_age_days - within_days))
        with self.transaction(immediate=False) as conn:
            return dict(conn.execute(
                "SELECT professional, count(DISTINCT e164) FROM consents WHERE revoked_at IS NULL"
                " AND given_at >= ? AND given_at < ? GROUP BY professional", (lo, hi)).fetchall())


def _group_queries(json: Callable[..., str]) -> dict[str, str]:
    """The report's GROUP BY queries, over [:start, :end) and an optional
    :campaign; `json` is the backend's JSON accessor (Database.json_text)."""
    return {
        "blocks": "SELECT substr(at, 1, 13), rules, count(*) FROM decisions"
                  " WHERE at >= :start AND at < :end AND verdict = 'block'"
                  " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1, 2",
        "outcomes": "SELECT campaign, COALESCE(outcome, ''), count(*) FROM attempts"
                    " WHERE at >= :start AND at < :end"
                    " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1, 2",
        "refusals": "SELECT campaign, count(*) FROM refusals"
                    " WHERE at >= :start AND at < :end"
                    " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1",
        # contract / regime of the decision that let each call through
        "basis": "SELECT a.professional, a.campaign, d.regime,"  # noqa: S608 - fixed fragments
                 f" CAST({json('d.inputs', 'history', 'contract')} AS TEXT) IN ('1', 'true'),"
                 " count(*)"
                 " FROM attempts a LEFT JOIN decisions d ON d.id = a.decision_id"
                 " WHERE a.at >= :start AND a.at < :end"
                 " AND (:campaign IS NULL OR a.campaign = :campaign) GROUP BY 1, 2, 3, 4",
        "verdicts": "SELECT verdict, count(*) FROM decisions WHERE at >= :start AND at < :end"
                    " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1",
        "attempts": "SELECT count(*), count(DISTINCT professional || e164) FROM attempts"
                    " WHERE at >= :start AND at < :end"
                    " AND (:campaign IS NULL OR campaign = :campaign)",
        "slots": "SELECT count(*) FROM decisions WHERE at >= :start AND at < :end"
                 " AND attempt_id IS NOT NULL AND (:campaign IS NULL OR campaign = :campaign)"
                 " AND slot_used = 1",
        # the oldest Bloctel snapshot fr-2023 decisions saw each (UTC) day,
        # and how many saw none: what R-10 actually relied on
        "bloctel": "SELECT professional, substr(at, 1, 10),"  # noqa: S608 - fixed fragments
                   f" min({json('inputs', 'history', 'bloctel', 'snapshot_date')}),"
                   f" count(*) FILTER (WHERE {json('inputs', 'history', 'bloctel')} IS NULL)"
                   " FROM decisions"
                   " WHERE at >= :start AND at < :end AND regime = 'fr-2023'"
                   " AND inputs LIKE '%\"history\"%'"
                   " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1, 2",
        "consents_given": "SELECT professional, count(*) FROM consents"
                          " WHERE given_at >= :start AND given_at < :end GROUP BY 1",
    }
