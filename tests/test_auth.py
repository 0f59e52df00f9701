"""Register, login, logout through the auth function's Lambda handler."""
from __future__ import annotations

import uuid


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@Example.COM"


def test_register_login_me_logout_journey(api):
    email = _email()
    reg = api.request("POST", "/auth/register", json={"name": "Ada", "email": email, "password": "s3cret-pass"})
    assert reg.status == 201
    body = reg.json()
    assert body["success"] is True and uuid.UUID(body["data"]["user_id"])

    login = api.request("POST", "/auth/login", json={"email": email.lower(), "password": "s3cret-pass"})
    assert login.status == 200
    data = login.json()
    assert data["success"] is True and data["token_type"] == "bearer" and data["access_token"]
    assert data["user"]["email"] == email.lower() and data["user"]["name"] == "Ada"
    assert "password_hash" not in data["user"] and "password" not in str(data["user"])
    jar = login.cookie("iflychat_session")
    assert jar is not None
    morsel = jar["iflychat_session"]
    assert morsel["httponly"] is True
    assert not morsel["secure"]  # plain http under make dev and tests
    assert morsel["samesite"].lower() == "lax"
    cookie = f"iflychat_session={morsel.value}"

    me = api.request("GET", "/users/me", cookies=[cookie])
    assert me.status == 200 and me.json()["id"] == body["data"]["user_id"]

    out = api.request("POST", "/auth/logout", cookies=[cookie])
    assert out.status == 200 and out.json()["success"] is True
    cleared = out.cookie("iflychat_session")
    assert cleared is not None and cleared["iflychat_session"].value in ("", '""')

    replay = api.request("GET", "/users/me", cookies=[cookie])
    assert replay.status == 401 and replay.json()["detail"]
    bearer_replay = api.request("GET", "/users/me", token=data["access_token"])
    assert bearer_replay.status == 401


def test_bearer_token_works_without_cookie(api, user):
    res = api.request("GET", "/users/me", token=user.token)
    assert res.status == 200 and res.json()["email"] == user.email


def test_taken_email_is_a_conflict_case_insensitively(api, user):
    res = api.request("POST", "/auth/register",
                      json={"name": "Twin", "email": user.email.upper(), "password": "another-pass"})
    assert res.status == 409
    assert "already" in res.json()["detail"]


def test_wrong_password_and_unknown_email_get_the_same_401(api, user):
    wrong = api.request("POST", "/auth/login", json={"email": user.email, "password": "not-the-password"})
    unknown = api.request("POST", "/auth/login", json={"email": _email(), "password": "not-the-password"})
    assert wrong.status == unknown.status == 401
    assert wrong.json() == unknown.json()
    assert not wrong.cookies


def test_password_of_72_bytes_works_and_73_is_a_clear_422(api):
    email = _email()
    seventy_two = "é" * 36  # 2 bytes each in UTF-8
    ok = api.request("POST", "/auth/register", json={"name": "B", "email": email, "password": seventy_two})
    assert ok.status == 201
    assert api.request("POST", "/auth/login", json={"email": email, "password": seventy_two}).status == 200

    too_long = api.request("POST", "/auth/register", json={"name": "B", "email": _email(), "password": seventy_two + "x"})
    assert too_long.status == 422
    assert "72 bytes" in too_long.json()["detail"]
    # Logging in with an over-long password is a wrong password, never a 500.
    login = api.request("POST", "/auth/login", json={"email": email, "password": "x" * 200})
    assert login.status == 401


def test_register_validation(api):
    cases = [
        ({"name": "", "email": _email(), "password": "longenough"}, "name"),
        ({"name": "x" * 256, "email": _email(), "password": "longenough"}, "name"),
        ({"name": "Ok", "email": "not-an-email", "password": "longenough"}, "email"),
        ({"name": "Ok", "email": _email(), "password": "short"}, "password"),
        ({"name": "Ok", "email": _email()}, "password"),
        ({"name": "A\x00B", "email": _email(), "password": "longenough"}, "name"),
    ]
    for payload, field in cases:
        res = api.request("POST", "/auth/register", json=payload)
        assert res.status == 422, (payload, res.text)
        body = res.json()
        assert isinstance(body["detail"], str) and field in body["detail"]
        assert "longenough" not in res.text  # the input is never echoed back


def test_malformed_json_is_a_422(api):
    res = api.request("POST", "/auth/register", body="{not json", headers={"content-type": "application/json"})
    assert res.status == 422 and "JSON" in res.json()["detail"]


def test_garbage_and_missing_tokens_are_401(api):
    for headers in ({}, {"authorization": "Bearer garbage"}, {"authorization": "Basic abc"}):
        res = api.request("GET", "/users/me", headers=headers)
        assert res.status == 401 and res.json()["detail"]
    assert api.request("GET", "/users/me", cookies=["iflychat_session=abc.def.ghi"]).status == 401


def test_each_login_is_a_session_row(api, user, sql):
    user.login()
    rows = sql("SELECT count(*) FROM chat_sessions WHERE user_id = %s AND is_active", (user.id,))
    assert rows[0][0] == 2


def test_password_change_ends_other_sessions(api, user):
    old_token = user.token
    second = api.request("POST", "/auth/login", json={"email": user.email, "password": user.password}).json()["access_token"]
    res = api.request("PATCH", "/users/me", token=second,
                      json={"password": "brand-new-password", "current_password": user.password})
    assert res.status == 200
    assert api.request("GET", "/users/me", token=old_token).status == 401
    assert api.request("GET", "/users/me", token=second).status == 200
    relog = api.request("POST", "/auth/login", json={"email": user.email, "password": "brand-new-password"})
    assert relog.status == 200


def test_update_name(api, user):
    res = user.patch("/users/me", json={"name": "  New Name "})
    assert res.status == 200 and res.json()["name"] == "New Name"
    assert user.get("/users/me").json()["name"] == "New Name"
    assert user.patch("/users/me", json={}).status == 422
    assert user.patch("/users/me", json={"email": "x@example.com"}).status == 400
