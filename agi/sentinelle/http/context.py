"""What every handler shares: the config, the clock, the store worker and
the client that made the request.

Store work runs on one worker thread with its own connection, never on the
event loop: the loop also serves FastAGI, and a consent waiting for SQLite's
write lock must not delay a call's check.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from aiohttp import web

from sentinelle import logs
from sentinelle.config import ApiClient, Config
from sentinelle.core.clock import Clock
from sentinelle.facts import FactError
from sentinelle.http.auth import Authenticator, require
from sentinelle.http.errors import ApiError, error_response
from sentinelle.store import AnyStore, StoreError, open_store
from sentinelle.store.idempotency import Ledger

log = logging.getLogger("sentinelle.http")
T = TypeVar("T")
Route = Callable[[web.Request, ApiClient], Awaitable[web.StreamResponse]]


@dataclass
class Api:
    config: Config
    clock: Clock
    auth: Authenticator
    ledger: Ledger | None = None

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinelle-http")
        # Scrubs are long: their own thread, one at a time, so facts and
        # checks never queue behind a million leads.
        self.scrub_executor = ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="sentinelle-scrub")
        self._local = threading.local()
        self.scrub_lock = asyncio.Lock()

    def _store(self) -> AnyStore:
        store: AnyStore | None = getattr(self._local, "store", None)
        if store is None:
            sc = self.config.store
            store = self._local.store = open_store(sc, pool_size=1)
        return store

    async def db(self, fn: Callable[[AnyStore], T]) -> T:
        """Run `fn` with the worker's store connection, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._store()))

    async def ledger_call(self, fn: Callable[[Ledger], T]) -> T | None:
        if self.ledger is None:
            return None
        ledger = self.ledger
        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                lambda: fn(ledger))

    def close(self) -> None:
        def shut() -> None:
            store = getattr(self._local, "store", None)
            if store is not None:
                store.close()
            if self.ledger is not None:
                self.ledger.close()

        self._executor.submit(shut).result(timeout=10)
        self._executor.shutdown(wait=True)
        self.scrub_executor.shutdown(wait=False, cancel_futures=True)

    def route(self, scope: str, *, query_token: bool = False) -> Callable[[Route], Callable[
            [web.Request], Awaitable[web.StreamResponse]]]:
        """A handler that runs only for a client holding `scope`; its facts
        and decisions are filed under that client's name."""
        def wrap(handler: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            @wraps(handler)
            async def run(request: web.Request) -> web.StreamResponse:
                client = self.auth.client(request, query_token=query_token)
                request["client"] = client.name
                require(client, scope)
                return await handler(request, client)
            return run
        return wrap


def source_of(client: ApiClient) -> str:
    """How a fact or decision names the API client that reported it."""
    return f"http:{client.name}"


@web.middleware
async def guard_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[
        web.StreamResponse]]) -> web.StreamResponse:
    """Allow list, errors as JSON, one access log line without the query
    string (a dispo URL's token would be in it)."""
    api: Api = request.app[API]
    t0 = time.monotonic()
    response: web.StreamResponse
    try:
        if not api.auth.peer_allowed(request.remote):
            raise ApiError(403, "address not in http.allow")
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except FactError as exc:
        response = error_response(422, exc.message, exc.field)
    except StoreError as exc:
        logs.event(log, "store error", logging.ERROR, path=request.path, error=str(exc))
        response = error_response(503, "store unavailable: nothing was recorded", None,
                                  {"Retry-After": "5"})
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413...
        response = error_response(exc.status, exc.reason)
    except Exception:
        log.exception("internal error in the HTTP API", extra={"fields": {"path": request.path}})
        response = error_response(500, "internal error: nothing may have been recorded")
    logs.event(log, "http request", method=request.method, path=request.path,
               status=response.status, client=request.get("client"), peer=request.remote,
               ms=round((time.monotonic() - t0) * 1000, 1))
    return response


API: web.AppKey[Api] = web.AppKey("api", Api)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    import json

    return web.Response(status=status, text=json.dumps(data, ensure_ascii=False),
                        content_type="application/json", headers=headers)
