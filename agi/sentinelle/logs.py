"""Structured log lines: one JSON object per event.

JSON, because every value that reaches a log (caller ID names, campaign
names, raw dialled strings) is attacker-controlled: json.dumps escapes
newlines and quotes, so no input can forge a second log line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

SECRET_KEYS = frozenset({"password", "secret", "token", "authorization"})
# One encoder, built once (json.dumps with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)
_SECRET_SEEN: dict[str, bool] = {}  # field names are code-defined: a small, stable set


def _is_secret(key: str) -> bool:
    secret = _SECRET_SEEN.get(key)
    if secret is None:
        secret = _SECRET_SEEN[key] = key.lower() in SECRET_KEYS
        if len(_SECRET_SEEN) > 4096:  # never grows without bound, whatever the callers
            _SECRET_SEEN.clear()
    return secret


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
            for k in fields:
                if _is_secret(k):
                    data[k] = "***"
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(data)


def setup(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sentinelle")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured line. Builds the record directly: Logger.log would walk
    the stack for a file and line number nobody prints (a decision line is
    logged for every check)."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "(unknown file)", 0, msg, (), None,
                                        extra={"fields": fields}))


def read_events(lines: Iterable[str], msg: str) -> list[dict[str, Any]]:
    """The structured lines with this `msg` (e.g. "decision") from a log;
    other lines (tracebacks, foreign output) are skipped, not fatal."""
    out = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("msg") == msg:
            out.append(data)
    return out
