"""Health function: reports each dependency truthfully."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi.responses import JSONResponse

from shared.app import create_app, lambda_handler
from shared.health import HealthOut, check_ai, check_database, check_s3

app = create_app("health")


@app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut, "description": "The database is down"}})
async def health():
    database, s3, ai = await check_database(), check_s3(), check_ai()
    status = "healthy" if database == "healthy" else "unhealthy"
    if status == "healthy" and "unhealthy" in (s3, ai):
        status = "degraded"
    body = {"status": status, "database": database, "s3": s3, "ai_service": ai,
            "timestamp": datetime.now(timezone.utc).isoformat()}
    if status == "unhealthy":  # a 503 like any other error: the front end shows `detail`
        body["detail"] = "The database is unavailable; please try again shortly"
    return JSONResponse(body, status_code=200 if status != "unhealthy" else 503)


handler = lambda_handler(app)
