"""How the store fails, as the rest of sentinelle sees it.

Every failure (missing file, lock held too long, corruption, read-only
disk, a file replaced under a running service) is a `StoreError`, so a
caller has one thing to catch and turn into a BLOCK: a store that cannot
be read is never a reason to let a call through (fail closed). `StoreBusy`
singles out the one transient case, so the FastAGI server can retry it
within the request's deadline instead of blocking at once.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be used right now; the reason is meant for logs and decisions."""


class StoreBusy(StoreError):
    """Another connection holds the lock: nothing was written, try again."""


class SnapshotShrinks(ValueError):
    """A new Bloctel snapshot much smaller than the one it would replace: not a
    store fault (the store is fine), a suspicious file the importer refuses."""

    def __init__(self, new: int, current: int, current_date: str) -> None:
        super().__init__(f"new snapshot of {new} numbers would replace one of {current}")
        self.new, self.current, self.current_date = new, current, current_date


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY ("database is locked") and SQLITE_LOCKED are transient;
    sqlite3 only tells them apart by their message."""
    return "locked" in str(exc) or "busy" in str(exc)
