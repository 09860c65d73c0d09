"""Who is calling: the network allow list, then a bearer token and its scopes.

Tokens are compared with `hmac.compare_digest` against every client's (the
time taken says nothing about which one nearly matched) and never logged:
requests are logged by path without the query string, and errors never echo
what was sent. A token in the query string is accepted on the routes that
need it only (a dialer's dispo URL cannot set a header); that token lands in
the dialer's and any proxy's logs, so give it `refusals:write` alone.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from sentinelle.config import ApiClient
from sentinelle.http.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Authenticator:
    def __init__(self, clients: Iterable[ApiClient], allow: Iterable[str]) -> None:
        self.clients = tuple(clients)
        self.networks: list[_Network] = [ipaddress.ip_network(a, strict=False) for a in allow]

    def peer_allowed(self, peer: str | None) -> bool:
        """As FastAGI's allow list: loopback only unless networks are listed."""
        try:
            addr = ipaddress.ip_address((peer or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not self.networks:
            return addr.is_loopback
        return any(addr in net for net in self.networks)

    def client(self, request: web.Request, *, query_token: bool = False) -> ApiClient:
        token = None
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise _unauthorized("use Authorization: Bearer <token>")
            token = value.strip()
        elif query_token and request.query.get("token"):
            token = request.query["token"]
        if token is None:
            raise _unauthorized("a bearer token is required")
        found = None
        for client in self.clients:  # no early exit: every comparison is made
            if hmac.compare_digest(client.token.encode(), token.encode("utf-8", "replace")):
                found = client
        if found is None:
            raise _unauthorized("unknown token")
        return found


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "Authorization",
                    {"WWW-Authenticate": 'Bearer realm="sentinelle"'})


def require(client: ApiClient, scope: str) -> None:
    if scope not in client.scopes:
        raise ApiError(403, f"client {client.name!r} lacks the scope {scope!r}", "Authorization")
