"""Settings, read once per container from the environment.

Every setting the backend reads is declared here with its default; the README lists them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/iflychat"
    db_connect_timeout: int = 5
    db_statement_timeout_ms: int = 10_000
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_ttl_seconds: int = 7 * 24 * 3600
    bcrypt_rounds: int = 12
    cookie_name: str = "iflychat_session"
    cookie_secure: bool = False
    cookie_samesite: str = "lax"
    frontend_origins: tuple[str, ...] = ("http://localhost:5173",)
    api_base_path: str = ""
    openai_api_key: str = ""
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = 20.0
    openai_max_retries: int = 1
    ai_system_prompt: str = (
        "You are IFlyChat, a helpful assistant. Answer clearly and concisely; "
        "when documents are provided, ground your answer in them."
    )
    ai_context_messages: int = 20
    ai_max_tokens: int = 1024


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    origins = tuple(o.strip() for o in _env("FRONTEND_ORIGIN", "http://localhost:5173").split(",") if o.strip())
    samesite = _env("COOKIE_SAMESITE", "lax").lower()
    if samesite not in {"lax", "strict", "none"}:
        raise ValueError(f"COOKIE_SAMESITE must be lax, strict or none, not {samesite!r}")
    return Settings(
        stage=_env("STAGE", "local"),
        database_url=_env("DATABASE_URL", Settings.database_url),
        db_connect_timeout=int(_env("DB_CONNECT_TIMEOUT", "5")),
        db_statement_timeout_ms=int(_env("DB_STATEMENT_TIMEOUT_MS", "10000")),
        jwt_secret=_env("JWT_SECRET", DEFAULT_JWT_SECRET),
        jwt_ttl_seconds=int(_env("JWT_TTL_SECONDS", str(7 * 24 * 3600))),
        bcrypt_rounds=int(_env("BCRYPT_ROUNDS", "12")),
        cookie_name=_env("COOKIE_NAME", "iflychat_session"),
        cookie_secure=_bool(_env("COOKIE_SECURE", "false")),
        cookie_samesite=samesite,
        frontend_origins=origins,
        api_base_path=_env("API_BASE_PATH", "").strip("/"),
        openai_api_key=_env("OPENAI_API_KEY", ""),
        openai_base_url=_env("OPENAI_BASE_URL", ""),
        openai_model=_env("OPENAI_MODEL", "gpt-4o-mini"),
        openai_timeout_seconds=float(_env("OPENAI_TIMEOUT_SECONDS", "20")),
        openai_max_retries=int(_env("OPENAI_MAX_RETRIES", "1")),
        ai_system_prompt=_env("AI_SYSTEM_PROMPT", Settings.ai_system_prompt),
        ai_context_messages=int(_env("AI_CONTEXT_MESSAGES", "20")),
        ai_max_tokens=int(_env("AI_MAX_TOKENS", "1024")),
    )
