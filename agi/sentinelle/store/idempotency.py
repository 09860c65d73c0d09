"""`Idempotency-Key` for `POST /v1/consents`: a CRM that retries after a
timeout must not file the same consent twice, and a key reused for another
consent is a bug on its side that it should hear about (409).

The ledger is a small SQLite file beside the store (`<store>.http-keys`), not
a table of the store: it holds no fact the rules read, only, per (client,
key), a SHA-256 of the request body, the status and the consent id, for 24
hours. No number is kept in it, so `forget` has nothing to erase there.

Order of writes: the consent is recorded, then the key. A crash between the
two lets a retry record the consent again (a second identical proof, which
changes no decision); the reverse order could answer "done" for a consent
that was never recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinelle.store.connection import DEFAULTS

TTL = timedelta(hours=24)
MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Entry:
    body_sha256: str
    status: int
    result: dict[str, Any]


def body_hash(client: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{client}\n{canonical}".encode()).hexdigest()


class Ledger:
    """Used from one thread at a time (the API's store worker)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA busy_timeout = {DEFAULTS.busy_timeout_ms}")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS idempotency (client TEXT NOT NULL, key TEXT NOT NULL,"
            " body_sha256 TEXT NOT NULL, status INTEGER NOT NULL, result TEXT NOT NULL,"
            " created_at TEXT NOT NULL, PRIMARY KEY (client, key))")

    def get(self, client: str, key: str, now: datetime) -> Entry | None:
        row = self._conn.execute(
            "SELECT body_sha256, status, result FROM idempotency WHERE client=? AND key=?"
            " AND created_at >= ?", (client, key, _ts(now - TTL))).fetchone()
        return None if row is None else Entry(row[0], int(row[1]), json.loads(row[2]))

    def put(self, client: str, key: str, entry: Entry, now: datetime) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM idempotency WHERE created_at < ?", (_ts(now - TTL),))
            self._conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?,?,?,?,?,?)",
                (client, key, entry.body_sha256, entry.status, json.dumps(entry.result),
                 _ts(now)))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


def _ts(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds")
