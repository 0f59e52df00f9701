"""events/ holds the sample events for `sam local invoke`: each one is fed to its real handler
here, so they stay true. Placeholders: __TOKEN__ (a session token, as cookie or bearer),
__CHAT_ID__ (one of that user's chats), __USER_ID__ and __FILE_ID__ (an uploaded file's S3 key);
the test fills them with a fresh user's."""
from __future__ import annotations

import json

import pytest

import yaml

from local.apigw import CfnLoader
from tests.conftest import ROOT

EVENTS = ROOT / "events"
EXPECTED_STATUS = {
    "health.json": 200,
    "auth-register.json": 201,
    "auth-login.json": 200,
    "auth-logout.json": 200,
    "users-me.json": 200,
    "chats-list.json": 200,
    "chats-create.json": 201,
    "messages-list.json": 200,
    "messages-send.json": 200,
    "files-list.json": 200,
}
S3_EVENTS = {"s3-object-created.json": ["processed"]}  # file processor outcomes


def _event_files() -> set[str]:
    return {p.name for p in EVENTS.glob("*.json") if p.name != "env.json"}


def test_every_event_file_has_an_expected_outcome():
    assert _event_files() == set(EXPECTED_STATUS) | set(S3_EVENTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_event_through_its_handler(name, api, sql, ai_stub):
    session = api.new_user()
    chat = session.new_chat()
    text = (EVENTS / name).read_text(encoding="utf-8")
    event = json.loads(text.replace("__TOKEN__", session.token).replace("__CHAT_ID__", chat["id"]))
    ada = json.loads(json.loads((EVENTS / "auth-register.json").read_text())["body"])
    if name == "auth-register.json":
        sql("DELETE FROM users WHERE email = %s", (ada["email"],))
    elif name == "auth-login.json":
        api.request("POST", "/auth/register", json=ada)  # 201, or 409 when it is there already

    http = event["requestContext"]["http"]
    route, params, _ = api.functions.match(http["method"], event["rawPath"])
    assert route is not None and route.route_key == event["routeKey"] == event["requestContext"]["routeKey"]
    assert event.get("pathParameters", {}) == params
    res = api.invoke(event, route.function)
    assert res.status == EXPECTED_STATUS[name], res.text
    if name == "messages-send.json":
        assert res.json()["ai_response"]["content"].startswith("Stub reply to:")


@pytest.mark.parametrize("name", sorted(S3_EVENTS))
def test_s3_event_through_the_file_processor(name, api, s3, user):
    from tests.conftest import TEST_BUCKET
    from tests.lambda_client import Context

    text = "Notes on the Analytical Engine, by A. A. L. (1843)"
    f = user.post("/files/presign", json={"file_name": "notes.txt", "file_size": len(text)}).json()["file"]
    key = f"users/{user.id}/{f['id']}"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=text.encode(), ContentType="text/plain")
    raw = (EVENTS / name).read_text(encoding="utf-8")
    event = json.loads(raw.replace("__USER_ID__", user.id).replace("__FILE_ID__", f["id"]))
    (function,) = [n for n, fn in api.functions.template.functions.items() if fn.s3_triggered]
    result = api.functions.handler(function)(event, Context())
    assert result["outcomes"] == S3_EVENTS[name]
    assert user.get(f"/files/{f['id']}").json()["extracted_text"] == text


def test_env_json_only_sets_variables_the_template_declares():
    """`sam local invoke --env-vars` silently ignores a variable the template does not declare."""
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for res in template["Resources"].values():
        declared |= set(res.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    env = json.loads((EVENTS / "env.json").read_text())
    for scope, variables in env.items():
        assert scope == "Parameters" or scope in template["Resources"], scope
        assert set(variables) <= declared, set(variables) - declared
