"""Authentication attacks: forged and malformed tokens, dead sessions, replays, and brute force on
login answered by a back-off (429 + Retry-After) that can never lock a victim out for good."""
from __future__ import annotations

import base64
import json
import math
import time
import uuid

import jwt
import pytest

from shared.security import decode_token
from shared.settings import get_settings

UNAUTHORIZED = {401}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(user) -> dict[str, str]:
    user_id, session_id = decode_token(user.token)
    now = int(time.time())
    good = {"sub": str(user_id), "sid": str(session_id), "iat": now, "nbf": now, "exp": now + 600}
    key = get_settings().jwt_secret

    def sign(claims, secret=key, alg="HS256"):
        return jwt.encode(claims, secret, algorithm=alg)

    return {
        "expired": sign({**good, "exp": now - 5}),
        "not yet valid (nbf)": sign({**good, "nbf": now + 3600}),
        "issued in the future": sign({**good, "iat": now + 3600}),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "alg none, signature kept": _b64({"alg": "none"}) + "." + _b64(good) + "." + user.token.rsplit(".", 1)[1],
        "wrong key": sign(good, "another-secret-0123456789abcdef-0123456789"),
        "HS512 with the right key": sign(good, alg="HS512"),
        "truncated": user.token[:-6],
        "signature stripped": user.token.rsplit(".", 1)[0] + ".",
        "payload swapped": user.token.split(".")[0] + "." + _b64({**good, "sub": str(uuid.uuid4())}) + "." + user.token.rsplit(".", 1)[1],
        "sub an integer": sign({**good, "sub": 42}),
        "sub a list": sign({**good, "sub": [str(user_id)]}),
        "sub an object": sign({**good, "sub": {"id": str(user_id)}}),
        "sub not a UUID": sign({**good, "sub": "admin"}),
        "sid missing": sign({k: v for k, v in good.items() if k != "sid"}),
        "sid unknown": sign({**good, "sid": str(uuid.uuid4())}),
        "sid of another user": sign({**good, "sub": str(uuid.uuid4())}),
        "exp missing": sign({k: v for k, v in good.items() if k != "exp"}),
        "exp a string": sign({**good, "exp": "tomorrow"}),
        "empty": "",
        "garbage": "a.b.c",
        "two dots only": "..",
        "unicode": "ü.ü.ü",
        "very long": "A" * 20_000,
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_and_malformed_tokens_are_401_by_bearer_and_by_cookie(api, user, sql):
    tokens = forged_tokens(user)
    for label, token in tokens.items():
        for res in (api.request("GET", "/users/me", headers={"authorization": f"Bearer {token}"}),
                    api.request("GET", "/users/me", cookies=[f"iflychat_session={token}"]),
                    api.request("POST", "/chats", json={"title": "x"}, headers={"authorization": f"Bearer {token}"})):
            assert res.status in UNAUTHORIZED, (label, res.status, res.text)
            assert isinstance(res.json()["detail"], str)
    assert sql("SELECT count(*) FROM chats WHERE user_id = %s", (user.id,))[0][0] == 0
    assert user.get("/users/me").status == 200  # the real token still works


def test_a_deactivated_user_is_shut_out_and_cannot_log_in(api, user, sql):
    sql("UPDATE users SET is_active = false WHERE id = %s", (user.id,))
    assert user.get("/users/me").status == 401
    res = api.request("POST", "/auth/login", json={"email": user.email, "password": user.password},
                      source_ip="198.51.100.1")
    assert res.status == 401 and res.json()["detail"] == "Incorrect email or password"


def test_a_deleted_user_token_is_401(api, user, sql):
    token = user.token
    sql("DELETE FROM users WHERE id = %s", (user.id,))
    assert api.request("GET", "/users/me", token=token).status == 401
    assert api.request("GET", "/chats", token=token).status == 401


def test_replay_after_logout_and_after_password_change(api, user):
    # after logout: both the cookie and the bearer form of the token are dead
    cookie, token = user.cookie, user.token
    assert user.post("/auth/logout").status == 200
    assert api.request("GET", "/users/me", cookies=[cookie]).status == 401
    assert api.request("GET", "/users/me", token=token).status == 401
    assert api.request("POST", "/auth/logout", token=token).status == 401  # logging out twice is no oracle

    # after a password change: every other session ends, the changing one stays
    user.login()
    elsewhere = user.token
    user.login()
    res = user.patch("/users/me", json={"password": "a-brand-new-password", "current_password": user.password})
    assert res.status == 200
    assert api.request("GET", "/users/me", token=elsewhere).status == 401
    assert user.get("/users/me").status == 200
    old = api.request("POST", "/auth/login", json={"email": user.email, "password": user.password},
                      source_ip="198.51.100.2")
    assert old.status == 401


# ------------------------------------------------------------------------------------ brute force


def _login(api, email, password, ip):
    return api.request("POST", "/auth/login", json={"email": email, "password": password}, source_ip=ip)


def _ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 256}.{(n >> 8) % 256}.{(n >> 16) % 254 + 1}"  # a fresh client address


def _age_attempts(sql, seconds: int) -> None:
    """Move every recorded attempt `seconds` into the past: time passing, without sleeping."""
    sql("UPDATE login_attempts SET attempted_at = attempted_at - make_interval(secs => %s)", (seconds,))


def test_per_account_back_off_then_success_resets_it(api, user, sql):
    s = get_settings()
    ip = _ip()
    for _ in range(s.login_account_free_failures):
        assert _login(api, user.email, "wrong-password", ip).status == 401
    locked = _login(api, user.email, "wrong-password", ip)
    assert locked.status == 429 and isinstance(locked.json()["detail"], str)
    assert 1 <= int(locked.headers["retry-after"]) <= s.login_backoff_max_seconds
    # the right password does not get through during the back-off either (or it would be an oracle)
    assert _login(api, user.email, user.password, ip).status == 429
    # the account, not just this client: another address is held back too
    assert _login(api, user.email, user.password, _ip()).status == 429
    # other accounts from the same client are not affected
    other = api.new_user()
    assert _login(api, other.email, other.password, ip).status == 200

    _age_attempts(sql, int(locked.headers["retry-after"]))
    assert _login(api, user.email, user.password, ip).status == 200
    # success starts the account afresh: the free attempts are back
    assert _login(api, user.email, "wrong-password", ip).status == 401


def test_unknown_emails_back_off_exactly_like_known_ones(api, user):
    s = get_settings()
    ip = _ip()
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    answers = {}
    for email in (user.email, unknown):
        answers[email] = [_login(api, email, "wrong-password", ip) for _ in range(s.login_account_free_failures + 1)]
    known, missing = ([(r.status, r.json()) for r in answers[e]] for e in (user.email, unknown))
    assert known == missing
    assert [st for st, _ in known] == [401] * s.login_account_free_failures + [429]


def test_the_back_off_doubles_up_to_a_cap_and_refused_attempts_do_not_extend_it(api, user, sql):
    s = get_settings()
    ip = _ip()
    waits: list[int] = []
    while not waits or waits[-1] < s.login_backoff_max_seconds:  # an attacker who waits out every back-off
        res = _login(api, user.email, "wrong-password", ip)
        if res.status == 429:
            waits.append(int(res.headers["retry-after"]))
            if waits[-1] < s.login_backoff_max_seconds:
                _age_attempts(sql, waits[-1])
        assert len(waits) < 40
    assert waits == [min(s.login_backoff_max_seconds, math.ceil(s.login_backoff_base_seconds * 2 ** i))
                     for i in range(len(waits))]

    counted = sql("SELECT count(*) FROM login_attempts WHERE scope = 'account'")[0][0]
    for _ in range(10):  # hammering during the back-off changes nothing
        res = _login(api, user.email, "wrong-password", ip)
        assert res.status == 429 and int(res.headers["retry-after"]) <= s.login_backoff_max_seconds
    assert sql("SELECT count(*) FROM login_attempts WHERE scope = 'account'")[0][0] == counted

    # however long the attack went on, the owner gets in once the cap has passed
    _age_attempts(sql, s.login_backoff_max_seconds)
    assert _login(api, user.email, user.password, _ip()).status == 200


def test_attempts_leave_the_sliding_window(api, user, sql):
    s = get_settings()
    ip = _ip()
    for _ in range(s.login_account_free_failures):
        _login(api, user.email, "wrong-password", ip)
    assert _login(api, user.email, "wrong-password", ip).status == 429
    _age_attempts(sql, s.login_window_seconds + 1)
    statuses = [_login(api, user.email, "wrong-password", ip).status for _ in range(s.login_account_free_failures)]
    assert statuses == [401] * s.login_account_free_failures


def test_per_client_limit_is_separate_and_looser(api, sql):
    s = get_settings()
    ip = _ip()
    for i in range(s.login_client_free_failures):  # many accounts, each tried once: no account limit hit
        assert _login(api, f"victim-{i}-{uuid.uuid4().hex[:6]}@example.com", "guess-123", ip).status == 401
    res = _login(api, f"fresh-{uuid.uuid4().hex[:6]}@example.com", "guess-123", ip)
    assert res.status == 429 and int(res.headers["retry-after"]) >= 1
    # a real user on another address is untouched by that client's back-off
    someone = api.new_user()
    assert _login(api, someone.email, someone.password, _ip()).status == 200
    _age_attempts(sql, s.login_backoff_max_seconds)
    assert _login(api, someone.email, someone.password, ip).status == 200


@pytest.mark.parametrize("method, body", [("PATCH", {"password": "new-password-1", "current_password": "guess-guess"}),
                                          ("DELETE", {"password": "guess-guess"})])
def test_password_rechecks_of_a_signed_in_user_back_off_too(api, user, sql, method, body):
    """A stolen session must not become an unlimited password oracle."""
    s = get_settings()
    for _ in range(s.login_account_free_failures):
        assert user.request(method, "/users/me", json=body).status == 400
    res = user.request(method, "/users/me", json=body)
    assert res.status == 429 and res.headers["retry-after"]
    assert sql("SELECT count(*) FROM users WHERE id = %s", (user.id,))[0][0] == 1


def test_lockout_table_holds_no_emails_or_addresses(api, user, sql):
    _login(api, user.email, "wrong-password", "192.0.2.55")
    rows = sql("SELECT key FROM login_attempts")
    assert rows and all(user.email not in k and "192.0.2.55" not in k for (k,) in rows)


@pytest.mark.parametrize("field", ["email", "password"])
def test_login_errors_never_echo_the_input(api, field):
    payload = {"email": "secret-mail@example.com", "password": "secret-password-xyz"}
    payload[field] = payload[field] + "\x00"
    res = api.request("POST", "/auth/login", json=payload, source_ip=_ip())
    assert res.status == 422 and "secret-password-xyz" not in res.text and "secret-mail" not in res.text


def test_a_password_change_and_the_end_of_other_sessions_land_together(api, user, monkeypatch):
    """If ending the other sessions fails, the password must not have changed either: a stolen
    session never outlives a password change."""
    from shared import models

    monkeypatch.setattr(models, "_END_OTHER_SESSIONS", "SELECT 1 / 0 WHERE %s IS NOT NULL AND %s IS NOT NULL")
    other = api.request("POST", "/auth/login", json={"email": user.email, "password": user.password}).json()["access_token"]
    res = user.patch("/users/me", json={"password": "a-whole-new-secret", "current_password": user.password})
    assert 400 <= res.status < 600 and res.status != 200
    monkeypatch.undo()
    assert api.request("POST", "/auth/login", json={"email": user.email, "password": user.password}).status == 200
    assert api.request("GET", "/users/me", token=other).status == 200
