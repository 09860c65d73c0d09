"""FastAGI routes by name: `agi://host:port/<name>` runs `ROUTES[name]`.

One module per route, as in wazo-agid: a route is an async function of the
`Session` the server hands it. Adding one is a module and its line below,
with its name in `channelvars` (where the dialplan agreement test looks for
it). An unknown name is logged and the connection dropped: no verdict, so
the dialplan fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sentinelle.pbx import channelvars
from sentinelle.pbx.routes import check, disposition, outcome
from sentinelle.pbx.session import Session

Route = Callable[[Session], Awaitable[None]]

ROUTES: dict[str, Route] = {
    channelvars.ROUTE_CHECK: check.route,
    channelvars.ROUTE_DISPOSITION: disposition.route,
    channelvars.ROUTE_OUTCOME: outcome.route,
}
