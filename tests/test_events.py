"""events/ holds the sample events for `sam local invoke`: each one is fed to its real handler
here, so they stay true. Placeholders: __TOKEN__ (a session token, as cookie or bearer) and
__CHAT_ID__ (one of that user's chats); the test fills them with a fresh user's."""
from __future__ import annotations

import json

import pytest

from local.apigw import load_template
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
}


def _event_files() -> set[str]:
    return {p.name for p in EVENTS.glob("*.json") if p.name != "env.json"}


def test_every_event_file_has_an_expected_status():
    assert _event_files() == set(EXPECTED_STATUS)


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
    match = api.router.match(http["method"], event["rawPath"])
    assert match is not None and match.route_key == event["routeKey"] == event["requestContext"]["routeKey"]
    assert event.get("pathParameters", {}) == match.params
    res = api.invoke(event, match.function)
    assert res.status == EXPECTED_STATUS[name], res.text
    if name == "messages-send.json":
        assert res.json()["ai_response"]["content"].startswith("Stub reply to:")


def test_env_json_only_sets_variables_the_template_declares():
    """`sam local invoke --env-vars` silently ignores a variable the template does not declare."""
    template = load_template(ROOT / "template.yaml")
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for res in template["Resources"].values():
        declared |= set(res.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    env = json.loads((EVENTS / "env.json").read_text())
    for scope, variables in env.items():
        assert scope == "Parameters" or scope in template["Resources"], scope
        assert set(variables) <= declared, set(variables) - declared
