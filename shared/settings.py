"""Settings, read once per container from the environment.

Every setting the backend reads is declared here with its default; the README lists them.

Deployed, the secrets (database URL, JWT key, OpenAI key) are not in the environment: the
environment names where they are (`DATABASE_URL_SECRET_ARN`, `JWT_SECRET_ARN`,
`OPENAI_API_KEY_SECRET_ARN`: a Secrets Manager secret's ARN or name, or an SSM parameter's ARN),
and get_settings() reads them once per container with boto3, imported only then. In production
a missing or default JWT key (or database URL) is a ConfigurationError: the app factory answers
every request 503 and logs why, until the configuration is fixed.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

DEFAULT_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


# USD per million tokens (input, output), list prices of common models; AI_PRICES adds or overrides.
DEFAULT_AI_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "anthropic.claude-3-haiku": (0.25, 1.25),
    "anthropic.claude-3-5-haiku": (0.80, 4.00),
    "anthropic.claude-3-5-sonnet": (3.00, 15.00),
    "amazon.nova-micro": (0.035, 0.14),
    "amazon.nova-lite": (0.06, 0.24),
    "amazon.nova-pro": (0.80, 3.20),
}


def _prices(raw: str) -> dict[str, tuple[float, float]]:
    """The price table: the defaults, then AI_PRICES (JSON: model -> {input_per_1m, output_per_1m})."""
    prices = dict(DEFAULT_AI_PRICES)
    if not raw.strip():
        return prices
    try:
        table = json.loads(raw)
        assert isinstance(table, dict)
        for model, price in table.items():
            pair = (float(price["input_per_1m"]), float(price["output_per_1m"]))
            if not all(math.isfinite(p) and p >= 0 for p in pair):
                raise ValueError
            prices[str(model)] = pair
    except (ValueError, TypeError, KeyError, AssertionError):
        raise ValueError("AI_PRICES must be a JSON object: model -> {input_per_1m, output_per_1m}, "
                         "numbers >= 0") from None
    return prices


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/iflychat"
    db_connect_timeout: int = 5
    db_statement_timeout_ms: int = 10_000
    db_offload: str = "inline"
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
    ai_provider: str = "openai"
    bedrock_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    bedrock_region: str = ""
    ai_time_budget_seconds: float = 25.0
    ai_system_prompt: str = (
        "You are IFlyChat, a helpful assistant. Answer clearly and concisely; "
        "when documents are provided, ground your answer in them."
    )
    ai_context_messages: int = 50
    ai_context_tokens: int = 8000
    ai_file_context_share: float = 0.5
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
    ai_prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_AI_PRICES))
    quota_daily_tokens: int = 200_000
    quota_calls_per_minute: int = 20
    login_window_seconds: int = 900
    login_account_free_failures: int = 5
    login_client_free_failures: int = 30
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: int = 300
    production: bool = False
    log_level: str = "INFO"


class ConfigurationError(RuntimeError):
    """The deployment's configuration cannot work (a secret is missing or unreadable)."""


# setting -> the environment variable naming the secret that holds it
SECRET_REFERENCES = {
    "database_url": "DATABASE_URL_SECRET_ARN",
    "jwt_secret": "JWT_SECRET_ARN",
    "openai_api_key": "OPENAI_API_KEY_SECRET_ARN",
}
RETRY_FAILED_CONFIG_SECONDS = 30.0
_NOT_PRODUCTION_STAGES = {"local", "test", "dev"}
log = logging.getLogger("iflychat")
_cache: dict[str, Any] = {}
_clients: dict[tuple, Any] = {}  # kept by reset_settings: a client outlives a configuration


def get_settings() -> Settings:
    """The settings, secrets resolved, cached for the container's life. Raises
    ConfigurationError when they cannot work; a failure is remembered for 30 s, then retried
    (so a throttled secret read at cold start does not break the container for good)."""
    settings = _cache.get("settings")
    if settings is not None:
        return settings
    failed = _cache.get("failure")
    if failed and time.monotonic() - failed[0] < RETRY_FAILED_CONFIG_SECONDS:
        raise failed[1]
    try:
        settings = check_production(resolve_secrets(settings_from_env()))
    except ConfigurationError as exc:
        _cache["failure"] = (time.monotonic(), exc)
        log.critical("configuration error: %s", exc)
        raise
    _cache.clear()
    _cache["settings"] = settings
    return settings


def reset_settings() -> None:
    """Forget the cached settings (tests that change the environment)."""
    _cache.clear()


def resolve_secrets(settings: Settings) -> Settings:
    refs = {field: os.environ.get(env, "").strip() for field, env in SECRET_REFERENCES.items()}
    refs = {field: ref for field, ref in refs.items() if ref}
    if not refs:
        return settings
    values = {field: read_secret(ref, database=field == "database_url") for field, ref in refs.items()}
    return replace(settings, **values)


def read_secret(ref: str, *, database: bool = False) -> str:
    """The value a Secrets Manager secret (ARN or name) or an SSM parameter (ARN) holds. A
    database secret may also be RDS's JSON shape (username, password, host, port, dbname)."""
    from botocore.exceptions import BotoCoreError, ClientError  # only deployments with secrets pay for it

    parts = ref.split(":")
    region = parts[3] if ref.startswith("arn:") and len(parts) > 5 and parts[3] else None
    try:
        if ref.startswith("arn:aws:ssm:"):
            value = _client("ssm", region).get_parameter(Name=ref, WithDecryption=True)["Parameter"]["Value"]
        else:
            value = _client("secretsmanager", region).get_secret_value(SecretId=ref).get("SecretString") or ""
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(f"cannot read secret {ref}: {code}") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"cannot read secret {ref}: {type(exc).__name__}") from None
    value = value.strip()
    if database and value.startswith("{"):
        value = _url_from_rds_secret(value, ref)
    if not value:
        raise ConfigurationError(f"secret {ref} is empty")
    return value


def _client(service: str, region: str | None):
    """One boto3 client per service and region (making one costs tens of milliseconds)."""
    key = ("client", service, region)
    if key not in _clients:
        import boto3

        _clients[key] = boto3.client(service, region_name=region)
    return _clients[key]


def _url_from_rds_secret(text: str, ref: str) -> str:
    try:
        doc = json.loads(text)
        user, password, host = doc["username"], doc["password"], doc["host"]
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(f"secret {ref} is JSON but not RDS's shape (username, password, host)") from None
    port, dbname = doc.get("port") or 5432, doc.get("dbname") or "postgres"
    return f"postgresql://{quote(str(user), safe='')}:{quote(str(password), safe='')}@{host}:{port}/{quote(str(dbname), safe='')}"


def check_production(settings: Settings) -> Settings:
    if not settings.production:
        return settings
    if settings.jwt_secret == DEFAULT_JWT_SECRET or len(settings.jwt_secret.encode("utf-8")) < 32:
        raise ConfigurationError("JWT secret is missing, the development default or shorter than 32 bytes "
                                 "in production: set JWT_SECRET_ARN")
    if settings.database_url == Settings.database_url:
        raise ConfigurationError("database URL is not set in production: set DATABASE_URL_SECRET_ARN")
    return settings


def settings_from_env() -> Settings:
    """The settings as the environment gives them, secrets unresolved and unchecked."""
    origins = tuple(o.strip() for o in _env("FRONTEND_ORIGIN", "http://localhost:5173").split(",") if o.strip())
    samesite = _env("COOKIE_SAMESITE", "lax").lower()
    stage = _env("STAGE", "local")
    if samesite not in {"lax", "strict", "none"}:
        raise ValueError(f"COOKIE_SAMESITE must be lax, strict or none, not {samesite!r}")
    offload = _env("DB_OFFLOAD", "inline").lower()
    if offload not in {"inline", "thread"}:
        raise ValueError(f"DB_OFFLOAD must be inline or thread, not {offload!r}")
    provider = _env("AI_PROVIDER", "openai").lower()
    if provider not in {"openai", "bedrock"}:
        raise ValueError(f"AI_PROVIDER must be openai or bedrock, not {provider!r}")
    return Settings(
        stage=stage,
        database_url=_env("DATABASE_URL", Settings.database_url),
        db_connect_timeout=int(_env("DB_CONNECT_TIMEOUT", "5")),
        db_statement_timeout_ms=int(_env("DB_STATEMENT_TIMEOUT_MS", "10000")),
        db_offload=offload,
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
        ai_provider=provider,
        bedrock_model_id=_env("BEDROCK_MODEL_ID", Settings.bedrock_model_id),
        bedrock_region=_env("BEDROCK_REGION", ""),
        ai_time_budget_seconds=float(_env("AI_TIME_BUDGET_SECONDS", "25")),
        ai_context_messages=int(_env("AI_CONTEXT_MESSAGES", "50")),
        ai_context_tokens=int(_env("AI_CONTEXT_TOKENS", "8000")),
        ai_file_context_share=min(1.0, max(0.0, float(_env("AI_FILE_CONTEXT_SHARE", "0.5")))),
        ai_max_tokens=int(_env("AI_MAX_TOKENS", "1024")),
        s3_bucket=_env("S3_BUCKET", ""),
        s3_prefix=_env("S3_PREFIX", "users/").strip("/") + "/",
        s3_endpoint_url=_env("S3_ENDPOINT_URL", ""),
        aws_region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1")),
        max_upload_bytes=int(_env("MAX_UPLOAD_BYTES", str(Settings.max_upload_bytes))),
        max_presigned_upload_bytes=int(_env("MAX_PRESIGNED_UPLOAD_BYTES", str(Settings.max_presigned_upload_bytes))),
        presigned_url_ttl_seconds=int(_env("PRESIGNED_URL_TTL_SECONDS", "300")),
        extract_max_chars=int(_env("EXTRACT_MAX_CHARS", str(Settings.extract_max_chars))),
        ai_prices=_prices(_env("AI_PRICES", "")),
        quota_daily_tokens=max(0, int(_env("QUOTA_DAILY_TOKENS", "200000"))),
        quota_calls_per_minute=max(0, int(_env("QUOTA_CALLS_PER_MINUTE", "20"))),
        login_window_seconds=int(_env("LOGIN_WINDOW_SECONDS", "900")),
        login_account_free_failures=int(_env("LOGIN_ACCOUNT_FREE_FAILURES", "5")),
        login_client_free_failures=int(_env("LOGIN_CLIENT_FREE_FAILURES", "30")),
        login_backoff_base_seconds=float(_env("LOGIN_BACKOFF_BASE_SECONDS", "1")),
        login_backoff_max_seconds=int(_env("LOGIN_BACKOFF_MAX_SECONDS", "300")),
        production=_bool(_env("PRODUCTION", "false" if stage in _NOT_PRODUCTION_STAGES else "true")),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
    )
