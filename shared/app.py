"""The one app factory every function uses, its Lambda handler, and the request dependencies
(the current user, pagination) the routes share."""
from __future__ import annotations

import logging
import os
import uuid
from typing import Annotated, Any

import psycopg2
import psycopg2.errors
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from mangum import Mangum
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ApiError, SessionEnded, Unauthorized
from shared.logs import RequestLog, setup_logging
from shared.models import Caller, User
from shared.security import decode_token
from shared.settings import ConfigurationError, get_settings, settings_from_env

log = logging.getLogger("iflychat")


def _error(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems, parts = [], []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            where, msg = "body", "is not valid JSON"
        problems.append({"field": where, "message": msg, "type": err.get("type")})
        parts.append(f"{where}: {msg}")
    return "Invalid input - " + "; ".join(parts), problems


def create_app(title: str) -> FastAPI:
    """A FastAPI app with the project's error handling, CORS and request log. It reads only
    plain settings here: secrets are resolved on the first request (see RequestLog)."""
    settings = settings_from_env()
    setup_logging(settings.log_level, in_lambda="AWS_LAMBDA_FUNCTION_NAME" in os.environ)
    app = FastAPI(title=f"IFlyChat {title}", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, problems = _validation_message(exc)
        return _error(422, detail, errors=problems)  # never echo the input: it may hold a password

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 400:
            # Only the framework raises these (our own 400s are ApiErrors): a body it could not
            # parse - JSON that is not UTF-8, nested or numbered beyond the parser's limits, a
            # broken multipart body, too many parts. The contract's answer for a body that fails
            # validation is 422, as for plain malformed JSON.
            message = "is not valid JSON" if detail == "There was an error parsing the body" else detail.rstrip(".")
            return _error(422, f"Invalid input - body: {message}",
                          errors=[{"field": "body", "message": message, "type": "body_unreadable"}])
        return _error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(psycopg2.DataError)
    async def unstorable(_: Request, exc: psycopg2.DataError) -> JSONResponse:
        # The schemas should have refused the value; if one slips through, it is still the
        # caller's input that PostgreSQL cannot hold, so a 422 - never the SQL text.
        log.warning("database refused a value: %s", type(exc).__name__)
        return _error(422, "Invalid input - a value cannot be stored")

    @app.exception_handler(psycopg2.IntegrityError)
    async def constraint(_: Request, exc: psycopg2.IntegrityError) -> JSONResponse:
        log.warning("database constraint failed: %s", type(exc).__name__)
        if isinstance(exc, (psycopg2.errors.CheckViolation, psycopg2.errors.NotNullViolation)):
            return _error(422, "Invalid input - a value is out of the allowed range")
        return _error(409, "The request conflicts with a concurrent change; please reload and retry")

    @app.exception_handler(psycopg2.OperationalError)
    async def database_down(_: Request, exc: psycopg2.OperationalError) -> JSONResponse:
        log.warning("database error: %s", str(exc).strip())
        return _error(503, "The database is busy or unavailable; please try again shortly")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "Internal server error")

    _document_errors(app)
    app.add_middleware(RequestLog)
    app.add_middleware(  # outside RequestLog, so even its 503 carries the CORS headers
        CORSMiddleware,
        allow_origins=list(settings.frontend_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
    )
    return app


_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "A readable message the front end shows"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "Per-field problems (422 only)"},
    },
}


_SECURITY_SCHEMES = {
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "iflychat_session",
                      "description": "The HttpOnly session cookie POST /auth/login sets (browsers)"},
    "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The access_token of POST /auth/login (API clients)"},
}


def _needs_session(dependant) -> bool:
    return any(d.call is current_caller or _needs_session(d) for d in dependant.dependencies)


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document say what the app really does: our error shape (FastAPI's default
    422 schema has `detail` as a list), and which routes need a session (cookie or Bearer) and
    answer 401 without one. Documentation only: nothing of it runs per request."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            components = doc.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            schemas.pop("ValidationError", None)
            schemas["HTTPValidationError"] = _ERROR_SCHEMA
            error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
            for route in app.routes:
                if not hasattr(route, "dependant") or not _needs_session(route.dependant):
                    continue
                components["securitySchemes"] = _SECURITY_SCHEMES
                for method in route.methods:
                    operation = doc["paths"][route.path_format][method.lower()]
                    operation["security"] = [{"sessionCookie": []}, {"bearerToken": []}]
                    operation["responses"].setdefault("401", {"description": "No session, or it has ended", **error})
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def lambda_handler(app: FastAPI) -> Mangum:
    """The Lambda entry point for an app: no lifespan (Mangum would run it on every
    invocation), and the stage prefix of a named API Gateway stage stripped from the path.
    Secrets are read here, in the init phase; if that fails, RequestLog answers 503 and retries."""
    try:
        get_settings()
    except ConfigurationError:
        pass  # logged by get_settings
    base = settings_from_env().api_base_path
    return Mangum(app, lifespan="off", api_gateway_base_path=f"/{base}" if base else "/")


# --------------------------------------------------------------------------- dependencies


def session_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(get_settings().cookie_name) or None


def set_session_cookie(response: Response, token: str) -> None:
    """The session cookie login sets: HttpOnly, Secure and SameSite from the settings."""
    s = get_settings()
    response.set_cookie(s.cookie_name, token, max_age=s.jwt_ttl_seconds, httponly=True,
                        secure=s.cookie_secure, samesite=s.cookie_samesite, path="/")


def clear_session_cookie(response: Response) -> None:
    """Tell the browser to forget the session cookie (logout, a deleted account)."""
    s = get_settings()
    response.delete_cookie(s.cookie_name, path="/", httponly=True, secure=s.cookie_secure, samesite=s.cookie_samesite)


def client_ip(request: Request) -> str:
    """The caller's address as API Gateway saw it (requestContext.http.sourceIp)."""
    event = request.scope.get("aws.event") or {}
    return str(((event.get("requestContext") or {}).get("http") or {}).get("sourceIp") or "unknown")


async def current_caller(request: Request) -> Caller:
    """Who the request's token names; its session is checked by the query that uses it."""
    token = session_token(request)
    claims = decode_token(token) if token else None
    if claims is None:
        raise Unauthorized("Not authenticated" if token is None else "Invalid or expired session")
    request.state.user_id = str(claims[0])
    return Caller(*claims)


async def current_session(caller: Annotated[Caller, Depends(current_caller)]) -> tuple[User, uuid.UUID]:
    user = await User.get_by_session(caller)
    if user is None:
        raise SessionEnded()
    return user, caller.session_id


async def current_user(caller: Annotated[Caller, Depends(current_caller)]) -> User:
    return (await current_session(caller))[0]  # one dependency level fewer: each costs ~20 us per request


# CurrentCaller for routes whose model methods take a Caller (one round trip); CurrentUser and
# CurrentSession for routes that need the user's row itself (one more).
CurrentCaller = Annotated[Caller, Depends(current_caller)]
CurrentSession = Annotated[tuple[User, uuid.UUID], Depends(current_session)]
CurrentUser = Annotated[User, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size, 1-200")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip")]
