"""Cookies, CORS, error bodies and logs: nothing an attacker can use, nothing secret leaked."""
from __future__ import annotations

import logging

import psycopg2
import pytest

from shared import app as app_module
from shared import db, settings


@pytest.fixture
def production_cookies(setting):
    """COOKIE_SECURE=true and COOKIE_SAMESITE=none, as template.yaml sets them."""
    setting(COOKIE_SECURE="true", COOKIE_SAMESITE="none")


def test_session_cookie_flags_under_production_settings(api, production_cookies):
    user = api.new_user()
    login = api.request("POST", "/auth/login", json={"email": user.email, "password": user.password})
    raw = next(c for c in login.cookies if c.startswith("iflychat_session="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in raw.split(";")[1:]}
    assert "secure" in flags and "httponly" in flags
    assert flags["samesite"].lower() == "samesite=none"
    assert flags["path"].lower() == "path=/"
    out = api.request("POST", "/auth/logout", cookies=[raw.split(";")[0]])
    cleared = next(c for c in out.cookies if c.startswith("iflychat_session="))
    assert "secure" in cleared.lower() and "httponly" in cleared.lower() and "samesite=none" in cleared.lower()


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:5173.evil.example",
                                    "http://LOCALHOST:5173x", "*"])
def test_cors_never_reflects_an_arbitrary_origin(api, user, origin):
    for res in (user.get("/users/me", headers={"origin": origin}),
                api.request("OPTIONS", "/users/me", headers={"origin": origin, "access-control-request-method": "GET"})
                if api.functions.match("OPTIONS", "/users/me")[0] else user.get("/chats", headers={"origin": origin})):
        assert res.headers.get("access-control-allow-origin") in (None, "http://localhost:5173"), res.headers
        assert res.headers.get("access-control-allow-origin") != "*"


def test_cors_allows_the_configured_front_end_with_credentials(user):
    res = user.get("/users/me", headers={"origin": "http://localhost:5173"})
    assert res.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert res.headers["access-control-allow-credentials"] == "true"


def test_error_bodies_carry_no_stack_trace_or_sql(api, user, monkeypatch, caplog):
    """A bug deep inside is a plain 500 JSON; a refused value a 422; neither shows SQL or a trace."""
    probe = app_module.create_app("probe")

    @probe.get("/boom")
    async def boom():
        raise RuntimeError("secret internals: SELECT password_hash FROM users")

    @probe.get("/bad-value")
    async def bad_value():
        return await db.run(lambda cur: cur.execute("SELECT 'not a number'::int"))

    @probe.get("/check")
    async def check():
        return await db.run(lambda cur: cur.execute("UPDATE users SET name = '' WHERE id = %s", (user.id,)))

    handler = app_module.lambda_handler(probe)
    from local import apigw
    from tests.lambda_client import Context

    for path, status in (("/boom", 500), ("/bad-value", 422), ("/check", 422)):
        result = handler(apigw.build_event("GET", path, [], b""), Context())
        got, _, body = apigw.to_http(result)
        assert got == status, (path, body)
        text = body.decode()
        for leak in ("Traceback", "SELECT", "password_hash", "psycopg2", "secret internals", "File \""):
            assert leak not in text, (path, text)
    assert db.connection().get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_no_secrets_in_logs_during_a_journey(api, caplog, ai_stub):
    caplog.set_level(logging.DEBUG)
    password = "Sup3r-Secret-Passw0rd!"
    user = api.new_user(password=password)
    chat = user.new_chat("log test")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    api.request("POST", "/auth/login", json={"email": user.email, "password": "wrong-" + password})
    api.request("POST", "/auth/login", json={"email": user.email, "password": password + "\x00"})
    user.patch("/users/me", json={"password": "An0ther-Secret-Pass", "current_password": password})
    user.post("/auth/logout")
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    s = settings.get_settings()
    for secret in (password, "An0ther-Secret-Pass", user.token, s.jwt_secret, s.openai_api_key, "$2b$"):
        assert secret and secret not in text, f"a secret reached the logs: {secret[:6]}..."
    assert user.cookie.split("=", 1)[1] not in text
