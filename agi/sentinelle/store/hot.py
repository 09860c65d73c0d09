"""The hot path: what every call waits for.

`check_and_record` reads the history, runs the pure decision and inserts
the attempt inside ONE write transaction that first takes the callee's
lock (SQLite: BEGIN IMMEDIATE, its one write lock; PostgreSQL: an advisory
lock on the (professional, callee) key, held by whichever process on
whichever host got it first). Two agents dialling the same number at the
same instant are serialised and can never make a fifth attempt (R-30).
Every decision taken is logged with what it saw, so an auditor can replay it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sentinelle.core.model import Bloctel, Consent, Decision, History
from sentinelle.store.bloctel import snapshot_table
from sentinelle.store.database import Database, Tx
from sentinelle.store.values import e164_int, from_ts, ts, used_slot

HISTORY_HORIZON = timedelta(days=62)  # covers R-30 (30 d) and R-31 (60 d) with DST slack


class HotPath(Database):
    def check_and_record(
        self,
        professional: str,
        e164: str,
        at: datetime,
        decide: Callable[[History], Decision],
        *,
        record: bool,
        source: str,
        inputs: dict[str, Any] | None = None,
    ) -> Decision:
        """Read history, decide, and (if allowed and `record`) insert the
        attempt and the decision, all in one write transaction (R-30)."""
        with self.transaction(immediate=record) as conn:
            if record:
                self.lock_key(conn, professional, e164)
            history = self._history(conn, professional, e164, at)
            decision = decide(history)
            if record:
                attempt_id = None
                if decision.allowed and decision.counts:
                    attempt_id = conn.execute(
                        _INSERT_ATTEMPT, (professional, decision.campaign, e164, ts(at)),
                    ).fetchone()[0]
                decision_id = _log(conn, decision, source, attempt_id, inputs, history)
                if attempt_id is not None:
                    self.execute_late(conn, _LINK_DECISION, (decision_id, attempt_id))
                    decision = replace(decision, attempt_id=attempt_id)
            return decision

    def log_decision(self, decision: Decision, source: str,
                     inputs: dict[str, Any] | None = None) -> int:
        """Decisions taken without a history read (R-01, R-00, faults) are logged too."""
        with self.transaction() as conn:
            return _log(conn, decision, source, None, inputs, None)

    def history(self, professional: str, e164: str, at: datetime) -> History:
        with self.transaction(immediate=False) as conn:
            return self._history(conn, professional, e164, at)

    @staticmethod
    def _history(conn: Tx, professional: str, e164: str, at: datetime) -> History:
        lo, hi = ts(at - HISTORY_HORIZON), ts(at + HISTORY_HORIZON)
        attempts: list[datetime] = []
        refusals: list[datetime] = []
        consents: list[tuple[int, Consent]] = []
        facts: tuple[str | None, ...] = ()
        # One statement, one round trip: on PostgreSQL each statement is a
        # network exchange, on SQLite ~15 us of overhead.
        for tag, a, b, c, d, e, f in conn.execute(_HISTORY, {
                "p": professional, "n": e164, "lo": lo, "hi": hi, "at": ts(at)}).fetchall():
            if tag == "a":
                attempts.append(datetime.fromisoformat(a))
            elif tag == "r":
                refusals.append(datetime.fromisoformat(a))
            elif tag == "c":
                consents.append((int(f), Consent(given_at=datetime.fromisoformat(a), source=b,
                                                 revoked_at=from_ts(c), slot_from=from_ts(d),
                                                 slot_until=from_ts(e))))
            else:
                facts = (a, b, c, d, e, f)
        contract, opted_out, dept, sid, snap_date, kind = facts
        return History(
            attempts=tuple(sorted(attempts)), refusals=tuple(sorted(refusals)),
            # In the order they were recorded (id), on both engines: `decide`
            # takes the first of two consents of the same date.
            consents=tuple(c for _, c in sorted(consents, key=lambda ic: ic[0])),
            contract=contract in _TRUE, opted_out=opted_out in _TRUE,
            bloctel=None if sid is None else _listed(conn, int(sid), str(snap_date), str(kind),
                                                     e164),
            department=dept,
        )


_TRUE = ("1", "true")  # a boolean cast to text: SQLite says 1, PostgreSQL true

# What one decision needs to know of one (professional, callee), tagged rows:
# a = attempts of the horizon; r = the refusals of the horizon plus the
# latest one before it (a refusal revokes every consent given before it,
# however old: a consent dated before it but entered later must not count);
# c = consents; f = the single-row facts (contract, opposition list,
# department, current Bloctel snapshot).
_HISTORY = (
    "SELECT 'a', at, NULL, NULL, NULL, NULL, NULL FROM attempts"
    " WHERE professional=:p AND e164=:n AND at>=:lo AND at<=:hi"
    " UNION ALL SELECT 'r', at, NULL, NULL, NULL, NULL, NULL FROM refusals"
    " WHERE professional=:p AND e164=:n AND at<=:at AND (at>=:lo OR at=(SELECT max(at)"
    " FROM refusals WHERE professional=:p AND e164=:n AND at<:lo))"
    " UNION ALL SELECT 'c', given_at, source, revoked_at, slot_from, slot_until,"
    " CAST(id AS TEXT)"
    " FROM consents WHERE professional=:p AND e164=:n"
    " UNION ALL SELECT 'f',"
    " CAST(EXISTS(SELECT 1 FROM contracts WHERE professional=:p AND e164=:n) AS TEXT),"
    " CAST(EXISTS(SELECT 1 FROM optouts WHERE professional=:p AND e164=:n) AS TEXT),"
    " (SELECT department FROM departments WHERE e164=:n),"
    " CAST(s.id AS TEXT), s.snapshot_date, s.kind FROM (SELECT 1) AS one"
    " LEFT JOIN bloctel_snapshots s ON s.professional=:p AND s.state='current'"
)


# What a recorded check writes (bench_decision's floor runs the same text).
_INSERT_ATTEMPT = ("INSERT INTO attempts (professional, campaign, e164, at) VALUES (?,?,?,?)"
                   " RETURNING id")
_INSERT_DECISION = (
    "INSERT INTO decisions (at, source, campaign, professional, dialled, e164, caller_id,"
    " verdict, rules, reasons, regime, retry_at, attempt_id, inputs, slot_used)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id"
)
_LINK_DECISION = "UPDATE attempts SET decision_id=? WHERE id=?"


def _listed(conn: Tx, sid: int, snap_date: str, kind: str, e164: str) -> Bloctel:
    """Where the callee stands in snapshot `sid`: one rowid probe."""
    try:
        number = e164_int(e164)
    except ValueError:
        number = -1
    listed = conn.execute(
        f"SELECT 1 FROM {snapshot_table(sid)} WHERE e164=?",  # noqa: S608 - int id
        (number,)).fetchone() is not None
    return Bloctel(date.fromisoformat(snap_date), kind, listed)


def _log(conn: Tx, d: Decision, source: str, attempt_id: int | None,
         inputs: dict[str, Any] | None, history: History | None) -> int:
    data = dict(inputs or {})
    data["notes"] = list(d.notes)
    if history is not None:
        data["history"] = _history_summary(history)
    row = conn.execute(
        _INSERT_DECISION,
        (ts(d.at), source, d.campaign, d.professional, d.dialled,
         d.callee.e164 if d.callee else None, d.caller_id, d.verdict.value,
         ",".join(d.rules), json.dumps(list(d.reasons), ensure_ascii=False), d.regime,
         ts(d.retry_at) if d.retry_at else None, attempt_id,
         json.dumps(data, ensure_ascii=False, default=str), int(used_slot(d.notes))),
    ).fetchone()
    return int(row[0])


def _history_summary(h: History) -> dict[str, Any]:
    """What the decision saw, kept with it so an auditor can replay it."""
    return {
        "attempts": [ts(a) for a in h.attempts],
        "refusals": [ts(r) for r in h.refusals],
        "consents": [{"given_at": ts(c.given_at), "source": c.source,
                      "revoked_at": ts(c.revoked_at) if c.revoked_at else None}
                     for c in h.consents],
        "contract": h.contract,
        "opted_out": h.opted_out,
        "bloctel": None if h.bloctel is None else {
            "snapshot_date": h.bloctel.snapshot_date.isoformat(), "kind": h.bloctel.kind,
            "listed": h.bloctel.listed},
        "department": h.department,
    }
