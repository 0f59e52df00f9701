"""Structured logs: every log record is one JSON line on stdout (CloudWatch Logs Insights reads
its fields), and RequestLog writes one line per request: request ids, route, status, latency
and user id. Never a body, a header, a cookie or a query string: they carry passwords, tokens
and message text."""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from contextvars import ContextVar
from typing import Any

from fastapi.responses import JSONResponse

from shared.settings import ConfigurationError, get_settings

log = logging.getLogger("iflychat.request")
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_state = {"cold": True}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            line["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


class _StdoutJson(logging.Handler):
    """Writes to whatever sys.stdout is at the time (Lambda sends stdout to CloudWatch)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)


def setup_logging(level: str, in_lambda: bool) -> None:
    """JSON lines on the root logger, once. In Lambda the runtime's own text handler is
    replaced (it would prefix every line); elsewhere other handlers (pytest's) stay."""
    root = logging.getLogger()
    root.setLevel(level)
    # Mangum's per-request line is RequestLog's now, and every unhandled exception reaches the
    # app factory's 500 handler, which logs it with its stack: Mangum would log it a second time.
    logging.getLogger("mangum").setLevel(logging.CRITICAL)
    if any(isinstance(h, _StdoutJson) for h in root.handlers):
        return
    if in_lambda:
        for handler in list(root.handlers):
            root.removeHandler(handler)
    root.addHandler(_StdoutJson())


class RequestLog:
    """ASGI middleware: one JSON line per request, and a 503 with a JSON detail for every
    request while the configuration is broken (see settings.ConfigurationError)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        event = scope.get("aws.event") or {}
        context = scope.get("aws.context")
        rid = getattr(context, "aws_request_id", None) or event.get("requestContext", {}).get("requestId")
        request_id.set(rid)  # Mangum runs each invocation in its own task: nothing leaks out
        state = scope.setdefault("state", {})
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            try:
                get_settings()
            except ConfigurationError:  # get_settings logged why
                response = JSONResponse({"detail": "The service is not configured correctly; "
                                                   "its operators have been told"}, status_code=503)
                return await response(scope, receive, send_status)
            await self.app(scope, receive, send_status)
        finally:
            cold, _state["cold"] = _state["cold"], False
            log.info("request", extra={
                "apigw_request_id": event.get("requestContext", {}).get("requestId"),
                "method": scope.get("method"),
                "route": event.get("routeKey") or f"{scope.get('method')} {scope.get('path')}",
                "status": status["code"],
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": state.get("user_id"),
                "cold_start": cold,
            })
