"""Opt-in recording of the ARI event stream, one JSON event per line.

What the listener makes of a call depends on what Asterisk actually emits,
which only a real PBX shows; the end-to-end run records it, and fast tests
replay those recordings through the listener (tests/fixtures/ari/, as
panoramisk does with AMI traffic). Off unless $SENTINELLE_ARI_RECORD names
a file: events carry numbers and channel names, so the file is created
private (0600) and appended to, never truncated.
"""

from __future__ import annotations

import json
import logging
import os
from typing import IO, Any

from sentinelle import logs

RECORD_ENV = "SENTINELLE_ARI_RECORD"

log = logging.getLogger("sentinelle.ari")


class EventRecorder:
    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # Line-buffered: each event is on disk as soon as it is written, so a
        # test can read the file while the service runs.
        self._file: IO[str] | None = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        self.events = 0

    def write(self, event: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        except (OSError, TypeError, ValueError) as exc:  # never at the expense of the listener
            logs.event(log, "ARI recording stopped", logging.WARNING, path=self.path, error=str(exc))
            self.close()
            return
        self.events += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def from_env() -> EventRecorder | None:
    """The recorder $SENTINELLE_ARI_RECORD asks for, if any."""
    path = os.environ.get(RECORD_ENV, "").strip()
    if not path:
        return None
    try:
        recorder = EventRecorder(path)
    except OSError as exc:
        logs.event(log, "ARI recording not started", logging.WARNING, path=path, error=str(exc))
        return None
    logs.event(log, "ARI events recorded (lab use: the file holds numbers and channel names)",
               logging.WARNING, path=path)
    return recorder
