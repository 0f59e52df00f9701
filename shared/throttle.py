"""Login back-off against password guessing, per account and per client.

Every login attempt is counted twice: against the account (the email as typed, whether or not
it exists, so the answer never tells which emails are registered) and against the client (the
caller's source IP). Within a sliding window of LOGIN_WINDOW_SECONDS, a key's first
LOGIN_*_FREE_FAILURES attempts are free; after that each further attempt must wait
LOGIN_BACKOFF_BASE_SECONDS * 2^(extra attempts) after the latest one, capped at
LOGIN_BACKOFF_MAX_SECONDS, or it is refused with 429 and Retry-After.

Why a victim cannot be locked out for good: the wait never exceeds the cap, a refused attempt
is not counted (hammering does not extend it), attempts leave the window by themselves, and a
successful login clears its account. The client limit is separate and looser, so one address
cannot guess across many accounts, while people behind a shared address keep logging in.
"""
from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass

from shared.errors import TooManyRequests
from shared.models import LoginAttempts
from shared.security import verify_password
from shared.settings import get_settings


def _key(scope: str, value: str) -> str:
    return hashlib.sha256(f"{scope}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


def backoff_seconds(attempts: int, free: int) -> float:
    """How long after the latest of `attempts` recent attempts the next one must wait."""
    s = get_settings()
    if attempts < free:
        return 0.0
    return min(float(s.login_backoff_max_seconds), s.login_backoff_base_seconds * 2.0 ** min(attempts - free, 40))


@dataclass
class LoginAttempt:
    account_key: str
    ids: list[uuid.UUID]

    async def succeeded(self) -> None:
        await LoginAttempts.succeeded(self.account_key, self.ids)


async def begin_login(email: str, client: str) -> LoginAttempt:
    """Count this attempt, or raise TooManyRequests when its account or client must wait."""
    s = get_settings()
    keys = {"account": _key("account", email.strip().lower()), "client": _key("client", client)}
    free = {"account": s.login_account_free_failures, "client": s.login_client_free_failures}

    def refuse(recent: dict[str, tuple[int, float]]) -> float:
        return max([backoff_seconds(n, free[scope]) - since for scope, (n, since) in recent.items()] + [0.0])

    reserved = await LoginAttempts.reserve(keys, s.login_window_seconds, refuse)
    if not isinstance(reserved, list):
        raise TooManyRequests("Too many login attempts; please wait before trying again",
                              retry_after=math.ceil(reserved))
    return LoginAttempt(keys["account"], reserved)


async def password_matches(email: str, password: str | None, password_hash: str, client: str) -> bool:
    """A signed-in user's password re-check (to change email or password, to delete the
    account): an oracle a stolen session could guess against, so it backs off like login."""
    if password is None:
        return False
    attempt = await begin_login(email, client)
    if not verify_password(password, password_hash):
        return False
    await attempt.succeeded()
    return True
