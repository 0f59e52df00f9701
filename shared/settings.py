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
    # Files. A direct upload travels base64-encoded inside the Lambda event (6 MB cap), so
    # 4 MiB is the largest file that fits with room to spare; bigger ones use POST /files/presign.
    s3_bucket: str = ""
    s3_prefix: str = "users/"
    s3_endpoint_url: str = ""
    aws_region: str = "us-east-1"
    max_upload_bytes: int = 4 * 1024 * 1024
    max_presigned_upload_bytes: int = 50 * 1024 * 1024
    presigned_url_ttl_seconds: int = 300
    extract_max_chars: int = 200_000
    login_window_seconds: int = 900
    login_account_free_failures: int = 5
    login_client_free_failures: int = 30
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: int = 300


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
        s3_bucket=_env("S3_BUCKET", ""),
        s3_prefix=_env("S3_PREFIX", "users/").strip("/") + "/",
        s3_endpoint_url=_env("S3_ENDPOINT_URL", ""),
        aws_region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1")),
        max_upload_bytes=int(_env("MAX_UPLOAD_BYTES", str(Settings.max_upload_bytes))),
        max_presigned_upload_bytes=int(_env("MAX_PRESIGNED_UPLOAD_BYTES", str(Settings.max_presigned_upload_bytes))),
        presigned_url_ttl_seconds=int(_env("PRESIGNED_URL_TTL_SECONDS", "300")),
        extract_max_chars=int(_env("EXTRACT_MAX_CHARS", str(Settings.extract_max_chars))),
        login_window_seconds=int(_env("LOGIN_WINDOW_SECONDS", "900")),
        login_account_free_failures=int(_env("LOGIN_ACCOUNT_FREE_FAILURES", "5")),
        login_client_free_failures=int(_env("LOGIN_CLIENT_FREE_FAILURES", "30")),
        login_backoff_base_seconds=float(_env("LOGIN_BACKOFF_BASE_SECONDS", "1")),
        login_backoff_max_seconds=int(_env("LOGIN_BACKOFF_MAX_SECONDS", "300")),
    )
