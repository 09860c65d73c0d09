"""Consents, revocations, refusals and dispositions over HTTP: each route
reads its JSON, then hands it to `sentinelle.facts`, the same functions as
the CLI, on the store worker."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sentinelle import facts
from sentinelle.config import ApiClient
from sentinelle.core.model import Disposition
from sentinelle.http import bodies
from sentinelle.http.context import Api, json_response, source_of
from sentinelle.http.errors import ApiError, unprocessable
from sentinelle.store.idempotency import MAX_KEY, Entry, body_hash

CONSENT_FIELDS = {"number", "campaign", "professional", "given_at", "source", "channel",
                  "wording", "evidence_ref", "slot_from", "slot_until"}
TARGET_FIELDS = {"attempt_id", "number", "campaign", "at"}
_KEY = re.compile(r"^[\x21-\x7e]{1," + str(MAX_KEY) + r"}$")
# VICIdial's Dispo Call URL: numbers as it stores them, national digits
# without the trunk 0, and the country code apart.
_DIGITS = re.compile(r"^[0-9]{6,15}$")


def routes(api: Api) -> list[web.RouteDef]:
    return [
        web.post("/v1/consents", api.route("consents:write")(lambda r, c: add_consent(api, r, c))),
        web.post("/v1/consents/revoke",
                 api.route("consents:write")(lambda r, c: revoke(api, r, c))),
        web.post("/v1/refusals", api.route("refusals:write")(lambda r, c: refusal(api, r, c))),
        web.post("/v1/dispositions",
                 api.route("refusals:write")(lambda r, c: disposition(api, r, c))),
        web.get("/v1/vicidial/dispo",
                api.route("refusals:write", query_token=True)(lambda r, c: vicidial(api, r, c))),
    ]


async def add_consent(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _KEY.match(key):
        raise unprocessable("Idempotency-Key", f"1-{MAX_KEY} printable ASCII characters")
    data = await bodies.json_object(request, CONSENT_FIELDS)
    args: dict[str, Any] = {
        "number": bodies.text(data, "number", required=True),
        "campaign": bodies.text(data, "campaign"),
        "professional": bodies.text(data, "professional"),
        "given_at": bodies.instant(data, "given_at", required=True),
        "source": bodies.text(data, "source", required=True),
        "channel": bodies.text(data, "channel", default=""),
        "wording": bodies.text(data, "wording", default=""),
        "evidence_ref": bodies.text(data, "evidence_ref", default=""),
        "slot_from": bodies.instant(data, "slot_from"),
        "slot_until": bodies.instant(data, "slot_until"),
    }
    now = api.clock()
    digest = body_hash(client.name, data)
    if key is not None:
        seen = await api.ledger_call(lambda ledger: ledger.get(client.name, key, now))
        if seen is not None:
            if seen.body_sha256 != digest:
                raise ApiError(409, "this Idempotency-Key was used for another body",
                               "Idempotency-Key")
            # Same request again: the same answer, nothing written. The
            # number is re-read from the body (the ledger keeps none).
            e164 = facts.callee(api.config, args["number"])
            return json_response({**seen.result, "e164": e164}, seen.status,
                                 {"Idempotent-Replayed": "true"})
    result = await api.db(lambda store: facts.record_consent(store, api.config, now=now, **args))
    body = result.to_dict()
    if key is not None:
        entry = Entry(digest, 201, {k: v for k, v in body.items() if k != "e164"})
        await api.ledger_call(lambda ledger: ledger.put(client.name, key, entry, now))
    return json_response(body, 201)


async def revoke(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    data = await bodies.json_object(request, {"number", "campaign", "professional", "at"})
    number = bodies.text(data, "number", required=True)
    campaign, pro = bodies.text(data, "campaign"), bodies.text(data, "professional")
    at = bodies.instant(data, "at")
    now = api.clock()
    assert number is not None
    result = await api.db(lambda store: facts.revoke_consents(
        store, api.config, number=number, campaign=campaign, professional=pro, at=at, now=now))
    return json_response(result.to_dict())


def _target(data: dict[str, Any]) -> dict[str, Any]:
    return {"attempt_id": bodies.integer(data, "attempt_id"),
            "number": bodies.text(data, "number"), "campaign": bodies.text(data, "campaign"),
            "at": bodies.instant(data, "at")}


async def refusal(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    data = await bodies.json_object(request, TARGET_FIELDS)
    target, now = _target(data), api.clock()
    result = await api.db(lambda store: facts.record_refusal(
        store, api.config, source=source_of(client), now=now, **target))
    return json_response(result.to_dict(), 201 if result.new else 200)


async def disposition(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    data = await bodies.json_object(request, TARGET_FIELDS | {"code"})
    code = facts.disposition_code(bodies.text(data, "code", required=True) or "")
    target, now = _target(data), api.clock()
    result = await api.db(lambda store: facts.record_disposition(
        store, api.config, code=code, source=source_of(client), now=now, **target))
    return json_response(result.to_dict())


async def vicidial(api: Api, request: web.Request, client: ApiClient) -> web.Response:
    """VICIdial's Dispo Call URL (a GET after each disposition). Codes outside
    `[http.dispo_map]` (SALE, B, N...) are answered 200 with recorded false:
    VICIdial calls the URL for every disposition, and only the mapped ones
    mean something here."""
    dispo = bodies.query(request, "dispo", required=True) or ""
    code = api.config.http.dispo_map.get(dispo) or api.config.http.dispo_map.get(dispo.upper())
    if code is None:
        return json_response({"recorded": False, "dispo": dispo[:40],
                              "reason": "dispo code not in http.dispo_map: ignored"})
    number = _vicidial_number(bodies.query(request, "phone_number", required=True) or "",
                              bodies.query(request, "phone_code"))
    campaign = bodies.query(request, "campaign", required=True)
    at = _epoch(bodies.query(request, "epoch"))
    now = api.clock()
    result = await api.db(lambda store: facts.record_disposition(
        store, api.config, code=Disposition(code), source=source_of(client), now=now,
        number=number, campaign=campaign, at=at))
    return json_response({**result.to_dict(), "dispo": dispo})


def _vicidial_number(phone: str, phone_code: str | None) -> str:
    """`phone_number=612345678&phone_code=33` is +33 6 12 34 56 78; a number
    with its trunk 0 or a + is taken as written."""
    phone = phone.strip()
    if phone_code and _DIGITS.match(phone) and not phone.startswith("0"):
        if not phone_code.isdigit() or len(phone_code) > 4:
            raise unprocessable("phone_code", "must be a country code (digits)")
        return f"+{phone_code}{phone}"
    return phone


def _epoch(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        raise unprocessable("epoch", "must be Unix seconds (VICIdial's --A--epoch--B--)") from None
