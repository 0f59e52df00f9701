"""The one error family: raise an ApiError subclass anywhere, the app factory turns it into
`{"detail": ...}` JSON with the contract's status code."""
from __future__ import annotations


class ApiError(Exception):
    status_code = 500
    default_detail = "Internal server error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.default_detail
        self.headers = headers or {}
        super().__init__(self.detail)


class BadRequest(ApiError):
    status_code = 400
    default_detail = "Bad request"


class Unauthorized(ApiError):
    status_code = 401
    default_detail = "Not authenticated"


class SessionEnded(Unauthorized):
    default_detail = "Session has ended; please log in again"


class NotFound(ApiError):
    status_code = 404
    default_detail = "Not found"


class Conflict(ApiError):
    status_code = 409
    default_detail = "Conflict"


class PayloadTooLarge(ApiError):
    status_code = 413
    default_detail = "Payload too large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    default_detail = "Unsupported media type"


class ValidationFailed(ApiError):
    status_code = 422
    default_detail = "Invalid input"


class TooManyRequests(ApiError):
    status_code = 429
    default_detail = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1):
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))})


class BadGateway(ApiError):
    status_code = 502
    default_detail = "The AI service failed to answer"


class ServiceUnavailable(ApiError):
    status_code = 503
    default_detail = "Service temporarily unavailable"


class GatewayTimeout(ApiError):
    status_code = 504
    default_detail = "The AI service did not answer in time"
