"""Reading request bodies and query strings into typed values, or a 4xx
naming the field: the handlers then deal only in valid Python values."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from sentinelle.core.clock import parse_instant
from sentinelle.http.errors import ApiError, unprocessable

MAX_JSON_BYTES = 64 * 1024  # one fact: far more than any proof needs


async def json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object with only known keys: an unknown key is a
    typo (`given_at` spelled `givenAt`), and a silently ignored field of a
    proof is a proof lost."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json", "Content-Type")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, f"body over {MAX_JSON_BYTES} bytes", "body")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise unprocessable("body", "not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise unprocessable("body", "must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise unprocessable(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return data


def text(data: dict[str, Any], field: str, *, required: bool = False,
         default: str | None = None) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise unprocessable(field, "required")
        return default
    if not isinstance(value, str):
        raise unprocessable(field, "must be a string")
    return value


def instant(data: dict[str, Any], field: str, *, required: bool = False) -> datetime | None:
    """ISO 8601; without an offset, Paris time (as the CLI reads it)."""
    value = text(data, field, required=required)
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise unprocessable(field, f"{value[:40]!r} is not an ISO 8601 instant "
                                   "(e.g. 2026-12-01T10:30:00+01:00)") from None


def integer(data: dict[str, Any], field: str) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise unprocessable(field, "must be an integer")
    if not 0 < value < 2**63:
        raise unprocessable(field, "must be a positive integer")
    return value


def boolean(data: dict[str, Any], field: str) -> bool:
    value = data.get(field, False)
    if not isinstance(value, bool):
        raise unprocessable(field, "must be true or false")
    return value


def query(request: web.Request, field: str, *, required: bool = False) -> str | None:
    values = request.query.getall(field, [])
    if len(values) > 1:
        raise unprocessable(field, "given more than once")
    if not values or values[0] == "":
        if required:
            raise unprocessable(field, "required")
        return None
    return values[0]


def query_instant(request: web.Request, field: str) -> datetime | None:
    value = query(request, field)
    return None if value is None else instant({field: value}, field)


def query_flag(request: web.Request, field: str) -> bool:
    value = query(request, field)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise unprocessable(field, "must be true or false")
