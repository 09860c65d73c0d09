"""The HTTP API's listener, on the event loop of `sentinelle serve`.

aiohttp's AppRunner/TCPSite plug into a running asyncio loop: the API
starts and stops beside the FastAGI server and the ARI listener, with no
second server runner and no second loop to keep in step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web

from sentinelle import logs
from sentinelle.config import ApiClient, Config
from sentinelle.core.clock import Clock
from sentinelle.http import decision_routes, facts_routes, scrub_routes
from sentinelle.http.auth import Authenticator
from sentinelle.http.context import API, Api, guard_middleware, json_response
from sentinelle.http.openapi import spec
from sentinelle.store.idempotency import Ledger

log = logging.getLogger("sentinelle.http")


def ledger_path(config: Config) -> str | None:
    path = config.store.path
    return None if path == ":memory:" else f"{path}.http-keys"


def build_app(config: Config, clock: Clock, clients: Iterable[ApiClient]) -> web.Application:
    path = ledger_path(config)
    api = Api(config, clock, Authenticator(clients, config.http.allow),
              Ledger(path) if path else None)
    app = web.Application(middlewares=[guard_middleware])
    app[API] = api
    document = spec()

    async def openapi(request: web.Request) -> web.Response:
        return json_response(document)

    app.add_routes([web.get("/openapi.json", openapi),
                    *facts_routes.routes(api), *decision_routes.routes(api),
                    *scrub_routes.routes(api)])

    async def close(app: web.Application) -> None:
        app[API].close()

    app.on_cleanup.append(close)
    return app


class HttpServer:
    def __init__(self, config: Config, clock: Clock, clients: Iterable[ApiClient]) -> None:
        self.config = config
        self.app = build_app(config, clock, clients)
        # No access log of aiohttp's own: it prints query strings, where a
        # dispo URL carries its token. The middleware logs path and status.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.port: int | None = None

    async def start(self) -> tuple[str, int]:
        await self._runner.setup()
        http = self.config.http
        site = web.TCPSite(self._runner, http.host, http.port, reuse_address=True)
        await site.start()
        server = site._server  # the bound socket: the port when listen ends in :0
        sockets = getattr(server, "sockets", None) or []
        host, port = (sockets[0].getsockname()[:2] if sockets else (http.host, http.port))
        self.port = port
        logs.event(log, "HTTP API listening", host=host, port=port)
        return host, port

    async def stop(self) -> None:
        await self._runner.cleanup()
