"""`POST /v1/scrub`: a lead list in (CSV), its verdicts out (CSV or NDJSON),
streamed both ways.

The scrub runs the same pipeline as `sentinelle scrub` on a thread of its
own: the body is read from the event loop as the pipeline asks for it, and
each 64 KB of output is written back as it is ready, so neither side ever
holds the list. One scrub at a time (a second one gets 429): a scrub is
CPU-bound and shares the process with the FastAGI checks.

A scrub that fails midway (store fault) cannot change its 200 status any
more: the connection is cut before the final chunk, which HTTP clients
report as an incomplete response, and an NDJSON output ends with its
`{"summary": ...}` line only when complete.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import StreamReader, web

from sentinelle import logs
from sentinelle.config import ApiClient
from sentinelle.http import bodies
from sentinelle.http.context import Api
from sentinelle.http.decision_routes import _campaign
from sentinelle.http.errors import ApiError, unprocessable
from sentinelle.scrub import (
    LeadsError,
    LeadVerdict,
    Options,
    Scrubber,
    open_leads,
    parse_within,
    scrub,
    serial,
)
from sentinelle.store import open_store

log = logging.getLogger("sentinelle.http")
CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


def routes(api: Api) -> list[web.RouteDef]:
    return [web.post("/v1/scrub", api.route("scrub")(lambda r, c: scrub_route(api, r, c)))]


class _Body(io.RawIOBase):
    """The request body as a blocking file, for the scrub thread: each read
    is a coroutine run on the event loop."""

    def __init__(self, content: StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        self.content = content
        self.loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = asyncio.run_coroutine_threadsafe(self.content.read(len(buffer)),
                                                self.loop).result()
        buffer[: len(data)] = data
        return len(data)


def _options(api: Api, request: web.Request) -> tuple[str, Options, str | None]:
    campaign = bodies.query(request, "campaign", required=True) or ""
    _campaign(api, campaign)
    fmt = bodies.query(request, "format") or "csv"
    if fmt not in CONTENT_TYPES:
        raise unprocessable("format", "must be csv or ndjson")
    sort = bodies.query(request, "sort")
    if sort not in (None, "retry_at"):
        raise unprocessable("sort", "the only order is retry_at")
    within = bodies.query(request, "callable_within")
    try:
        options = Options(
            at=bodies.query_instant(request, "at") or api.clock(),
            callable_only=bodies.query_flag(request, "callable_only"),
            callable_within=parse_within(within) if within else None, sort=sort is not None,
            fmt=fmt, column=bodies.query(request, "column"))
    except LeadsError as exc:
        raise unprocessable(exc.field, exc.message) from None
    return campaign, options, bodies.query(request, "caller_id")


async def scrub_route(api: Api, request: web.Request, client: ApiClient) -> web.StreamResponse:
    campaign, options, caller_id = _options(api, request)
    if api.scrub_lock.locked():
        raise ApiError(429, "a scrub is already running: retry when it ends", None,
                       {"Retry-After": "10"})
    async with api.scrub_lock:
        loop = asyncio.get_running_loop()
        source = io.TextIOWrapper(io.BufferedReader(_Body(request.content, loop)),
                                  encoding="utf-8-sig", errors="replace", newline="")
        try:
            leads = await loop.run_in_executor(api.scrub_executor, open_leads, source, options)
        except LeadsError as exc:
            raise unprocessable(exc.field, exc.message) from None
        response = web.StreamResponse(headers={
            "Content-Type": f"{CONTENT_TYPES[options.fmt]}; charset=utf-8",
            "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        def write(text: str) -> None:
            asyncio.run_coroutine_threadsafe(response.write(text.encode()), loop).result()

        def work() -> dict[str, Any]:
            sc = api.config.store
            with open_store(sc, pool_size=1) as store:
                decide: Callable[[list[str]], list[LeadVerdict]] = Scrubber(
                    api.config, store, campaign, options.at, caller_id).verdicts
                return scrub(leads, serial(decide), options, write).to_dict()

        try:
            summary = await loop.run_in_executor(api.scrub_executor, work)
        except Exception as exc:
            logs.event(log, "scrub cut short: connection closed without the final chunk",
                       logging.ERROR, client=client.name, error=f"{type(exc).__name__}: {exc}")
            if request.transport is not None:
                request.transport.abort()
            return response
        logs.event(log, "scrub", client=client.name, campaign=campaign, **summary)
        await response.write_eof()
        return response
