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
            data.update({k: ("***" if k.lower() in SECRET_KEYS else v) for k, v in fields.items()})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=True, default=str)


def setup(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sentinelle")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})


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
