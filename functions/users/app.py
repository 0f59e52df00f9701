"""Users function: the current user's profile and AI usage, and deleting the account."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Annotated

from fastapi import Query, Request, Response

from shared.app import (
    CurrentCaller, CurrentSession, CurrentUser, clear_session_cookie, client_ip, create_app, lambda_handler,
)
from shared.errors import BadRequest, ValidationFailed
from shared.file_service import delete_account
from shared.models import usage_report
from shared.schemas import DeleteAccountIn, Envelope, UsageOut, UserOut, UserUpdateIn
from shared.security import hash_password
from shared.throttle import password_matches

app = create_app("users")


@app.get("/users/me", response_model=UserOut)
async def me(user: CurrentUser):
    return user.public()


@app.patch("/users/me", response_model=UserOut)
async def update_me(body: UserUpdateIn, session: CurrentSession, request: Request):
    user, session_id = session
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    current = changes.pop("current_password", None)
    if not changes:
        raise ValidationFailed("Nothing to update: send name, email or password")
    if "password" in changes or "email" in changes:
        if not await password_matches(user.email, current, user.password_hash, client_ip(request)):
            raise BadRequest("current_password is required and must be correct to change email or password")
    if "password" in changes:
        changes["password_hash"] = hash_password(changes.pop("password"))
    # A new password ends every other session, in the same transaction.
    await user.update(end_sessions_but=session_id if "password_hash" in changes else None, **changes)
    return user.public()


@app.delete("/users/me", response_model=Envelope)
async def delete_me(body: DeleteAccountIn, user: CurrentUser, request: Request, response: Response):
    """Delete the account: every file in S3, then the user and (by cascade) all their rows."""
    if not await password_matches(user.email, body.password, user.password_hash, client_ip(request)):
        raise BadRequest("password is required and must be correct to delete the account")
    await delete_account(user)
    clear_session_cookie(response)  # the session died with the account: the browser forgets it, as at logout
    return Envelope(message="Account deleted", data={"user_id": str(user.id)})


@app.get("/usage", response_model=UsageOut)
async def usage(caller: CurrentCaller, first: Annotated[date | None, Query(alias="from")] = None,
                last: Annotated[date | None, Query(alias="to")] = None):
    """The user's AI usage by UTC day, by model and in all; the last 30 days unless told."""
    last = last or datetime.now(timezone.utc).date()
    # 29 days back, but never before date.min: `to=0001-01-01` must not overflow into a 500
    first = first or last - timedelta(days=min(29, (last - date.min).days))
    if first > last or (last - first).days >= 366:  # both days count: at most 366 of them
        raise ValidationFailed("from must not be after to, and the range must be at most 366 days")
    return await usage_report(caller, first, last)


handler = lambda_handler(app)
