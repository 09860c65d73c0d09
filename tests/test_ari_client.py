"""The ARI client against a tiny fake ARI: reconnect discipline, set-up, secrets.

Why a fake and not only the real Asterisk: the failure modes that broke the
off-the-shelf clients (a close without a close frame, HTTP 404/503 while
Asterisk boots, a port that stays closed) must be produced on demand and
timed precisely; the end-to-end tests then prove the same on Asterisk 22.
The websocket side is a real `websockets` server on loopback; the REST side
is an httpx MockTransport that records every request.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from sentinelle import logs
from sentinelle.pbx.ari import AriClient, Endpoint, redact

USER, PASSWORD = "sentinelle", "s3cret-pa55"


class FakeAri:
    """/ari/events over a real websocket, REST through `transport`.

    `status`: HTTP status answered to the websocket upgrade (101 = accept),
    e.g. 404 then 503 as Asterisk does while it boots. `channels` and
    `variables` feed GET /channels and GET /channels/{id}/variable.
    """

    def __init__(self) -> None:
        self.server: Server | None = None
        self.port = 0
        self.status = 101
        self.upgrades: list[Request] = []
        self.connections: list[ServerConnection] = []
        self.rest: list[httpx.Request] = []
        self.channels: list[dict[str, Any]] = []
        self.variables: dict[str, dict[str, str]] = {}
        self.connected = asyncio.Event()
        self.transport = httpx.MockTransport(self._rest)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeAri:
        self.server = await serve(self._handler, "127.0.0.1", self.port,
                                  process_request=self._process_request)
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[index]
        return self

    async def stop(self) -> None:
        """Close the listening socket too: connections are then refused."""
        if self.server is not None:
            self.server.close(close_connections=False)
            for conn in self.connections:
                conn.transport.abort()
            await self.server.wait_closed()
            self.server = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades.append(request)
        if self.status != 101:
            return connection.respond(HTTPStatus(self.status), "not now\n")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Authentication required\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        self.connected.set()
        await connection.wait_closed()

    @property
    def live(self) -> ServerConnection:
        return self.connections[-1]

    async def send(self, event: dict[str, Any]) -> None:
        await self.live.send(json.dumps(event))

    def abort(self) -> None:
        """Drop the TCP connection without a websocket close frame (a crash)."""
        self.connected.clear()
        self.live.transport.abort()

    def _rest(self, request: httpx.Request) -> httpx.Response:
        self.rest.append(request)
        path = request.url.path
        if request.method == "PUT" and path.endswith("/eventFilter"):
            return httpx.Response(200, json={"events_allowed": json.loads(request.content)["allowed"]})
        if request.method == "GET" and path == "/ari/channels":
            return httpx.Response(200, json=self.channels)
        if request.method == "GET" and path.endswith("/variable"):
            channel_id = path.split("/")[-2]
            name = request.url.params["variable"]
            if channel_id not in {c["id"] for c in self.channels}:
                return httpx.Response(404, json={"message": "Channel not found"})
            value = self.variables.get(channel_id, {}).get(name)
            if value is None:
                return httpx.Response(404, json={"message": "Provided variable was not found"})
            return httpx.Response(200, json={"value": value})
        return httpx.Response(404, json={"message": "no such resource"})

    def filters(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.rest if r.url.path.endswith("/eventFilter")]


def client_for(fake: FakeAri, **kw: Any) -> AriClient:
    return AriClient(fake.url, USER, PASSWORD, "sentinelle", allowed_events=("Dial", "ChannelDestroyed"),
                     transport=fake.transport, **kw)


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 20) -> None:
    async def main() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(main())


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.connects = 0

    async def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def on_connect(self, client: AriClient) -> None:
        self.connects += 1


def test_endpoint_forms() -> None:
    for url in ("http://pbx:8088", "http://pbx:8088/", "http://pbx:8088/ari", "http://pbx:8088/ari/"):
        assert Endpoint.parse(url).base == "http://pbx:8088/ari"
    e = Endpoint.parse("https://u:pw@pbx.example:8089/ari")
    assert (e.base, e.user, e.password) == ("https://pbx.example:8089/ari", "u", "pw")
    assert e.events_url("sentinelle") == "wss://pbx.example:8089/ari/events?app=sentinelle&subscribeAll=true"
    with pytest.raises(ValueError) as info:
        Endpoint.parse("ftp://u:pw@pbx", password="pw")
    assert "pw@" not in str(info.value)
    assert redact("a pw b", "pw") == "a *** b"


def test_connects_subscribes_all_filters_then_delivers_events() -> None:
    async def scenario() -> None:
        fake = await FakeAri().start()
        rec = Recorder()
        client = client_for(fake)
        task = asyncio.create_task(client.run(rec.on_event, rec.on_connect))
        await asyncio.wait_for(client.connected.wait(), 5)
        request = fake.upgrades[-1]
        query = parse_qs(urlsplit(request.path).query)
        assert urlsplit(request.path).path == "/ari/events"
        assert query == {"app": ["sentinelle"], "subscribeAll": ["true"]}
        assert fake.filters() == [{"allowed": [{"type": "Dial"}, {"type": "ChannelDestroyed"}]}]
        assert rec.connects == 1
        for n in range(3):
            await fake.send({"type": "Dial", "n": n})
        await wait_until(lambda: len(rec.events) == 3)
        assert [e["n"] for e in rec.events] == [0, 1, 2]
        client.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        await fake.stop()

    run(scenario)


def test_abort_without_close_frame_reconnects_and_sets_up_again() -> None:
    async def scenario() -> None:
        fake = await FakeAri().start()
        rec = Recorder()
        client = client_for(fake)
        task = asyncio.create_task(client.run(rec.on_event, rec.on_connect))
        for round_ in range(1, 4):
            await wait_until(lambda r=round_: client.connects == r)
            await fake.connected.wait()
            fake.abort()
        await wait_until(lambda: client.connects == 4)
        # Filter and on_connect (the listener's resync) after every connect.
        assert len(fake.filters()) == 4
        assert rec.connects == 4
        await fake.send({"type": "Dial", "n": "after"})
        await wait_until(lambda: rec.events[-1:] == [{"type": "Dial", "n": "after"}])
        client.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        await fake.stop()

    run(scenario)


def test_http_404_and_503_during_startup_are_ordinary_disconnects() -> None:
    async def scenario() -> None:
        fake = await FakeAri().start()
        fake.status = 404
        client = client_for(fake)
        task = asyncio.create_task(client.run(Recorder().on_event))
        await wait_until(lambda: len(fake.upgrades) >= 2)
        fake.status = 503
        await wait_until(lambda: len(fake.upgrades) >= 4)
        fake.status = 101
        await asyncio.wait_for(client.connected.wait(), 5)
        assert client.failures >= 4
        assert not task.done()
        client.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        await fake.stop()

    run(scenario)


def test_backoff_is_bounded_and_never_busy_loops() -> None:
    """Port closed for 4 s: few attempts, spaced 100 ms doubling to the cap,
    almost no CPU; back within the cap once the port reopens."""

    async def scenario() -> None:
        fake = await FakeAri().start()
        client = client_for(fake, backoff_cap=1.0)
        task = asyncio.create_task(client.run(Recorder().on_event))
        await asyncio.wait_for(client.connected.wait(), 5)
        await fake.stop()
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(4)
        cpu = time.process_time() - cpu0
        # 0.1 + 0.2 + 0.4 + 0.8 + 1 + 1 ... (x0.8-1.0 jitter): at most ~9 tries in 4 s.
        assert 3 <= client.failures <= 10, client.failures
        assert cpu < 0.2 * (time.monotonic() - t0), cpu
        await fake.start()  # same port
        t1 = time.monotonic()
        await asyncio.wait_for(client.connected.wait(), 5)
        assert time.monotonic() - t1 <= 1.2
        client.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        await fake.stop()

    run(scenario)


def test_handler_error_does_not_cost_the_connection() -> None:
    async def scenario() -> None:
        fake = await FakeAri().start()
        seen: list[Any] = []

        async def handler(event: dict[str, Any]) -> None:
            if event.get("boom"):
                raise RuntimeError("bad event")
            seen.append(event["n"])

        client = client_for(fake)
        task = asyncio.create_task(client.run(handler))
        await asyncio.wait_for(client.connected.wait(), 5)
        await fake.live.send("not json")
        await fake.send({"type": "Dial", "boom": True})
        await fake.send({"type": "Dial", "n": 1})
        await wait_until(lambda: seen == [1])
        assert client.connects == 1
        client.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        await fake.stop()

    run(scenario)


def test_credentials_never_reach_the_logs() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger("sentinelle")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    async def scenario() -> None:
        fake = await FakeAri().start()
        # Wrong password first (401 loop), then credentials in the URL itself.
        bad = AriClient(fake.url, USER, "wrong-" + PASSWORD, "sentinelle", transport=fake.transport)
        task = asyncio.create_task(bad.run(Recorder().on_event))
        await wait_until(lambda: bad.failures >= 2)
        bad.stop()
        await asyncio.wait_for(task, 5)
        await bad.aclose()
        url = fake.url.replace("http://", f"http://{USER}:{PASSWORD}@")
        good = AriClient(url, "", "", "sentinelle", transport=fake.transport)
        task = asyncio.create_task(good.run(Recorder().on_event))
        await asyncio.wait_for(good.connected.wait(), 5)
        fake.abort()
        await wait_until(lambda: good.connects == 2)
        good.stop()
        await asyncio.wait_for(task, 5)
        await good.aclose()
        await fake.stop()

    try:
        run(scenario)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert "HTTP 401" in text and "ARI connected" in text
    for secret in (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                   base64.b64encode(f"{USER}:wrong-{PASSWORD}".encode()).decode()):
        assert secret not in text


def test_credentials_in_the_url_are_percent_decoded() -> None:
    """`http://sentinelle:s3cret%2Fwith%2Bchars@host/ari` carries the password
    `s3cret/with+chars`: sent still encoded, Asterisk answered 401 and the
    listener never connected."""
    e = Endpoint.parse("http://sentinelle:s3cret%2Fwith%2Bchars@pbx:8088/ari")
    assert (e.user, e.password) == ("sentinelle", "s3cret/with+chars")
    token = base64.b64encode(b"sentinelle:s3cret/with+chars").decode()
    assert e.auth_header() == {"Authorization": f"Basic {token}"}
    assert "%2F" not in e.base and "s3cret" not in e.base
