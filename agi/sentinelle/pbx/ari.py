"""A small Asterisk REST Interface (ARI) client: one event stream, a few REST calls.

Why our own client (see README "ARI listener"): ari-py is Python 2 only;
ari-client 0.9.0 spins at 100% CPU logging ~50,000 errors/s when Asterisk
restarts; asyncari 0.20.6 has no subscribe-all, crashes on DeviceStateChanged
and exits on restart. sentinelle needs very little of ARI (a websocket for
/ari/events, GET /channels, GET a channel variable, PUT an event filter), and
what it needs above all is a connection that survives Asterisk restarts
forever without ever busy-looping. `websockets` and `httpx` are well kept and
do the protocol work; this module only adds the reconnect discipline:

- every failure (refused connection, HTTP 404/503 while Asterisk boots, a
  close without a close frame, a timeout, an error during set-up) is an
  ordinary disconnect, followed by a sleep that starts at 100 ms and doubles
  up to `backoff_cap` (3 s): never a tight loop, and back within a few
  seconds once Asterisk is ready;
- after every (re)connect the subscription (``subscribeAll=true`` on the
  websocket URL) and the event filter are applied again, and the caller's
  `on_connect` runs (the listener resyncs its view of the channels there),
  before any event is handed over;
- credentials travel in an Authorization header, never in a URL, and are
  scrubbed from every message this module logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sentinelle import logs
from sentinelle.pbx.recording import EventRecorder

log = logging.getLogger("sentinelle.ari")
# websockets logs handshake headers (Authorization included) at DEBUG: give it
# a logger of ours that never goes below INFO, whatever --log-level says.
_wire_log = logging.getLogger("sentinelle.ari.websockets")
_wire_log.setLevel(logging.INFO)

BACKOFF_START_S = 0.1
BACKOFF_CAP_S = 3.0
# A connection that stayed up this long resets the backoff; a server that
# accepts and drops at once keeps the delay growing.
HEALTHY_AFTER_S = 5.0
# While disconnected, repeat the warning at most this often.
WARN_EVERY_S = 60.0

Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]
ConnectHandler = Callable[["AriClient"], Awaitable[None]]


class AriError(Exception):
    """An ARI request failed (transport error or unexpected HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where ARI lives, derived from the config's `ari.url`.

    `url` may be the HTTP server root (``http://pbx:8088``) or the ARI root
    (``http://pbx:8088/ari``); user:password in the URL are accepted as
    credentials but never kept in it.
    """

    base: str  # http(s)://host:port/ari, no credentials
    user: str
    password: str

    @classmethod
    def parse(cls, url: str, user: str = "", password: str = "") -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ARI url must be http(s)://host[:port][/ari], got {redact(url, password)!r}")
        # user:password in a URL are percent-encoded ("s3cret%2Fwith%2Bchars"):
        # sent as such, Asterisk answers 401 and no refusal is ever captured.
        user = user or unquote(parts.username or "")
        password = password or unquote(parts.password or "")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        path = parts.path.rstrip("/")
        if not path.endswith("/ari"):
            path += "/ari"
        return cls(urlunsplit((parts.scheme, netloc, path, "", "")), user, password)

    def events_url(self, app: str, subscribe_all: bool = True) -> str:
        """The listener subscribes to every channel; an app that only needs to
        exist (pbx/livecheck.py's probe channel) gets its own events alone."""
        scheme = "wss" if self.base.startswith("https:") else "ws"
        rest = self.base.split("://", 1)[1]
        url = f"{scheme}://{rest}/events?app={quote(app)}"
        return url + "&subscribeAll=true" if subscribe_all else url

    def auth_header(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def redact(text: str, *secrets: str) -> str:
    """Scrub secrets (and their Basic-auth encodings) from a message meant for logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


AUTH_FAILED = ("ARI authentication failed: Asterisk refuses ari.user/ari.password; outcomes "
               "and refusals are not followed over ARI until the credentials are fixed")


def auth_refused(exc: BaseException) -> bool:
    """Asterisk answered 401/403: the credentials are wrong, not the network."""
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in (401, 403)
    return isinstance(exc, AriError) and exc.status in (401, 403)


class AriClient:
    """One ARI application: a websocket event stream that never gives up, plus REST.

    `run()` loops until `stop()` (or cancellation): connect, apply the event
    filter, call `on_connect`, then hand every event to `on_event`. Handlers
    run one at a time in arrival order; an exception in a handler is logged
    and the stream goes on (one odd event must not cost the connection).
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        app: str,
        *,
        allowed_events: Sequence[str] = (),
        backoff_start: float = BACKOFF_START_S,
        backoff_cap: float = BACKOFF_CAP_S,
        open_timeout: float = 5.0,
        http_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(url, user, password)
        self.app = app
        self.allowed_events = tuple(allowed_events)
        self.backoff_start = backoff_start
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.http_timeout = http_timeout
        self._transport = transport
        self.recorder = recorder  # every event received goes there first (tests/fixtures/ari)
        self._http: httpx.AsyncClient | None = None
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        # Observability (tests and logs): how many connections and failures.
        self.connects = 0
        self.failures = 0
        self.connected = asyncio.Event()
        # The last attempt was refused (HTTP 401/403): wrong ari.user or
        # password. Retrying cannot fix it, so it is an ERROR and a metric.
        self.auth_failed = False
        self._down_since: float | None = None
        self._closing: asyncio.Task[None] | None = None

    # -- REST ------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.endpoint.base,
                auth=(self.endpoint.user, self.endpoint.password),
                timeout=self.http_timeout,
                transport=self._transport,
                trust_env=False,  # ARI is on the PBX's network, never behind a proxy
            )
        return self._http

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, ok: Sequence[int] = (200, 204)) -> Any:
        """One REST call; returns the decoded JSON (or None). Raises AriError."""
        try:
            response = await self._client().request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            raise AriError(self.scrub(f"{method} {path}: {type(exc).__name__}: {exc}")) from None
        if response.status_code not in ok:
            raise AriError(self.scrub(f"{method} {path}: HTTP {response.status_code} "
                                       f"{response.text[:200]}"), response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def channels(self) -> list[Event]:
        """Every channel Asterisk has right now (in Stasis or not)."""
        result = await self.request("GET", "/channels")
        return result if isinstance(result, list) else []

    async def channel_var(self, channel_id: str, name: str) -> str | None:
        """A channel variable, or None if the channel or the variable is gone.

        Works for channels outside Stasis too (checked on Asterisk 22)."""
        try:
            result = await self.request("GET", f"/channels/{quote(channel_id, safe='')}/variable",
                                        params={"variable": name})
        except AriError as exc:
            if exc.status in (404, 409, 422):
                return None
            raise
        return str(result.get("value", "")) if isinstance(result, dict) else None

    async def set_event_filter(self) -> None:
        """Only the event types the listener reads: ChannelVarset alone would
        otherwise be most of the stream on a busy PBX."""
        if not self.allowed_events:
            return
        await self.request("PUT", f"/applications/{quote(self.app, safe='')}/eventFilter",
                           body={"allowed": [{"type": t} for t in self.allowed_events]})

    def connect_app(self, app: str) -> connect:
        """A websocket for another Stasis app, with these credentials and limits:
        the app exists while it is open (livecheck's probe channel lives in
        one), and it gets no other channel's events."""
        return connect(
            self.endpoint.events_url(app, subscribe_all=False),
            additional_headers=self.endpoint.auth_header(),
            open_timeout=self.open_timeout,
            close_timeout=2,
            proxy=None,
            logger=_wire_log,
        )

    # -- event stream ----------------------------------------------------------

    def stop(self) -> None:
        """End `run()`: no reconnect after this; the open websocket is closed."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            self._closing = asyncio.get_running_loop().create_task(ws.close())

    async def aclose(self) -> None:
        self.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self.recorder is not None:
            self.recorder.close()

    async def run(self, on_event: EventHandler, on_connect: ConnectHandler | None = None) -> None:
        """Connect, set up, read events; on any disconnect wait and start again."""
        delay = self.backoff_start
        last_warning = -WARN_EVERY_S
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                refused = False
                try:
                    await self._session(on_event, on_connect)
                    reason = "closed by Asterisk"
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # every failure is a disconnect, never a crash
                    reason = self._describe(exc)
                    refused = auth_refused(exc)
                self.auth_failed = refused
                was_up = self.connected.is_set()
                self.connected.clear()
                if self._stopping.is_set():
                    break
                now = time.monotonic()
                if was_up:
                    self._down_since = now
                    if now - started >= HEALTHY_AFTER_S:
                        delay = self.backoff_start
                else:
                    self.failures += 1
                if self._down_since is None:
                    self._down_since = now  # never connected yet
                if refused and now - last_warning >= WARN_EVERY_S:
                    logs.event(log, AUTH_FAILED, logging.ERROR, reason=reason,
                               url=self.endpoint.base, user=self.endpoint.user, app=self.app,
                               down_for_s=round(now - self._down_since, 1))
                    last_warning = now
                elif was_up or now - last_warning >= WARN_EVERY_S:
                    logs.event(log, "ARI disconnected, reconnecting" if was_up else "ARI unreachable",
                               logging.WARNING, reason=reason, url=self.endpoint.base, app=self.app,
                               down_for_s=round(now - self._down_since, 1))
                    last_warning = now
                else:
                    logs.event(log, "ARI still unreachable", logging.DEBUG, reason=reason)
                # Jitter downwards only, so the cap is a real upper bound.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, self.backoff_cap)
        finally:
            logs.event(log, "ARI client stopped", app=self.app)

    async def _session(self, on_event: EventHandler, on_connect: ConnectHandler | None) -> None:
        async with connect(
            self.endpoint.events_url(self.app),
            additional_headers=self.endpoint.auth_header(),
            open_timeout=self.open_timeout,
            ping_interval=10,
            ping_timeout=10,
            close_timeout=2,
            proxy=None,
            max_size=4 * 1024 * 1024,
            logger=_wire_log,
        ) as ws:
            self._ws = ws
            try:
                try:
                    await self.set_event_filter()
                except AriError as exc:
                    # Older Asterisk without eventFilter: more traffic, same results.
                    logs.event(log, "ARI event filter not applied", logging.WARNING,
                               error=str(exc))
                if on_connect is not None:
                    await on_connect(self)
                self.connects += 1
                self.auth_failed = False
                self.connected.set()
                down = self._down_since
                self._down_since = None
                logs.event(log, "ARI connected", url=self.endpoint.base, app=self.app,
                           connects=self.connects,
                           down_for_s=round(time.monotonic() - down, 2) if down else None)
                async for message in ws:
                    await self._dispatch(message, on_event)
            finally:
                self._ws = None

    async def _dispatch(self, message: str | bytes, on_event: EventHandler) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            logs.event(log, "ARI sent a non-JSON message", logging.WARNING)
            return
        if not isinstance(event, dict):
            return
        if self.recorder is not None:
            self.recorder.write(event)
        try:
            await on_event(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ARI event handler failed",
                          extra={"fields": {"type": event.get("type")}})

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            hint = " (check ari.user / ari.password)" if status in (401, 403) else ""
            return f"HTTP {status}{hint}"
        if isinstance(exc, ConnectionClosed):
            return "connection closed" + ("" if exc.rcvd else " without a close frame")
        if isinstance(exc, InvalidURI | InvalidHandshake | AriError | OSError | TimeoutError):
            return self.scrub(f"{type(exc).__name__}: {exc}")
        return self.scrub(f"unexpected {type(exc).__name__}: {exc}")

    def scrub(self, text: str) -> str:
        """The text without the password or its Basic-auth encoding (for logs)."""
        encoded = self.endpoint.auth_header()["Authorization"].split(" ", 1)[1]
        return redact(text, self.endpoint.password, encoded)
