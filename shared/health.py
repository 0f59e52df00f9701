"""Dependency checks for GET /health: each answers 'healthy', 'unhealthy' or 'not_configured'."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared import db
from shared.errors import ApiError
from shared.settings import get_settings

log = logging.getLogger(__name__)


async def check_database() -> str:
    def work(cur):
        cur.execute("SELECT 1")
        return cur.fetchone()[0]

    try:
        return "healthy" if await db.run(work) == 1 else "unhealthy"
    except (ApiError, Exception) as exc:  # noqa: BLE001 - health reports, it never raises
        log.warning("health: database check failed: %s", exc)
        return "unhealthy"


def check_s3() -> str:
    if not get_settings().s3_bucket:
        return "not_configured"  # and boto3 is never imported
    from shared import storage

    return storage.check()


def check_ai() -> str:
    s = get_settings()
    return "configured" if s.openai_api_key or s.ai_provider == "bedrock" else "not_configured"


# Here, not in shared.schemas: the health function imports nothing it does not need (cold start).
class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    database: str
    s3: str
    ai_service: str
    timestamp: datetime
    detail: str | None = Field(default=None, description="Why, when unhealthy (the answer is then a 503)")
