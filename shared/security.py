"""Passwords (bcrypt) and session tokens (HS256 JWTs naming a chat_sessions row)."""
from __future__ import annotations

import time
import uuid
from functools import lru_cache

import bcrypt
import jwt

from shared.settings import get_settings

MAX_PASSWORD_BYTES = 72  # bcrypt's limit; bcrypt 5 raises ValueError past it
MIN_PASSWORD_CHARS = 8
JWT_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    rounds = get_settings().bcrypt_rounds
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True when they match; False (never an exception) for anything bcrypt refuses."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Same cost as real hashes, so checking an unknown email costs what a wrong password does.
    return hash_password("not-a-real-password-" + uuid.uuid4().hex)


def burn_password_check(password: str) -> None:
    """Spend one bcrypt check's worth of time for a login whose email is unknown."""
    verify_password(password, _dummy_hash())


def create_token(user_id: uuid.UUID, session_id: uuid.UUID, expires_at: float) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "sid": str(session_id), "iat": now, "nbf": now, "exp": int(expires_at)}
    return jwt.encode(claims, get_settings().jwt_secret, algorithm=JWT_ALGORITHM)


def decode_token(token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(user_id, session_id) of a valid token, or None for anything else."""
    try:
        claims = jwt.decode(
            token,
            get_settings().jwt_secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "sid", "exp", "iat"]},
        )
        return uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None
