"""Errors as the API answers them: one JSON shape, naming the field at fault.

A CRM developer reading `{"error": {"field": "given_at", "message": "... in
the future"}}` fixes the integration; a bare 400 sends them to the logs they
cannot read. The same shape for every status keeps the OpenAPI document and
the clients simple.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.field, self.headers)


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"status": status, "field": field, "message": message}}
    return web.Response(status=status, text=json.dumps(body, ensure_ascii=False),
                        content_type="application/json", headers=headers)


def unprocessable(field: str, message: str) -> ApiError:
    return ApiError(422, message, field)
