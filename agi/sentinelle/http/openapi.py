"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json.

Written as data here, next to the handlers it describes, and committed as
docs/openapi.json (`python -m sentinelle.http.openapi > docs/openapi.json`);
a test checks that the served document equals the file, and the
schemathesis test checks the live API against it.
"""

from __future__ import annotations

import json
from typing import Any

from sentinelle import __version__
from sentinelle.core.model import Disposition

_Schema = dict[str, Any]


def _ref(name: str) -> _Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> _Schema:
    return {"type": [kind, "null"]}


INSTANT: _Schema = {"type": "string", "description": "ISO 8601; without an offset, Europe/Paris "
                    "time", "examples": ["2026-12-01T10:30:00+01:00"]}
NUMBER: _Schema = {"type": "string", "maxLength": 64, "description": "As dialled: national "
                   "(0612345678), international (+33612345678, 0033...), separators allowed",
                   "examples": ["0612345678"]}
CAMPAIGN: _Schema = {"type": "string", "maxLength": 200, "description": "A configured campaign; "
                     "facts belong to its professional", "examples": ["promo"]}
E164: _Schema = {"type": "string", "examples": ["+33612345678"]}
ISO_OUT: _Schema = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, _Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["status", "field", "message"],
            "properties": {"status": {"type": "integer"}, "field": _nullable("string"),
                           "message": {"type": "string"}}}}},
    "ConsentIn": {
        "type": "object", "additionalProperties": False,
        "required": ["number", "given_at", "source"],
        "properties": {
            "number": NUMBER, "campaign": CAMPAIGN,
            "professional": {"type": "string", "maxLength": 200,
                             "description": "Instead of (or agreeing with) campaign"},
            "given_at": INSTANT, "source": {"type": "string", "maxLength": 200,
                                            "description": "Where the consent comes from"},
            "channel": {"type": "string", "maxLength": 200},
            "wording": {"type": "string", "maxLength": 4000},
            "evidence_ref": {"type": "string", "maxLength": 4000},
            "slot_from": INSTANT, "slot_until": INSTANT}},
    "Consent": {
        "type": "object", "required": ["consent_id", "e164", "professional"],
        "properties": {"consent_id": {"type": "integer"}, "e164": E164,
                       "professional": {"type": "string"}}},
    "RevokeIn": {
        "type": "object", "additionalProperties": False, "required": ["number"],
        "properties": {"number": NUMBER, "campaign": CAMPAIGN,
                       "professional": {"type": "string", "maxLength": 200}, "at": INSTANT}},
    "Revocation": {
        "type": "object", "required": ["revoked", "e164", "professional"],
        "properties": {"revoked": {"type": "integer"}, "e164": E164,
                       "professional": {"type": "string"}}},
    "RefusalIn": {
        "type": "object", "additionalProperties": False,
        "description": "The call (attempt_id, from SENTINELLE_ATTEMPT) or number + campaign",
        "properties": {"attempt_id": {"type": "integer", "minimum": 1}, "number": NUMBER,
                       "campaign": CAMPAIGN, "at": INSTANT}},
    "Refusal": {
        "type": "object",
        "required": ["recorded", "e164", "professional", "campaign", "at", "attempt_id"],
        "properties": {"recorded": {"type": "boolean",
                                    "description": "false: the same refusal was already there"},
                       "e164": E164, "professional": {"type": "string"},
                       "campaign": {"type": "string"}, "at": ISO_OUT,
                       "attempt_id": _nullable("integer")}},
    "DispositionIn": {
        "type": "object", "additionalProperties": False, "required": ["code"],
        "properties": {"code": {"type": "string", "enum": [d.value for d in Disposition]},
                       "attempt_id": {"type": "integer", "minimum": 1}, "number": NUMBER,
                       "campaign": CAMPAIGN, "at": INSTANT}},
    "Disposition": {
        "type": "object",
        "required": ["recorded", "code", "e164", "professional", "attempt_id", "refusal",
                     "optout_added"],
        "properties": {"recorded": {"type": "boolean"},
                       "code": {"type": "string", "enum": [d.value for d in Disposition]},
                       "e164": E164, "professional": {"type": "string"},
                       "attempt_id": _nullable("integer"),
                       "refusal": {"oneOf": [_ref("Refusal"), {"type": "null"}]},
                       "optout_added": _nullable("boolean"),
                       "dispo": {"type": "string"}}},
    "Ignored": {
        "type": "object", "required": ["recorded", "dispo", "reason"],
        "properties": {"recorded": {"const": False}, "dispo": {"type": "string"},
                       "reason": {"type": "string"}}},
    "CheckIn": {
        "type": "object", "additionalProperties": False, "required": ["number"],
        "properties": {"number": NUMBER, "campaign": CAMPAIGN,
                       "caller_id": {"type": "string", "maxLength": 64},
                       "masked": {"type": "boolean"}, "at": INSTANT}},
    "Decision": {
        "type": "object",
        "required": ["verdict", "rules", "reasons", "regime", "at", "retry_at", "callee",
                     "campaign", "professional", "dialled", "caller_id", "counts", "notes",
                     "attempt_id"],
        "properties": {
            "verdict": {"type": "string", "enum": ["allow", "block"]},
            "rules": {"type": "array", "items": {"type": "string"}},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "regime": {"type": "string"}, "at": ISO_OUT,
            "retry_at": {"type": ["string", "null"], "format": "date-time"},
            "callee": {"oneOf": [{"type": "null"}, {
                "type": "object",
                "required": ["e164", "territory", "kind", "timezone", "local_time"],
                "properties": {"e164": E164, "territory": _nullable("string"),
                               "kind": {"type": "string"}, "timezone": _nullable("string"),
                               "local_time": _nullable("string")}}]},
            "campaign": {"type": "string"}, "professional": {"type": "string"},
            "dialled": {"type": "string"}, "caller_id": _nullable("string"),
            "counts": {"type": "boolean"},
            "notes": {"type": "array", "items": {"type": "string"}},
            "attempt_id": _nullable("integer"),
            "explanation": {"type": "string"},
            "states": {"type": "array", "items": {"type": "object"}}}},
    "Explanation": {
        "type": "object",
        "required": ["e164", "territory", "kind", "timezone", "at", "callee_local_time",
                     "timeline", "facts", "decisions", "notes"],
        "properties": {
            "e164": E164, "territory": _nullable("string"), "kind": {"type": "string"},
            "timezone": {"type": "string"}, "at": ISO_OUT, "callee_local_time": ISO_OUT,
            "timeline": {"type": "array", "items": {
                "type": "object", "required": ["at", "kind", "professional", "campaign", "text"],
                "properties": {"at": ISO_OUT, "kind": {"type": "string"},
                               "professional": {"type": "string"},
                               "campaign": {"type": "string"}, "ref": {"type": "string"},
                               "text": {"type": "string"}}}},
            "facts": {"type": "object", "additionalProperties": {
                "type": "array", "items": {"type": "string"}}},
            "decisions": {"type": "array", "items": _ref("Decision")},
            "notes": {"type": "array", "items": {"type": "string"}}}},
}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "Bad request", 401: "No or unknown bearer token", 403:
             "Address not allowed, or the token lacks the scope", 409:
             "Idempotency-Key reused with another body", 413: "Body too large",
             415: "Body is not application/json", 422: "Invalid input: `field` names it",
             429: "A scrub is already running", 503: "Store unavailable: nothing was recorded"}
    return {str(c): {"description": words[c], "content": {
        "application/json": {"schema": _ref("Error")}}} for c in codes}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(schema)}}}


COMMON = (401, 403, 413, 415, 422, 503)


EXAMPLES: dict[str, dict[str, Any]] = {
    "ConsentIn": {"number": "0612345678", "campaign": "promo",
                  "given_at": "2026-11-02T18:04:00+01:00", "source": "web form /offre",
                  "channel": "web", "wording": "consent-v3", "evidence_ref": "crm:lead:8812"},
    "RevokeIn": {"number": "0612345678", "campaign": "promo"},
    "RefusalIn": {"number": "0612345678", "campaign": "promo",
                  "at": "2026-11-30T11:02:00+01:00"},
    "DispositionIn": {"number": "0612345678", "campaign": "promo", "code": "callback"},
    "CheckIn": {"number": "0612345678", "campaign": "promo", "caller_id": "0162000000"},
}


def _post(summary: str, scope: str, body: str, ok: dict[str, Any], *extra: int,
          description: str = "") -> dict[str, Any]:
    content = _json(body)
    content["content"]["application/json"]["example"] = EXAMPLES[body]
    return {"post": {
        "summary": summary, "description": description or summary,
        "security": [{"bearer": [scope]}],
        "requestBody": {"required": True, **content},
        "responses": {**ok, **_errors(*COMMON, *extra)}}}


def _query(name: str, description: str, *, required: bool = False,
           schema: _Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def spec() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/consents": _post(
            "Record a prior consent (R-11) with its proof", "consents:write", "ConsentIn",
            {"201": {"description": "Recorded (or, with the same Idempotency-Key and body, "
                                    "recorded before: header Idempotent-Replayed)",
                     **_json("Consent")}}, 409,
            description="A consent dated in the future (beyond 5 minutes of clock skew) is "
                        "refused. Idempotency-Key: the same key and body give the same answer "
                        "without a second consent; the same key with another body is 409."),
        "/v1/consents/revoke": _post(
            "Revoke every consent of a callee to a professional", "consents:write", "RevokeIn",
            {"200": {"description": "How many consents were revoked", **_json("Revocation")}}),
        "/v1/refusals": _post(
            "Record a refusal (R-31: 60 days of silence, consents revoked)", "refusals:write",
            "RefusalIn",
            {"201": {"description": "Recorded", **_json("Refusal")},
             "200": {"description": "Already recorded (same call, or same number and instant)",
                     **_json("Refusal")}}),
        "/v1/dispositions": _post(
            "Record an agent's disposition of a call", "refusals:write", "DispositionIn",
            {"200": {"description": "refused: refusal; do-not-call: refusal and the opposition "
                                    "list (R-12); callback, wrong-number: kept with the call",
                     **_json("Disposition")}}),
        "/v1/check": _post(
            "The AGI's decision for a call, as a dry run (nothing recorded)", "check:read",
            "CheckIn", {"200": {"description": "The decision", **_json("Decision")}}),
    }
    paths["/v1/consents"]["post"]["parameters"] = [{
        "name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                   "pattern": "^[!-~]+$"}}]
    paths["/v1/vicidial/dispo"] = {"get": {
        "summary": "VICIdial Dispo Call URL",
        "description": "Mapped through [http.dispo_map]; other codes are answered 200 with "
                       "recorded false. The token may be a query parameter (VICIdial cannot "
                       "set headers): it then appears in VICIdial's and proxies' logs, so "
                       "give that client the refusals:write scope only.",
        "security": [{"bearer": ["refusals:write"]}, {"query_token": ["refusals:write"]}],
        "parameters": [
            _query("phone_number", "--A--phone_number--B--", required=True,
                   schema={"type": "string", "maxLength": 64}),
            _query("phone_code", "--A--phone_code--B-- (country code, e.g. 33)",
                   schema={"type": "string", "maxLength": 8}),
            _query("dispo", "--A--dispo--B--", required=True,
                   schema={"type": "string", "maxLength": 40}),
            _query("campaign", "A sentinelle campaign (or --A--campaign--B-- when the names "
                               "match)", required=True, schema={"type": "string",
                                                                "maxLength": 200}),
            _query("epoch", "--A--epoch--B-- (Unix seconds); default now",
                   schema={"type": "string", "pattern": "^[0-9]{1,12}$"})],
        "responses": {"200": {"description": "Recorded, or ignored", "content": {
            "application/json": {"schema": {"oneOf": [_ref("Disposition"),
                                                      _ref("Ignored")]}}}},
            **_errors(401, 403, 422, 503)}}}
    paths["/v1/explain"] = {"get": {
        "summary": "Timeline of a callee and the decision per campaign, in words",
        "security": [{"bearer": ["check:read"]}],
        "parameters": [
            _query("number", "The callee", required=True, schema={"type": "string",
                                                                  "maxLength": 64}),
            _query("campaign", "Only this campaign (default: all)",
                   schema={"type": "string", "maxLength": 200}),
            _query("at", "Instant (default now), ISO 8601"),
            _query("caller_id", "Caller ID to judge (R-40..R-43)",
                   schema={"type": "string", "maxLength": 64})],
        "responses": {"200": {"description": "The explanation", **_json("Explanation")},
                      **_errors(401, 403, 422, 503)}}}
    paths["/v1/scrub"] = {"post": {
        "summary": "Scrub a lead list: each lead's verdict, retry_at and needs, streamed",
        "description": "CSV in (header line; number column number, phone_number, phone... or "
                       "`column`); out: the lead's columns then e164, verdict, rules, retry_at, "
                       "needs, reasons (CSV), or one JSON object a lead then a summary line "
                       "(NDJSON). Nothing is recorded. A response cut short (store fault) "
                       "ends without its final chunk.",
        "security": [{"bearer": ["scrub"]}],
        "parameters": [
            _query("campaign", "Campaign the list is dialled for", required=True,
                   schema={"type": "string", "maxLength": 200}),
            _query("at", "Instant to judge at (default now)"),
            _query("format", "Output format", schema={"type": "string",
                                                       "enum": ["csv", "ndjson"]}),
            _query("callable_only", "Only leads callable now",
                   schema={"type": "string", "enum": ["true", "false"]}),
            _query("callable_within", "Leads callable within this duration (30m, 24h, 7d, 2w)",
                   schema={"type": "string", "maxLength": 12}),
            _query("sort", "retry_at: callable now first, then by retry_at",
                   schema={"type": "string", "enum": ["retry_at"]}),
            _query("caller_id", "Caller ID the dialer presents",
                   schema={"type": "string", "maxLength": 64}),
            _query("column", "Column holding the number",
                   schema={"type": "string", "maxLength": 200})],
        "requestBody": {"required": True, "content": {"text/csv": {
            "schema": {"type": "string"},
            "example": "lead_id,phone_number\n1,0612345678\n2,0698765432\n"}}},
        "responses": {"200": {"description": "The scrubbed list, streamed", "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}}}},
            **_errors(401, 403, 422, 429, 503)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "sentinelle HTTP API", "version": __version__,
                 "description": "Consents, refusals and dispositions into sentinelle's store; "
                                "dry-run decisions and lead-list scrubs out. See README.md, "
                                "'HTTP API'."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token of [http] tokens_file; scopes "
                                          "consents:write, refusals:write, check:read, scrub"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"}}},
    }


def main() -> None:
    print(json.dumps(spec(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
