"""Everything that touches the database goes through this module.

One module so that a PostgreSQL backend can follow for multi-PBX sites: the
rest of sentinelle sees `Store` methods and the plain dataclasses of
`rules`, never SQL. The default backend is one SQLite file in WAL mode.

Why the choices below:
- `check_and_record` runs the read of the history, the pure decision and the
  insert of the attempt inside ONE `BEGIN IMMEDIATE` transaction: SQLite
  takes the write lock first, so two agents dialling the same number at the
  same instant are serialised and can never make a fifth attempt (R-30).
- Every failure (missing file, lock held too long, corruption, read-only)
  surfaces as `StoreError`; callers turn it into a BLOCK (fail closed).
- The file's identity is checked before each use: a store deleted or
  replaced under a running service must not be written to as a ghost inode.
- A Bloctel snapshot lives in its own table (`bloctel_<id>`, numbers as
  INTEGER PRIMARY KEY): lookups are one B-tree probe, the load is committed
  in small batches while marked `loading` so live checks are never starved,
  and the switch to the new snapshot is one tiny transaction. A crash in the
  middle leaves the previous snapshot current; the orphan is swept later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

import sqlite_utils

from sentinelle import logs
from sentinelle.core.model import Bloctel, Consent, Decision, History

SCHEMA_VERSION = 2  # v2: attempts.disposition (ARI listener)
HISTORY_HORIZON = timedelta(days=62)  # covers R-30 (30 d) and R-31 (60 d) with DST slack
BLOCTEL_BATCH = 10_000  # rows per load transaction: ~5-10 ms of write lock when sorted

T = TypeVar("T")
_log = logging.getLogger("sentinelle.store")


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY ("database is locked") and SQLITE_LOCKED: transient."""
    return "locked" in str(exc) or "busy" in str(exc)


class StoreError(RuntimeError):
    """The store cannot be used right now; the reason is meant for logs and decisions."""


class StoreBusy(StoreError):
    """Another connection holds the lock: nothing was written, try again."""


def ts(instant: datetime) -> str:
    """One fixed UTC text format, so that SQL string comparison is time order."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: sentinelle only stores aware instants")
    # isoformat is ~5x faster than strftime on the hot path, same text.
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


def from_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def e164_int(e164: str) -> int:
    """Bloctel tables key numbers as integers: half the size of text, faster probes."""
    return int(e164.lstrip("+"))


@dataclass(frozen=True, slots=True)
class ConsentProof:
    """What the professional must be able to prove for each consent (R-11)."""

    source: str
    given_at: datetime
    channel: str = ""
    wording: str = ""
    evidence_ref: str = ""
    slot_from: datetime | None = None
    slot_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: int
    professional: str
    snapshot_date: date
    kind: str
    count: int
    imported_at: datetime


_SCHEMA: dict[str, dict[str, Any]] = {
    "meta": {"columns": {"key": str, "value": str}, "pk": "key"},
    "bloctel_snapshots": {
        "columns": {"id": int, "professional": str, "snapshot_date": str, "kind": str,
                    "table_name": str, "count": int, "state": str, "imported_at": str,
                    "source": str},
        "pk": "id",
        "indexes": [["professional", "state"]],
    },
    "optouts": {
        "columns": {"professional": str, "e164": str, "added_at": str, "source": str},
        "pk": ("professional", "e164"),
    },
    "consents": {
        "columns": {"id": int, "professional": str, "e164": str, "given_at": str, "source": str,
                    "channel": str, "wording": str, "evidence_ref": str, "slot_from": str,
                    "slot_until": str, "revoked_at": str, "recorded_at": str},
        "pk": "id",
        "indexes": [["professional", "e164"], ["e164"]],
    },
    "contracts": {
        "columns": {"professional": str, "e164": str, "product": str, "added_at": str},
        "pk": ("professional", "e164"),
    },
    "departments": {"columns": {"e164": str, "department": str}, "pk": "e164"},
    "refusals": {
        "columns": {"id": int, "professional": str, "campaign": str, "e164": str, "at": str,
                    "source": str, "attempt_id": int, "recorded_at": str},
        "pk": "id",
        "indexes": [["professional", "e164", "at"], ["e164"]],
    },
    "attempts": {
        "columns": {"id": int, "professional": str, "campaign": str, "e164": str, "at": str,
                    "decision_id": int, "outcome": str, "answered_at": str, "ended_at": str,
                    "cause": int, "cause_txt": str, "disposition": str},
        "pk": "id",
        "indexes": [["professional", "e164", "at"], ["e164"], ["at"]],
    },
    "decisions": {
        "columns": {"id": int, "at": str, "source": str, "campaign": str, "professional": str,
                    "dialled": str, "e164": str, "caller_id": str, "verdict": str, "rules": str,
                    "reasons": str, "regime": str, "retry_at": str, "attempt_id": int,
                    "inputs": str},
        "pk": "id",
        "indexes": [["e164"], ["at"]],
    },
}


class Store:
    """A connection to the sentinelle store; not shared between threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        busy_timeout_ms: int = 1500,
        synchronous: str = "normal",
        wal_autocheckpoint: int | None = None,
    ) -> None:
        """`wal_autocheckpoint=0` keeps SQLite's automatic WAL checkpoint out
        of this connection's commits (the FastAGI worker: a checkpoint inside
        a check is a latency spike); whoever sets it must checkpoint from
        elsewhere (see `Checkpointer`). None keeps SQLite's default (1000)."""
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous.upper()
        self.wal_autocheckpoint = wal_autocheckpoint
        self._identity: tuple[int, int] | None = None
        self._conn: sqlite3.Connection | None = None
        self._connect(create)

    # -- connection lifecycle -----------------------------------------------

    def _connect(self, create: bool) -> None:
        memory = self.path == ":memory:"
        if not memory and not create and not Path(self.path).exists():
            raise StoreError(f"store missing: {self.path} (run an import or `sentinelle init`)")
        try:
            if memory:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                mode = "rwc" if create else "rw"
                uri = f"file:{pathname2url(os.path.abspath(self.path))}?mode={mode}"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if not memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.synchronous == 'FULL' else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.wal_autocheckpoint is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(self.wal_autocheckpoint)}")
            self._conn = conn
            self._migrate()
        except sqlite3.Error as exc:
            self.close()
            kind = StoreBusy if _is_busy(exc) else StoreError
            raise kind(f"cannot open store {self.path}: {exc}") from exc
        if not memory:
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)

    def _migrate(self) -> None:
        assert self._conn is not None
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"store schema v{version} is newer than this sentinelle (v{SCHEMA_VERSION})")
        db = sqlite_utils.Database(self._conn)
        with self._tx():
            for name, spec in _SCHEMA.items():
                table = db.table(name)
                table.create(spec["columns"], pk=spec["pk"], if_not_exists=True)
                # Columns added by later versions (v2: attempts.disposition):
                # an older store gains them in place, nothing is rewritten.
                for col, kind in spec["columns"].items():
                    if col not in table.columns_dict:
                        table.add_column(col, kind)
                for cols in spec.get("indexes", []):
                    table.create_index(cols, if_not_exists=True)
            self._conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS refusals_attempt "
                               "ON refusals(attempt_id) WHERE attempt_id IS NOT NULL")
            # The decision log is evidence: rows are appended, never edited.
            self._conn.execute(
                "CREATE TRIGGER IF NOT EXISTS decisions_append_only BEFORE UPDATE ON decisions "
                "BEGIN SELECT RAISE(ABORT, 'decision log is append-only'); END"
            )
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def set_busy_timeout(self, ms: int) -> None:
        """How long the next statements wait for a lock (the FastAGI worker
        bounds it by each request's deadline); kept across reconnects."""
        self.busy_timeout_ms = max(0, int(ms))
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """Reconnect lazily after a fault, and refuse a file deleted or replaced
        under us (it would silently swallow records)."""
        if self._identity is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self.close()
                raise StoreError(f"store file disappeared: {self.path}") from None
            if (st.st_dev, st.st_ino) != self._identity:
                self.close()
                self._identity = None
        if self._conn is None:
            self._connect(create=False)
        assert self._conn is not None
        return self._conn

    @contextlib.contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._conn if self._conn is not None else self.conn
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction whose SQLite errors become StoreError (fail closed)."""
        try:
            self.conn  # noqa: B018 - identity check and lazy reconnect
            with self._tx(immediate) as conn:
                yield conn
        except sqlite3.Error as exc:
            self._drop_after(exc)
            kind = StoreBusy if _is_busy(exc) else StoreError
            raise kind(f"store error ({self.path}): {exc}") from exc

    def _drop_after(self, exc: sqlite3.Error) -> None:
        """Locks are transient; anything else may be a replaced or corrupt file:
        reopen next time rather than keep a poisoned connection."""
        if not _is_busy(exc):
            self.close()

    # -- the hot path --------------------------------------------------------

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
            history = self._history(conn, professional, e164, at)
            decision = decide(history)
            if record:
                attempt_id = None
                if decision.allowed and decision.counts:
                    attempt_id = conn.execute(
                        "INSERT INTO attempts (professional, campaign, e164, at) VALUES (?,?,?,?)",
                        (professional, decision.campaign, e164, ts(at)),
                    ).lastrowid
                decision_id = self._log(conn, decision, source, attempt_id, inputs, history)
                if attempt_id is not None:
                    conn.execute("UPDATE attempts SET decision_id=? WHERE id=?",
                                 (decision_id, attempt_id))
                    decision = replace(decision, attempt_id=attempt_id)
            return decision

    def log_decision(self, decision: Decision, source: str,
                     inputs: dict[str, Any] | None = None) -> int:
        """Decisions taken without a history read (R-01, R-00, faults) are logged too."""
        with self.transaction() as conn:
            return self._log(conn, decision, source, None, inputs, None)

    def _log(self, conn: sqlite3.Connection, d: Decision, source: str, attempt_id: int | None,
             inputs: dict[str, Any] | None, history: History | None) -> int:
        data = dict(inputs or {})
        data["notes"] = list(d.notes)
        if history is not None:
            data["history"] = _history_summary(history)
        cur = conn.execute(
            "INSERT INTO decisions (at, source, campaign, professional, dialled, e164, caller_id,"
            " verdict, rules, reasons, regime, retry_at, attempt_id, inputs)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ts(d.at), source, d.campaign, d.professional, d.dialled,
             d.callee.e164 if d.callee else None, d.caller_id, d.verdict.value,
             ",".join(d.rules), json.dumps(list(d.reasons), ensure_ascii=False), d.regime,
             ts(d.retry_at) if d.retry_at else None, attempt_id,
             json.dumps(data, ensure_ascii=False, default=str)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def history(self, professional: str, e164: str, at: datetime) -> History:
        with self.transaction(immediate=False) as conn:
            return self._history(conn, professional, e164, at)

    def _history(self, conn: sqlite3.Connection, professional: str, e164: str,
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
            "SELECT EXISTS(SELECT 1 FROM contracts WHERE professional=?1 AND e164=?2),"
            " EXISTS(SELECT 1 FROM optouts WHERE professional=?1 AND e164=?2),"
            " (SELECT department FROM departments WHERE e164=?2),"
            " s.id, s.snapshot_date, s.kind FROM (SELECT 1)"
            " LEFT JOIN bloctel_snapshots s ON s.professional=?1 AND s.state='current'",
            key).fetchone()
        return History(
            attempts=attempts, refusals=refusals, consents=consents, contract=bool(contract),
            opted_out=bool(opted_out),
            bloctel=None if sid is None else self._listed(conn, sid, snap_date, kind, e164),
            department=dept,
        )

    @staticmethod
    def _listed(conn: sqlite3.Connection, sid: int, snap_date: str, kind: str,
                e164: str) -> Bloctel:
        """Where the callee stands in snapshot `sid`: one rowid probe."""
        try:
            number = e164_int(e164)
        except ValueError:
            number = -1
        listed = conn.execute(
            f"SELECT 1 FROM {_snapshot_table(sid)} WHERE e164=?",  # noqa: S608 - int id
            (number,)).fetchone() is not None
        return Bloctel(date.fromisoformat(snap_date), kind, listed)

    # -- facts entered by admins, the CLI or the ARI listener ---------------

    def add_refusal(self, professional: str, campaign: str, e164: str, at: datetime,
                    source: str, attempt_id: int | None = None) -> bool:
        """R-31. Idempotent per attempt: a refusal seen by DTMF and by agent
        disposition for the same call is one refusal. Returns True if new.
        Consents given before it are revoked (R-31 under fr-2026)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO refusals (professional, campaign, e164, at, source,"
                " attempt_id, recorded_at) VALUES (?,?,?,?,?,?,?)",
                (professional, campaign, e164, ts(at), source, attempt_id, ts(_now())))
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE consents SET revoked_at=? WHERE professional=? AND e164=?"
                " AND given_at<=? AND revoked_at IS NULL",
                (ts(at), professional, e164, ts(at)))
            return True

    def add_consent(self, professional: str, e164: str, proof: ConsentProof) -> int:
        with self.transaction() as conn:
            return self._insert_consent(conn, professional, e164, proof)

    @staticmethod
    def _insert_consent(conn: sqlite3.Connection, professional: str, e164: str,
                        p: ConsentProof) -> int:
        cur = conn.execute(
            "INSERT INTO consents (professional, e164, given_at, source, channel, wording,"
            " evidence_ref, slot_from, slot_until, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (professional, e164, ts(p.given_at), p.source, p.channel, p.wording, p.evidence_ref,
             ts(p.slot_from) if p.slot_from else None,
             ts(p.slot_until) if p.slot_until else None, ts(_now())))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def revoke_consent(self, professional: str, e164: str, at: datetime) -> int:
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE consents SET revoked_at=? WHERE professional=? AND e164=?"
                " AND revoked_at IS NULL", (ts(at), professional, e164)).rowcount

    def add_contract(self, professional: str, e164: str, product: str = "") -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO contracts VALUES (?,?,?,?)",
                         (professional, e164, product, ts(_now())))

    def set_optout(self, professional: str, e164: str, present: bool, source: str = "cli") -> bool:
        """R-12. Returns whether anything changed."""
        with self.transaction() as conn:
            if present:
                return conn.execute("INSERT OR IGNORE INTO optouts VALUES (?,?,?,?)",
                                    (professional, e164, ts(_now()), source)).rowcount > 0
            return conn.execute("DELETE FROM optouts WHERE professional=? AND e164=?",
                                (professional, e164)).rowcount > 0

    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Consents, contracts or departments from a validated import: one
        transaction, so a failure leaves nothing half-imported."""
        count = 0
        with self.transaction() as conn:
            for row in rows:
                if table == "consents":
                    proof = row["proof"]
                    self._insert_consent(conn, row["professional"], row["e164"], proof)
                elif table == "contracts":
                    conn.execute("INSERT OR REPLACE INTO contracts VALUES (?,?,?,?)",
                                 (row["professional"], row["e164"], row.get("product", ""),
                                  ts(_now())))
                elif table == "departments":
                    conn.execute("INSERT OR REPLACE INTO departments VALUES (?,?)",
                                 (row["e164"], row["department"]))
                else:
                    raise ValueError(f"unknown import table {table!r}")
                count += 1
        return count

    # -- Bloctel snapshots -------------------------------------------------

    def begin_snapshot(self, professional: str, snapshot_date: date, kind: str, source: str) -> int:
        self.sweep_loading()
        with self.transaction() as conn:
            sid = conn.execute(
                "INSERT INTO bloctel_snapshots (professional, snapshot_date, kind, table_name,"
                " count, state, imported_at, source) VALUES (?,?,?,?,0,'loading',?,?)",
                (professional, snapshot_date.isoformat(), kind, "", ts(_now()), source),
            ).lastrowid
            assert sid is not None
            conn.execute(f"CREATE TABLE {_snapshot_table(sid)} (e164 INTEGER PRIMARY KEY)")
            conn.execute("UPDATE bloctel_snapshots SET table_name=? WHERE id=?",
                         (_snapshot_table(sid), sid))
        return sid

    def load_snapshot(self, sid: int, numbers: Iterable[int]) -> None:
        """Append a batch in one short transaction; duplicates are harmless.

        Pass batches in ascending order when you can: the B-tree then only
        grows at its right edge, while random order dirties pages all over a
        10 M-row table and writes far more WAL. The batch is bound as one JSON
        array (json_each): one statement instead of one bind per row."""
        data = "[" + ",".join(map(str, map(int, numbers))) + "]"
        with self.transaction() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO {_snapshot_table(sid)} (e164)"  # noqa: S608 - int id
                " SELECT value FROM json_each(?)", (data,))

    def commit_snapshot(self, sid: int) -> int:
        """The atomic switch: the new snapshot becomes current, the old one goes."""
        with self.transaction() as conn:
            row = conn.execute("SELECT professional FROM bloctel_snapshots WHERE id=? AND"
                               " state='loading'", (sid,)).fetchone()
            if row is None:
                raise StoreError(f"snapshot {sid} is not being loaded")
            count = conn.execute(f"SELECT count(*) FROM {_snapshot_table(sid)}").fetchone()[0]  # noqa: S608
            old = [r[0] for r in conn.execute(
                "SELECT id FROM bloctel_snapshots WHERE professional=? AND state='current'",
                (row[0],))]
            for oid in old:
                conn.execute(f"DROP TABLE IF EXISTS {_snapshot_table(oid)}")
                conn.execute("UPDATE bloctel_snapshots SET state='replaced' WHERE id=?", (oid,))
            conn.execute("UPDATE bloctel_snapshots SET state='current', count=? WHERE id=?",
                         (count, sid))
        return count

    def abort_snapshot(self, sid: int) -> None:
        with self.transaction() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {_snapshot_table(sid)}")
            conn.execute("UPDATE bloctel_snapshots SET state='aborted' WHERE id=?", (sid,))

    def sweep_loading(self) -> int:
        """Drop snapshots left `loading` by a killed import. Only called by a new
        import, which is the one process that may own loading snapshots."""
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM bloctel_snapshots WHERE state='loading'")]
            for sid in ids:
                conn.execute(f"DROP TABLE IF EXISTS {_snapshot_table(sid)}")
                conn.execute("UPDATE bloctel_snapshots SET state='aborted' WHERE id=?", (sid,))
        return len(ids)

    def snapshots(self, professional: str | None = None) -> list[Snapshot]:
        with self.transaction(immediate=False) as conn:
            rows = conn.execute(
                "SELECT id, professional, snapshot_date, kind, count, imported_at"
                " FROM bloctel_snapshots WHERE state='current' AND (? IS NULL OR professional=?)"
                " ORDER BY professional", (professional, professional)).fetchall()
        return [Snapshot(r[0], r[1], date.fromisoformat(r[2]), r[3], r[4],
                         datetime.fromisoformat(r[5])) for r in rows]

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

    # -- outcomes (ARI listener) -------------------------------------------

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

    # -- reading for people -------------------------------------------------

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
        if table not in _SCHEMA:
            raise ValueError(f"unknown table {table!r}")
        with self.transaction(immediate=False) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608

    def run(self, fn: Callable[[sqlite3.Connection], T], immediate: bool = False) -> T:
        """For tests and tools that need a raw read (e.g. the invariant checker)."""
        with self.transaction(immediate=immediate) as conn:
            return fn(conn)

    # -- evidence: export, retention, erasure --------------------------------
    # The SQL behind `sentinelle export/explain/report/purge/forget` (modules
    # export, explain, report, retention). Reads run in plain read
    # transactions: in WAL mode they never block the live checks, and one
    # transaction gives an export a consistent snapshot. Writes (purge,
    # forget) are short transactions so a check never waits long for the lock.

    # table -> the instant a row is filed under (export ranges, purge)
    EVIDENCE_TIME = (("decisions", "at"), ("attempts", "at"), ("refusals", "at"),
                     ("consents", "given_at"))
    # table -> when a row is past retention. Named parameters: cutoff (now -
    # retention), consent_cutoff (cutoff - consent_max_age: the consent could
    # not justify any call after cutoff), erased_attempts / erased_refusals
    # (minimal rows kept by `forget` go once no longer need them).
    # Never purged by age: optouts (R-12 holds until an admin removes it),
    # contracts and departments (states, not events), the current snapshots.
    PURGE_WHERE = (
        ("decisions", "at < :cutoff"),
        ("attempts", "at < :cutoff OR (outcome = 'erased' AND at < :erased_attempts)"),
        ("refusals", "at < :cutoff OR (source = 'erased' AND at < :erased_refusals)"),
        ("consents", "(revoked_at IS NOT NULL AND revoked_at < :cutoff)"
                     " OR given_at < :consent_cutoff"),
        ("bloctel_snapshots", "state IN ('replaced', 'aborted') AND imported_at < :cutoff"),
    )

    @contextlib.contextmanager
    def evidence_rows(
        self, table: str, start: datetime, end: datetime, *, campaign: str | None = None,
        professional: str | None = None, chunk: int = 1000,
    ) -> Iterator[tuple[list[str], Iterator[tuple[Any, ...]]]]:
        """Rows of an evidence table filed in [start, end), oldest first, read in
        chunks inside one read transaction: constant memory on any volume, and
        a consistent snapshot while the service keeps writing."""
        time_col = dict(self.EVIDENCE_TIME)[table]
        where = [f"{time_col} >= :start", f"{time_col} < :end"]
        if campaign is not None:
            where.append("campaign = :campaign")
        if professional is not None:
            where.append("professional = :professional")
        sql = (f"SELECT * FROM {table} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed names
               f" ORDER BY {time_col}, rowid")
        params = {"start": ts(start), "end": ts(end), "campaign": campaign,
                  "professional": professional}
        with self.transaction(immediate=False) as conn:
            cur = conn.execute(sql, params)
            columns = [c[0] for c in cur.description]

            def rows() -> Iterator[tuple[Any, ...]]:
                while batch := cur.fetchmany(chunk):
                    yield from batch

            yield columns, rows()

    def iter_calls(self, start: datetime, end: datetime, campaign: str | None = None
                   ) -> Iterator[tuple[str, str, str, bool]]:
        """(e164, UTC hour 'YYYY-MM-DDTHH', verdict, placed) of every decision on
        a parsed number: the report's calls-per-local-hour chart. Consume it
        fully (it holds a read transaction while it runs)."""
        with self.transaction(immediate=False) as conn:
            cur = conn.execute(
                "SELECT e164, substr(at, 1, 13), verdict, attempt_id IS NOT NULL FROM decisions"
                " WHERE at >= ? AND at < ? AND e164 IS NOT NULL AND (? IS NULL OR campaign = ?)",
                (ts(start), ts(end), campaign, campaign))
            while batch := cur.fetchmany(5000):
                yield from batch

    def iter_attempt_series(self, start: datetime, end: datetime,
                            professional: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(professional, e164, at) ordered by callee then time: R-30 windows
        are per (professional, callee), so each series is scanned once."""
        with self.transaction(immediate=False) as conn:
            cur = conn.execute(
                "SELECT professional, e164, at FROM attempts WHERE at >= ? AND at < ?"
                " AND (? IS NULL OR professional = ?) ORDER BY professional, e164, at",
                (ts(start), ts(end), professional, professional))
            while batch := cur.fetchmany(5000):
                yield from batch

    def evidence_groups(self, start: datetime, end: datetime, campaign: str | None = None
                        ) -> dict[str, list[tuple[Any, ...]]]:
        """Small GROUP BY results for the report (blocks by rule and hour,
        outcomes and refusals per campaign, legal basis of the calls placed)."""
        p = {"start": ts(start), "end": ts(end), "campaign": campaign}
        queries = {
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
            "basis": "SELECT a.professional, a.campaign, d.regime,"
                     " json_extract(d.inputs, '$.history.contract'), count(*)"
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
                     " AND inputs LIKE '%R-22 consent slot%'",
            # the oldest Bloctel snapshot fr-2023 decisions saw each (UTC) day,
            # and how many saw none: what R-10 actually relied on
            "bloctel": "SELECT professional, substr(at, 1, 10),"
                       " min(json_extract(inputs, '$.history.bloctel.snapshot_date')),"
                       " sum(json_extract(inputs, '$.history.bloctel') IS NULL) FROM decisions"
                       " WHERE at >= :start AND at < :end AND regime = 'fr-2023'"
                       " AND inputs LIKE '%\"history\"%'"
                       " AND (:campaign IS NULL OR campaign = :campaign) GROUP BY 1, 2",
            "consents_given": "SELECT professional, count(*) FROM consents"
                              " WHERE given_at >= :start AND given_at < :end GROUP BY 1",
        }
        with self.transaction(immediate=False) as conn:
            return {name: conn.execute(sql, p).fetchall() for name, sql in queries.items()}

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
                    " sum(revoked_at IS NULL AND given_at >= ? AND given_at <= ?),"
                    " sum(revoked_at IS NULL AND given_at >= ? AND given_at < ?),"
                    " sum(revoked_at IS NOT NULL), count(*) FROM consents GROUP BY 1",
                    (valid_from, ts(now), valid_from, soon)).fetchall(),
                "contracts": conn.execute(
                    "SELECT professional, count(*) FROM contracts GROUP BY 1").fetchall(),
                "optouts": conn.execute(
                    "SELECT professional, count(*) FROM optouts GROUP BY 1").fetchall(),
            }

    def _purge_sql(self, table: str) -> str:
        return dict(self.PURGE_WHERE)[table]

    @staticmethod
    def _purge_params(bounds: dict[str, datetime]) -> dict[str, str]:
        names = ("cutoff", "consent_cutoff", "erased_attempts", "erased_refusals")
        return {k: ts(bounds[k]) for k in names}

    def count_expired(self, table: str, bounds: dict[str, datetime]) -> int:
        """How many rows `purge` would delete (`--dry-run`)."""
        with self.transaction(immediate=False) as conn:
            return conn.execute(
                f"SELECT count(*) FROM {table} WHERE {self._purge_sql(table)}",  # noqa: S608
                self._purge_params(bounds)).fetchone()[0]

    def expired_rowids(self, table: str, bounds: dict[str, datetime], after: int,
                       limit: int) -> list[int]:
        """The next `limit` expired rowids after `after`. A read transaction:
        finding the rows, the slow part, never holds the write lock."""
        with self.transaction(immediate=False) as conn:
            return [r[0] for r in conn.execute(
                f"SELECT rowid FROM {table} WHERE rowid > :after"  # noqa: S608 - fixed names
                f" AND ({self._purge_sql(table)}) ORDER BY rowid LIMIT :limit",
                {**self._purge_params(bounds), "after": after, "limit": limit})]

    def delete_expired(self, table: str, bounds: dict[str, datetime], rowids: list[int]) -> int:
        """Delete these rows in one short write transaction, re-checking that
        each is still expired (a row may have changed since it was found).
        secure_delete=FAST zeroes the deleted cells that share a page with
        live data at no extra I/O."""
        params = self._purge_params(bounds)
        sql = (f"DELETE FROM {table} WHERE rowid = :rowid"  # noqa: S608 - fixed names
               f" AND ({self._purge_sql(table)})")
        with self.transaction() as conn:
            conn.execute("PRAGMA secure_delete = FAST")
            deleted = 0
            for rowid in rowids:
                deleted += conn.execute(sql, {**params, "rowid": rowid}).rowcount
            return deleted

    def forget_number(
        self, e164: str, *, keep_attempts_since: datetime, keep_refusals_since: datetime,
        dialled_is_number: Callable[[str], bool],
    ) -> dict[str, dict[str, int]]:
        """Erasure request (`sentinelle forget`), in one transaction with
        secure_delete on (deleted bytes are overwritten, not left in free
        pages). What is kept, and why, is in retention.forget's docstring.
        Returns {table: {"deleted": n, "kept": n}}."""
        out: dict[str, dict[str, int]] = {}
        conn = self.conn
        conn.execute("PRAGMA secure_delete = ON")
        try:
            with self.transaction() as tx:
                stray = [r[0] for r in tx.execute(
                    "SELECT id, dialled FROM decisions WHERE e164 IS NULL AND dialled IS NOT NULL")
                    if dialled_is_number(r[1])]
                n = tx.execute("DELETE FROM decisions WHERE e164=?", (e164,)).rowcount
                n += sum(tx.execute("DELETE FROM decisions WHERE id=?", (i,)).rowcount
                         for i in stray)
                out["decisions"] = {"deleted": n, "kept": 0}
                keep_a = ts(keep_attempts_since)
                n = tx.execute("DELETE FROM attempts WHERE e164=? AND at<?", (e164, keep_a)).rowcount
                kept = tx.execute(
                    "UPDATE attempts SET campaign='', decision_id=NULL, outcome='erased',"
                    " answered_at=NULL, ended_at=NULL, cause=NULL, cause_txt=NULL,"
                    " disposition=NULL WHERE e164=?", (e164,)).rowcount
                out["attempts"] = {"deleted": n, "kept": kept}
                keep_r = ts(keep_refusals_since)
                n = tx.execute("DELETE FROM refusals WHERE e164=? AND at<?", (e164, keep_r)).rowcount
                kept = tx.execute(
                    "UPDATE refusals SET campaign='', source='erased', attempt_id=NULL,"
                    " recorded_at=NULL WHERE e164=?", (e164,)).rowcount
                out["refusals"] = {"deleted": n, "kept": kept}
                for table in ("consents", "contracts", "departments"):
                    n = tx.execute(f"DELETE FROM {table} WHERE e164=?", (e164,)).rowcount  # noqa: S608
                    out[table] = {"deleted": n, "kept": 0}
                kept = tx.execute("SELECT count(*) FROM optouts WHERE e164=?", (e164,)).fetchone()[0]
                out["optouts"] = {"deleted": 0, "kept": kept}
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA secure_delete = OFF")
        return out

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it, so erased rows do
        not linger in old WAL frames. False if readers kept it from finishing."""
        try:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"store error ({self.path}): {exc}") from exc
        return busy == 0

    def wal_checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """One WAL checkpoint: (busy, frames in the WAL, frames checkpointed).
        PASSIVE never waits and never blocks writers."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(mode)
        try:
            busy, log_frames, done = self.conn.execute(
                f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            self._drop_after(exc)
            raise StoreError(f"store error ({self.path}): {exc}") from exc
        return int(busy), int(log_frames), int(done)


class Checkpointer:
    """Checkpoints the WAL from its own thread and connection, so that the
    FastAGI worker (opened with `wal_autocheckpoint=0`) never pays for a
    checkpoint inside a check.

    Every `interval_s`: a PASSIVE checkpoint (never waits, never blocks a
    writer). When the WAL file has grown past `truncate_bytes` (a reader kept
    it from being reused, or a burst) and a PASSIVE checkpoint copied every
    frame, a TRUNCATE with a zero busy timeout: it gives up at once rather
    than hold the write lock a check is waiting for. Errors are logged and
    retried on the next tick: the checkpointer can never make a check fail."""

    def __init__(self, path: str, *, interval_s: float = 1.0,
                 truncate_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.interval_s = interval_s
        self.truncate_bytes = truncate_bytes
        self.runs = 0
        self.truncations = 0
        self.errors = 0
        self.frames = 0  # frames copied by PASSIVE checkpoints
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sentinelle-checkpoint",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop and do a last checkpoint, so a clean shutdown leaves a short WAL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.tick()
            self.tick()
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def tick(self) -> None:
        try:
            if self._store is None:
                self._store = Store(self.path, create=False, busy_timeout_ms=0)
            busy, log_frames, done = self._store.wal_checkpoint("PASSIVE")
            self.runs += 1
            self.frames += max(done, 0)
            if busy == 0 and log_frames == done and self._wal_bytes() > self.truncate_bytes:
                busy, _, _ = self._store.wal_checkpoint("TRUNCATE")
                if busy == 0:
                    self.truncations += 1
        except Exception as exc:  # never fatal: retried next tick
            self.errors += 1
            if self._store is not None and not self._store.is_open:
                self._store = None
            if self.errors <= 3 or self.errors % 100 == 0:
                logs.event(_log, "WAL checkpoint failed (retried)", logging.WARNING,
                           error=str(exc), failures=self.errors)

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0


def _snapshot_table(sid: int) -> str:
    return f"bloctel_{int(sid)}"


def _now() -> datetime:
    return datetime.now(UTC)


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
