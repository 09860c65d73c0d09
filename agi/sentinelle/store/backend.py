"""The backend seam: what the rest of sentinelle needs from a store.

SQLite (`store.sqlite.Store`) is the only backend today. A site with
several PBXs needs one store they all write to, with the same guarantee
that two checks of one callee never both see four attempts (R-30): a
PostgreSQL backend will implement this protocol. So the methods below
speak in plain values (datetimes, E.164 strings, `core.model` types, the
dataclasses of `store.values`), never in connections, cursors or SQL, and
each write is one transaction of the backend's own.

What a backend must guarantee, whatever its engine:
- `check_and_record` reads the history, calls `decide` and records the
  attempt atomically with respect to every other `check_and_record` on the
  same (professional, callee): serialised, never interleaved.
- Every failure raises `StoreError` (`StoreBusy` when retrying may help);
  callers turn it into a BLOCK.
- The decision log is append-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

from sentinelle.core.model import Decision, History
from sentinelle.store.values import ConsentProof, Snapshot

# -- what the invariant checker reads (evidence.audit) ---------------------------
# Rows as recorded, times as aware UTC datetimes: the checker re-judges them
# with its own logic, so it gets the facts, not a history shaped for a decision.

class AuditAttempt(NamedTuple):
    id: int
    professional: str
    campaign: str
    e164: str
    at: datetime
    decision_id: int | None


class AuditDecision(NamedTuple):
    id: int
    verdict: str
    e164: str | None


class AuditRefusal(NamedTuple):
    professional: str
    e164: str
    at: datetime
    recorded_at: datetime | None


class AuditConsent(NamedTuple):
    professional: str
    e164: str
    given_at: datetime
    revoked_at: datetime | None
    slot_from: datetime | None
    slot_until: datetime | None


class AuditFact(NamedTuple):
    """A contract or an opposition-list entry, and since when it holds."""

    professional: str
    e164: str
    added_at: datetime


class AuditSnapshot(NamedTuple):
    professional: str
    id: int
    snapshot_date: date
    kind: str
    imported_at: datetime


class AuditSource(Protocol):
    """One consistent view of the recorded facts."""

    def attempts(self, since: datetime | None = None,
                 until: datetime | None = None) -> Iterator[AuditAttempt]: ...
    def attempt_decisions(self, since: datetime | None = None,
                          until: datetime | None = None) -> Iterator[AuditDecision]: ...
    def refusals(self) -> Iterator[AuditRefusal]: ...
    def consents(self) -> Iterator[AuditConsent]: ...
    def contracts(self) -> Iterator[AuditFact]: ...
    def optouts(self) -> Iterator[AuditFact]: ...
    def departments(self) -> Iterator[tuple[str, str]]: ...
    def current_snapshots(self) -> Iterator[AuditSnapshot]: ...
    def listed(self, snapshot_id: int, e164: str) -> bool: ...


@runtime_checkable
class Backend(Protocol):
    @property
    def path(self) -> str:
        """Where the store lives, for messages and reports."""
        ...

    # -- lifecycle ------------------------------------------------------------

    @property
    def is_open(self) -> bool: ...
    def close(self) -> None: ...
    def set_busy_timeout(self, ms: int) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

    # -- the hot path -----------------------------------------------------------

    def check_and_record(
        self, professional: str, e164: str, at: datetime, decide: Callable[[History], Decision],
        *, record: bool, source: str, inputs: dict[str, Any] | None = None,
    ) -> Decision: ...
    def log_decision(self, decision: Decision, source: str,
                     inputs: dict[str, Any] | None = None) -> int: ...
    def history(self, professional: str, e164: str, at: datetime) -> History: ...
    def histories(self, professional: str, e164s: Sequence[str],
                  at: datetime) -> dict[str, History]:
        """`history` of each distinct callee, all read from one snapshot
        (a scrub's batch); the same rows in the same order as `history`."""
        ...

    # -- facts ------------------------------------------------------------------

    def add_refusal(self, professional: str, campaign: str, e164: str, at: datetime,
                    source: str, attempt_id: int | None = None) -> bool: ...
    def add_consent(self, professional: str, e164: str, proof: ConsentProof) -> int: ...
    def revoke_consent(self, professional: str, e164: str, at: datetime) -> int: ...
    def add_contract(self, professional: str, e164: str, product: str = "") -> None: ...
    def set_optout(self, professional: str, e164: str, present: bool,
                   source: str = "cli") -> bool: ...
    def import_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> int: ...

    # -- outcomes (ARI listener) ------------------------------------------------

    def record_outcome(self, attempt_id: int, *, outcome: str, answered_at: datetime | None,
                       ended_at: datetime | None, cause: int | None,
                       cause_txt: str | None) -> bool: ...
    def attempt(self, attempt_id: int) -> dict[str, Any] | None: ...
    def open_attempts(self, since: datetime) -> list[int]: ...
    def close_attempt_unknown(self, attempt_id: int, *, answered_at: datetime | None = None,
                              ended_at: datetime | None = None) -> bool: ...
    def set_disposition(self, attempt_id: int, code: str) -> bool: ...

    # -- Bloctel snapshots ------------------------------------------------------

    def begin_snapshot(self, professional: str, snapshot_date: date, kind: str,
                       source: str) -> int: ...
    def load_snapshot(self, sid: int, numbers: Iterable[int]) -> None: ...
    def commit_snapshot(self, sid: int, shrink_floor: float = 0.0) -> int: ...
    def abort_snapshot(self, sid: int) -> None: ...
    def sweep_loading(self) -> int: ...
    def snapshots(self, professional: str | None = None) -> list[Snapshot]: ...

    # -- evidence reads ---------------------------------------------------------

    def timeline(self, e164: str) -> dict[str, list[dict[str, Any]]]: ...
    def count(self, table: str) -> int: ...
    def evidence_rows(
        self, table: str, start: datetime, end: datetime, *, campaign: str | None = None,
        professional: str | None = None, chunk: int = 1000,
    ) -> AbstractContextManager[tuple[list[str], Iterator[tuple[Any, ...]]]]: ...
    def iter_calls(self, start: datetime, end: datetime, campaign: str | None = None
                   ) -> Iterator[tuple[str, str, str, bool]]: ...
    def iter_attempt_series(self, start: datetime, end: datetime,
                            professional: str | None = None) -> Iterator[tuple[str, str, str]]: ...
    def evidence_groups(self, start: datetime, end: datetime, campaign: str | None = None
                        ) -> dict[str, list[tuple[Any, ...]]]: ...
    def coverage(self, now: datetime, consent_max_age: timedelta,
                 horizon: timedelta = ...) -> dict[str, list[tuple[Any, ...]]]: ...
    def consents_expiring(self, now: datetime, max_age_days: int,
                          within_days: int = 30) -> dict[str, int]: ...

    # -- retention and erasure --------------------------------------------------

    def count_expired(self, table: str, bounds: dict[str, datetime]) -> int: ...
    def expired_rowids(self, table: str, bounds: dict[str, datetime], after: int,
                       limit: int) -> list[int]: ...
    def delete_expired(self, table: str, bounds: dict[str, datetime],
                       rowids: list[int]) -> int: ...
    def forget_number(
        self, e164: str, *, keep_attempts_since: datetime, keep_refusals_since: datetime,
        dialled_is_number: Callable[[str], bool],
    ) -> dict[str, dict[str, int]]: ...
    def checkpoint(self) -> bool:
        """Make erased data unrecoverable from the backend's logs (SQLite: the WAL)."""
        ...

    # -- audit ------------------------------------------------------------------

    def audit_view(self) -> AbstractContextManager[AuditSource]: ...
    def check_integrity(self) -> list[str]:
        """The backend's own consistency check of its storage; problems found."""
        ...
