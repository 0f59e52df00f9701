"""Schemathesis over the merged OpenAPI document, against the local runner: a bounded number of
generated requests per operation (valid and invalid), as a logged-in user. Zero server errors,
zero responses that break the documented schema."""
from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.openapi_doc import merged_openapi

MAX_EXAMPLES = 15  # per operation; keeps the fuzzing part of CI around 20 s


@pytest.fixture(scope="module")
def fuzz_schema(api, local_api):
    return schemathesis.openapi.from_dict(merged_openapi(api.functions))


@pytest.fixture(scope="module")
def fuzz_auth(local_api):
    url, _ = local_api
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=url) as client:
        client.post("/auth/register", json={"name": "Fuzz", "email": email, "password": "fuzz-password"})
        token = client.post("/auth/login", json={"email": email, "password": "fuzz-password"}).json()["access_token"]
        chat = client.post("/chats", json={"title": "fuzz"}, headers={"authorization": f"Bearer {token}"}).json()
    return {"authorization": f"Bearer {token}"}, chat["id"]


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.exclude(path="/auth/logout").parametrize()  # logging out would end the fuzzer's own session
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_fuzz_the_api(case, local_api, fuzz_auth, ai_stub):
    url, statuses = local_api
    headers, chat_id = fuzz_auth
    if case.path_parameters and "chat_id" in case.path_parameters and case.method != "delete":
        case.path_parameters["chat_id"] = chat_id  # half the time a real chat, so deeper code runs
    response = case.call_and_validate(base_url=url, headers=headers,
                                      checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
    statuses[response.status_code] += 1
