"""What happened to the calls placed: outcomes and agent dispositions,
written by the ARI listener against the attempt each ALLOW recorded.

An attempt counts for R-30 whatever its outcome; these columns are
evidence for people (export, explain, report), never read by the rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sentinelle.store.database import Database
from sentinelle.store.values import ts


class Outcomes(Database):
    def record_outcome(self, attempt_id: int, *, outcome: str, answered_at: datetime | None,
                       ended_at: datetime | None, cause: int | None, cause_txt: str | None) -> bool:
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE attempts SET outcome=?, answered_at=COALESCE(?, answered_at),"
                " ended_at=?, cause=?, cause_txt=? WHERE id=?",
                (outcome, ts(answered_at) if answered_at else None,
                 ts(ended_at) if ended_at else None, cause, cause_txt, attempt_id)).rowcount > 0

    def attempt(self, attempt_id: int) -> dict[str, Any] | None:
        with self.transaction(immediate=False) as conn:
            cur = conn.execute("SELECT * FROM attempts WHERE id=?", (attempt_id,))
            row = cur.fetchone()
            return None if row is None else dict(zip([c[0] for c in cur.description], row,
                                                     strict=True))

    def open_attempts(self, since: datetime) -> list[int]:
        with self.transaction(immediate=False) as conn:
            return [r[0] for r in conn.execute(
                "SELECT id FROM attempts WHERE outcome IS NULL AND at>=?", (ts(since),))]

    def close_attempt_unknown(self, attempt_id: int, *, answered_at: datetime | None = None,
                              ended_at: datetime | None = None) -> bool:
        """The ARI listener lost sight of this call (Asterisk restarted, the
        event stream broke): mark it "unknown" rather than leave it open, but
        never overwrite an outcome already known. Returns True if closed now."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE attempts SET outcome='unknown', answered_at=COALESCE(?, answered_at),"
                " ended_at=COALESCE(?, ended_at) WHERE id=? AND outcome IS NULL",
                (ts(answered_at) if answered_at else None, ts(ended_at) if ended_at else None,
                 attempt_id)).rowcount > 0

    def set_disposition(self, attempt_id: int, code: str) -> bool:
        """The agent's disposition of the call (refused, do-not-call, callback,
        wrong-number), kept with the attempt; the last one keyed wins."""
        with self.transaction() as conn:
            return conn.execute("UPDATE attempts SET disposition=? WHERE id=?",
                                (code, attempt_id)).rowcount > 0
