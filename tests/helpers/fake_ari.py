"""A fake Asterisk ARI for `serve --check-config`'s live check (pbx/livecheck.py),
answering as Asterisk 22.10 was seen to answer (tests/e2e/test_livecheck_e2e.py
runs the same check on the real one):

- every request needs the Basic credentials (401 otherwise, websocket too);
- `GET /asterisk/variable` reads globals only, no function;
- `POST /channels/create` makes a channel only for an app whose websocket is
  open (Asterisk answers 200 otherwise and the channel is gone at once), 403
  "Write access denied" for a read-only user; `DELETE` sends the app its
  StasisEnd and ChannelDestroyed;
- `GET /channels/{id}/variable` evaluates `DIALPLAN_EXISTS(ctx)` ("1" or
  "0") and `AST_CONFIG(features.conf,applicationmap,NAME)` (HTTP 500 when
  absent); 404 for an unknown channel;
- `GET /asterisk/config/dynamic/res_ari/general/general` lists res_ari's
  settings, channelvars always present ("" when not set).

Its PBX starts as README "Install in your PBX" leaves it: the contexts and
applicationmap lines of the shipped dialplan/*.conf (read from the files,
not from the Python constants the check uses), `channelvars =
SENTINELLE_ATTEMPT` and the `SENTINELLE_AGI` global. Tests take pieces out.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan"
USER, PASSWORD = "sentinelle", "s3cret/with+chars"


def shipped_contexts() -> set[str]:
    text = (DIALPLAN / "extensions_sentinelle.conf").read_text()
    return set(re.findall(r"^\[(sentinelle-[^\]]+)\]", text, re.M))


def shipped_features() -> dict[str, str]:
    text = (DIALPLAN / "features_sentinelle.conf").read_text()
    return dict(re.findall(r"^(sentinelle_\w+) => (.*)$", text, re.M))


@dataclass
class FakePbx:
    contexts: set[str] = field(default_factory=shipped_contexts)
    features: dict[str, str] = field(default_factory=shipped_features)
    channelvars: str = "SENTINELLE_ATTEMPT"
    globals: dict[str, str] = field(default_factory=lambda: {"SENTINELLE_AGI": "agi://127.0.0.1:4573"})
    read_only: bool = False
    dynamic_config: bool = True  # False: an Asterisk without res_ari's sorcery view
    # What happened, for the tests to look at.
    requests: list[str] = field(default_factory=list)
    apps_seen: list[str] = field(default_factory=list)
    apps_open: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)  # id -> app
    deleted: list[str] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=itertools.count)


class FakeAri:
    def __init__(self, pbx: FakePbx) -> None:
        self.pbx = pbx
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/ari/asterisk/info", self._info)
        app.router.add_get("/ari/events", self._events)
        app.router.add_get("/ari/asterisk/variable", self._global)
        app.router.add_get("/ari/asterisk/config/dynamic/res_ari/general/general", self._general)
        app.router.add_post("/ari/channels/create", self._create)
        app.router.add_get("/ari/channels/{id}/variable", self._variable)
        app.router.add_delete("/ari/channels/{id}", self._delete)
        # What the listener of a running `serve` asks after connecting.
        app.router.add_get("/ari/channels", self._list)
        app.router.add_put("/ari/applications/{app}/eventFilter", self._filter)
        self.app = app

    @web.middleware
    async def _auth(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.pbx.requests.append(f"{request.method} {request.path}")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "Authentication required"}, status=401)
        return await handler(request)

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"version": "22.10.1"}})

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        app = request.query["app"]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.pbx.apps_seen.append(request.query_string)
        self.pbx.apps_open[app] = ws
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.pbx.apps_open.pop(app, None)
        return ws

    async def _global(self, request: web.Request) -> web.Response:
        return web.json_response({"value": self.pbx.globals.get(request.query["variable"], "")})

    async def _general(self, request: web.Request) -> web.Response:
        if not self.pbx.dynamic_config:
            return web.json_response({"message": "configClass 'res_ari' not found"}, status=404)
        return web.json_response([{"attribute": "enabled", "value": "yes"},
                                  {"attribute": "channelvars", "value": self.pbx.channelvars}])

    async def _create(self, request: web.Request) -> web.Response:
        if self.pbx.read_only:
            return web.json_response({"message": "Write access denied"}, status=403)
        app = request.query["app"]
        channel_id = f"1796.{next(self.pbx.ids)}"
        if app in self.pbx.apps_open:
            self.pbx.channels[channel_id] = app
        snapshot: dict[str, object] = {"id": channel_id, "state": "Down",
                                       "name": f"{request.query['endpoint']}-00000000;1"}
        if self.pbx.channelvars:
            snapshot["channelvars"] = {name: "" for name in self.pbx.channelvars.split(",")}
        return web.json_response(snapshot)

    async def _variable(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.pbx.channels:
            return web.json_response({"message": "Provided channel was not found"}, status=404)
        name = request.query["variable"]
        if m := re.fullmatch(r"DIALPLAN_EXISTS\(([^,()]+)\)", name):
            return web.json_response({"value": "1" if m.group(1) in self.pbx.contexts else "0"})
        if m := re.fullmatch(r"AST_CONFIG\(features\.conf,applicationmap,(\w+)\)", name):
            if m.group(1) not in self.pbx.features:
                return web.json_response({"message": "Unable to read provided function"}, status=500)
            return web.json_response({"value": self.pbx.features[m.group(1)]})
        return web.json_response({"value": ""})

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _filter(self, request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["app"]})

    async def _delete(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        app = self.pbx.channels.pop(channel_id, None)
        if app is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        self.pbx.deleted.append(channel_id)
        if (ws := self.pbx.apps_open.get(app)) is not None:
            # Asterisk's order: the channel leaves Stasis, then it is destroyed.
            for kind in ("StasisEnd", "ChannelDestroyed"):
                await ws.send_json({"type": kind, "channel": {"id": channel_id}})
        return web.Response(status=204)


@contextmanager
def running(pbx: FakePbx) -> Iterator[str]:
    """Serve the fake ARI on a loopback port in a thread; yields its ARI URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(FakeAri(pbx).app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/ari"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
