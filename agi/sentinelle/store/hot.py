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
                        "INSERT INTO attempts (professional, campaign, e164, at) VALUES (?,?,?,?)"
                        " RETURNING id", (professional, decision.campaign, e164, ts(at)),
                    ).fetchone()[0]
                decision_id = _log(conn, decision, source, attempt_id, inputs, history)
                if attempt_id is not None:
                    conn.execute("UPDATE attempts SET decision_id=? WHERE id=?",
                                 (decision_id, attempt_id))
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
    def _history(conn: Tx, professional: str, e164: str,
                 at: datetime) -> History:
        lo, hi = ts(at - HISTORY_HORIZON), ts(at + HISTORY_HORIZON)
        key = (professional, e164)
        attempts = tuple(
            datetime.fromisoformat(r[0]) for r in conn.execute(
                "SELECT at FROM attempts WHERE professional=? AND e164=? AND at>=? AND at<=?",
                (*key, lo, hi))
        )
        # The refusals of the horizon plus the latest one before it:
        # a refusal revokes every consent given before it, however old it is
        # (a consent dated before it but entered later must not count).
        refusals = tuple(
            datetime.fromisoformat(r[0]) for r in conn.execute(
                "SELECT at FROM refusals WHERE professional=? AND e164=? AND at<=? AND (at>=?"
                " OR at=(SELECT max(at) FROM refusals WHERE professional=? AND e164=? AND at<?))",
                (*key, ts(at), lo, *key, lo))
        )
        consents = tuple(
            Consent(given_at=datetime.fromisoformat(r[0]), source=r[1], revoked_at=from_ts(r[2]),
                    slot_from=from_ts(r[3]), slot_until=from_ts(r[4]))
            for r in conn.execute(
                "SELECT given_at, source, revoked_at, slot_from, slot_until FROM consents"
                " WHERE professional=? AND e164=?", key)
        )
        # The single-row facts in one statement: each execute costs ~15 us.
        contract, opted_out, dept, sid, snap_date, kind = conn.execute(
            "SELECT EXISTS(SELECT 1 FROM contracts WHERE professional=:p AND e164=:n),"
            " EXISTS(SELECT 1 FROM optouts WHERE professional=:p AND e164=:n),"
            " (SELECT department FROM departments WHERE e164=:n),"
            " s.id, s.snapshot_date, s.kind FROM (SELECT 1) AS one"
            " LEFT JOIN bloctel_snapshots s ON s.professional=:p AND s.state='current'",
            {"p": professional, "n": e164}).fetchone()
        return History(
            attempts=attempts, refusals=refusals, consents=consents, contract=bool(contract),
            opted_out=bool(opted_out),
            bloctel=None if sid is None else _listed(conn, sid, snap_date, kind, e164),
            department=dept,
        )


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
        "INSERT INTO decisions (at, source, campaign, professional, dialled, e164, caller_id,"
        " verdict, rules, reasons, regime, retry_at, attempt_id, inputs, slot_used)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
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
