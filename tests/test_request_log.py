"""One JSON log line per request (no secrets in it), errors with their stack, and the stage
prefix: the deployed API uses the $default stage (no prefix), a named stage works too."""
from __future__ import annotations

import json

import pytest

from local import apigw
from shared.app import lambda_handler
from shared.models import User
from shared.settings import reset_settings
from tests.lambda_client import Context


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def _requests(lines: list[dict]) -> list[dict]:
    return [e for e in lines if e.get("message") == "request"]


def test_one_line_per_request_with_ids_route_status_latency_and_user(user, capsys):
    capsys.readouterr()
    chat = user.new_chat("Secret plans")
    res = user.get(f"/chats/{chat['id']}")
    assert res.status == 200
    lines = _requests(_lines(capsys))
    assert [(e["route"], e["status"]) for e in lines] == [("POST /chats", 201), ("GET /chats/{chat_id}", 200)]
    for e in lines:
        assert e["user_id"] == user.id
        assert e["request_id"] and e["apigw_request_id"] and e["request_id"] != e["apigw_request_id"]
        assert isinstance(e["latency_ms"], float) and e["level"] == "INFO"


def test_nothing_secret_is_logged(api, capsys):
    capsys.readouterr()
    session = api.new_user(password="hunter2-is-my-password")
    session.post("/chats", json={"title": "my private title"})
    out = capsys.readouterr().out
    for secret in ("hunter2-is-my-password", session.token, session.cookie.split("=", 1)[1],
                   "my private title", session.email):
        assert secret not in out
    assert out.count('"message": "request"') == 3  # register, login, create chat
    assert '"logger": "mangum' not in out  # its own per-request line is ours now
    # the line for a failed login has no user and no body either
    res = api.request("POST", "/auth/login", json={"email": session.email, "password": "wrong-password-1"})
    assert res.status == 401
    (line,) = _requests(_lines(capsys))
    assert line["status"] == 401 and line["user_id"] is None and "wrong-password-1" not in json.dumps(line)


@pytest.mark.expects_500
def test_an_unhandled_error_is_a_500_logged_with_its_stack(user, capsys, monkeypatch):
    async def broken(*_):
        raise RuntimeError("boom in the model layer")

    monkeypatch.setattr(User, "get_by_session", broken)
    capsys.readouterr()
    res = user.get("/users/me")
    assert res.status == 500 and res.json()["detail"] == "Internal server error"
    lines = _lines(capsys)
    (error,) = [e for e in lines if e["level"] == "ERROR"]
    assert "RuntimeError: boom in the model layer" in error["stack"] and error["request_id"]
    (req,) = _requests(lines)
    assert req["status"] == 500 and req["request_id"] == error["request_id"]


def _health_event(stage: str) -> dict:
    """GET /health as API Gateway sends it from a stage: a named one prefixes the path."""
    route = apigw.Route("GET", "/health", "HealthFunction")
    event = apigw.build_event("GET", "/health", [("host", "abc123.execute-api.eu-west-1.amazonaws.com")], route=route)
    if stage != "$default":
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/{stage}/health"
    event["requestContext"]["stage"] = stage
    return event


def test_default_stage_and_named_stage_both_route(api, monkeypatch):
    health_app = api.functions.handler("HealthFunction").app
    plain = _health_event("$default")  # what the template deploys: no prefix
    assert plain["rawPath"] == "/health"
    assert lambda_handler(health_app)(plain, Context())["statusCode"] == 200

    monkeypatch.setenv("API_BASE_PATH", "prod")
    reset_settings()
    try:
        staged = _health_event("prod")
        assert staged["rawPath"] == "/prod/health"
        result = lambda_handler(health_app)(staged, Context())
        assert result["statusCode"] == 200, result
        assert json.loads(result["body"])["database"] == "healthy"
    finally:
        monkeypatch.undo()
        reset_settings()
