"""The OpenAPI document: served at /openapi.json, equal to docs/openapi.json
(so it cannot drift), and honoured by the live API: schemathesis fuzzes every
operation of a real `sentinelle serve` on a real store, and no answer is a
5xx or strays from the document (status, content type, body schema)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sentinelle.http.openapi import spec
from tests.helpers.http_support import TOKENS, consent_body, http_service

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
EXAMPLES = int(os.environ.get("SENTINELLE_SCHEMA_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

schema = schemathesis.openapi.from_path(str(DOC))


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with http_service(tmp_path_factory.mktemp("schema")) as s:
        with s.client() as c:  # some history, so that success paths are reachable too
            c.post("/v1/consents", json=consent_body("0612345678"))
        yield s


def test_served_document_is_the_committed_file(svc):
    with svc.client(None) as c:
        served = c.get("/openapi.json").json()
    assert served == json.loads(DOC.read_text()), \
        "docs/openapi.json is stale: python -m sentinelle.http.openapi > docs/openapi.json"
    assert served == spec()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate], derandomize=True)
def test_live_api_honours_its_document(case, svc):
    case.call_and_validate(base_url=svc.base_url, checks=CHECKS, timeout=30,
                           headers={"Authorization": f"Bearer {TOKENS['crm'][1]}"})
