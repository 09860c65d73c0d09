"""What the independent invariant checker (`evidence.audit`) reads.

The checker re-judges every recorded attempt without the decision code, so
that a bug in a decision, in the history it was given or in the atomic
check-and-record shows up as a breach. For the same reason it must not
read the store the way a decision does (`HotPath.history`, its horizon and
its joins): these are plain reads of the rows as recorded, all in one read
transaction, so the checker sees one consistent state while the service
keeps writing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime

from sentinelle.store.backend import (
    AuditAttempt,
    AuditConsent,
    AuditDecision,
    AuditFact,
    AuditRefusal,
    AuditSnapshot,
)
from sentinelle.store.bloctel import snapshot_table
from sentinelle.store.database import Database, Tx
from sentinelle.store.values import e164_int, from_ts, ts


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SqliteAuditView:
    """The rows of one read transaction; valid inside `AuditReads.audit_view` only."""

    def __init__(self, conn: Tx) -> None:
        self._conn = conn

    def attempts(self, since: datetime | None = None,
                 until: datetime | None = None) -> Iterator[AuditAttempt]:
        for aid, pro, campaign, e164, at, decision_id in self._conn.execute(
                "SELECT id, professional, campaign, e164, at, decision_id FROM attempts"
                " WHERE (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)",
                _span(since, until)):
            yield AuditAttempt(aid, pro, campaign, e164, _at(at), decision_id)

    def attempt_decisions(self, since: datetime | None = None,
                          until: datetime | None = None) -> Iterator[AuditDecision]:
        """The decisions the attempts of the span point to."""
        for row in self._conn.execute(
                "SELECT d.id, d.verdict, d.e164 FROM decisions d JOIN attempts a"
                " ON a.decision_id = d.id"
                " WHERE (:since IS NULL OR a.at >= :since) AND (:until IS NULL OR a.at < :until)",
                _span(since, until)):
            yield AuditDecision(*row)

    def refusals(self) -> Iterator[AuditRefusal]:
        for pro, e164, at, recorded in self._conn.execute(
                "SELECT professional, e164, at, recorded_at FROM refusals"):
            yield AuditRefusal(pro, e164, _at(at), from_ts(recorded))

    def consents(self) -> Iterator[AuditConsent]:
        for pro, e164, given, revoked, s_from, s_until in self._conn.execute(
                "SELECT professional, e164, given_at, revoked_at, slot_from, slot_until"
                " FROM consents"):
            yield AuditConsent(pro, e164, _at(given), from_ts(revoked), from_ts(s_from),
                               from_ts(s_until))

    def contracts(self) -> Iterator[AuditFact]:
        for pro, e164, added in self._conn.execute(
                "SELECT professional, e164, added_at FROM contracts"):
            yield AuditFact(pro, e164, _at(added))

    def optouts(self) -> Iterator[AuditFact]:
        for pro, e164, added in self._conn.execute(
                "SELECT professional, e164, added_at FROM optouts"):
            yield AuditFact(pro, e164, _at(added))

    def departments(self) -> Iterator[tuple[str, str]]:
        yield from self._conn.execute("SELECT e164, department FROM departments")

    def current_snapshots(self) -> Iterator[AuditSnapshot]:
        for pro, sid, snap_date, kind, imported in self._conn.execute(
                "SELECT professional, id, snapshot_date, kind, imported_at FROM bloctel_snapshots"
                " WHERE state='current'"):
            yield AuditSnapshot(pro, sid, date.fromisoformat(snap_date), kind, _at(imported))

    def listed(self, snapshot_id: int, e164: str) -> bool:
        """Whether the callee is in snapshot `snapshot_id`: one rowid probe."""
        try:
            number = e164_int(e164)
        except ValueError:
            return False
        return self._conn.execute(
            f"SELECT 1 FROM {snapshot_table(snapshot_id)} WHERE e164=?",  # noqa: S608 - int id
            (number,)).fetchone() is not None


def _span(since: datetime | None, until: datetime | None) -> dict[str, str | None]:
    return {"since": ts(since) if since else None, "until": ts(until) if until else None}


class AuditReads(Database):
    @contextlib.contextmanager
    def audit_view(self) -> Iterator[SqliteAuditView]:
        """One read transaction for the whole audit (a repeatable snapshot on
        both engines); it never blocks the live checks."""
        with self.transaction(immediate=False) as conn:
            yield SqliteAuditView(conn)
