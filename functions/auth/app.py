"""Auth function: register, log in, log out."""
from __future__ import annotations

import time

from fastapi import Request, Response

from shared.app import CurrentSession, clear_session_cookie, client_ip, create_app, lambda_handler, set_session_cookie
from shared.errors import Unauthorized
from shared.models import ChatSession, User
from shared.schemas import Envelope, LoginIn, LoginOut, RegisterIn
from shared.security import burn_password_check, create_token, hash_password, verify_password
from shared.settings import get_settings
from shared.throttle import begin_login

app = create_app("auth")


@app.post("/auth/register", response_model=Envelope, status_code=201)
async def register(body: RegisterIn):
    user = await User.create(body.name, body.email, hash_password(body.password))
    return Envelope(message="Account created", data={"user_id": str(user.id)})


@app.post("/auth/login", response_model=LoginOut)
async def login(body: LoginIn, request: Request, response: Response):
    attempt = await begin_login(body.email, client_ip(request))  # 429 while backing off
    user = await User.get_by_email(body.email)
    if user is None:
        burn_password_check(body.password)
        raise Unauthorized("Incorrect email or password")
    if not verify_password(body.password, user.password_hash) or not user.is_active:
        raise Unauthorized("Incorrect email or password")
    await attempt.succeeded()
    s = get_settings()
    session = await ChatSession.create(user.id, s.jwt_ttl_seconds, request.headers.get("user-agent"), client_ip(request))
    token = create_token(user.id, session.id, time.time() + s.jwt_ttl_seconds)
    set_session_cookie(response, token)
    return LoginOut(message="Logged in", user=user.public(), access_token=token)


@app.post("/auth/logout", response_model=Envelope)
async def logout(session: CurrentSession, response: Response):
    await ChatSession.revoke(session[1])
    clear_session_cookie(response)
    return Envelope(message="Logged out")


handler = lambda_handler(app)
