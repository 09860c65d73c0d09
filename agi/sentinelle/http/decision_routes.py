"""`POST /v1/check` and `GET /v1/explain`: the AGI's own decision, as a dry run.

Both go through `guard.check` with record=False, as `sentinelle check` and
`sentinelle explain` do: nothing is recorded, and the JSON log line of the
decision names the API client (`source` http:<client>).
"""

from __future__ import annotations

from aiohttp import web

from sentinelle.config import ApiClient, ConfigError
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.evidence.explain import explain
from sentinelle.guard import Request, check
from sentinelle.http import bodies
from sentinelle.http.context import Api, json_response, source_of
from sentinelle.http.errors import unprocessable

CHECK_FIELDS = {"number", "campaign", "caller_id", "masked", "at"}


def routes(api: Api) -> list[web.RouteDef]:
    return [
        web.post("/v1/check", api.route("check:read")(lambda r, c: check_route(api, r, c))),
        web.get("/v1/explain", api.route("check:read")(lambda r, c: explain_route(api, r, c))),
    ]


def _campaign(api: Api, name: str | None) -> None:
    try:
        api.config.campaign(name)
    except ConfigError as exc:
        raise unprocessable("campaign", str(exc)) from None


async def check_route(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    data = await bodies.json_object(request, CHECK_FIELDS)
    number = bodies.text(data, "number", required=True) or ""
    campaign = bodies.text(data, "campaign")
    caller_id = bodies.text(data, "caller_id")
    masked = bodies.boolean(data, "masked")
    if caller_id is not None and masked:
        raise unprocessable("masked", "caller_id and masked are exclusive")
    _campaign(api, campaign)
    at = bodies.instant(data, "at") or api.clock()
    req = Request(dialled=number, at=at, campaign=campaign, caller_id=caller_id, masked=masked,
                  record=False, source=source_of(client), context=(("client", client.name),))
    decision = await api.db(lambda store: check(api.config, store, req))
    return json_response(decision.to_dict())


async def explain_route(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    raw = bodies.query(request, "number", required=True) or ""
    campaign = bodies.query(request, "campaign")
    caller_id = bodies.query(request, "caller_id")
    at = bodies.query_instant(request, "at") or api.clock()
    try:
        number = parse(raw, api.config.policy.outside_prefix)
    except NumberError as exc:
        raise unprocessable("number", exc.why) from None
    if number.kind is Kind.SHORT:
        raise unprocessable("number", "an emergency/short number has no history (R-00)")
    names = [campaign] if campaign else sorted(api.config.campaigns)
    for name in names:
        _campaign(api, name)
    result = await api.db(lambda store: explain(api.config, store, number, at, names, caller_id))
    return json_response(result.to_dict())
