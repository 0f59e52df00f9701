"""The floor: the least any Python Lambda behind API Gateway can do for each endpoint - a bare
FastAPI + Mangum route that checks the token and runs the product's own SQL with raw psycopg2 on
the product's own connection, inline, and dumps the rows as JSON: no models, no validation, no
response model, no thread hop.

"The product's own SQL" is taken from the product itself: `capture()` runs each endpoint once
through its real handler and records the statements (templates and parameter names) it sent, so
the floor can never drift from what it is compared with. Only the values are the floor's own.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

from fastapi import FastAPI, Request, Response
from mangum import Mangum
from psycopg2.extras import Json

from shared import ai, context, db
from shared.models import Turn
from shared.settings import get_settings
from shared.security import decode_token

app = FastAPI(docs_url=None, redoc_url=None)
handler = Mangum(app, lifespan="off")
statements_sent = 0
SQL: dict[str, list[str]] = {}  # endpoint -> the statements the product sent for it, in order


def capture(endpoint: str, invoke: Callable[[], Any]) -> None:
    """Record the SQL templates the product sends while `invoke()` handles one request."""
    sent: list[str] = []
    original = db._CountingCursor.execute

    def recording(self, query, vars=None):  # noqa: A002
        sent.append(query)
        return original(self, query, vars)

    db._CountingCursor.execute = recording
    try:
        invoke()
    finally:
        db._CountingCursor.execute = original
    SQL[endpoint] = sent


def _run(query: str, params: dict[str, Any]) -> list[tuple]:
    global statements_sent
    with db.connection().cursor() as cur:
        statements_sent += 1
        cur.execute(query, params)
        return cur.fetchall()


def _ids(request: Request) -> dict[str, Any]:
    claims = decode_token(request.cookies.get("iflychat_session", ""))
    if claims is None:
        raise RuntimeError("floor: bad token")
    return {"user": claims[0], "session": claims[1]}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=str), status_code=status, media_type="application/json")


def _read(endpoint: str, request: Request, **params: Any) -> list[tuple]:
    (query,) = SQL[endpoint]
    return _run(query, {**_ids(request), **params})


@app.get("/users/me")
async def me(request: Request):
    row = _read("GET /users/me", request)[0]
    return _json({"id": row[0], "name": row[1], "email": row[2], "is_active": row[4], "created_at": row[5]})


@app.get("/chats")
async def chats(request: Request):
    limit, offset = int(request.query_params.get("limit", 50)), int(request.query_params.get("offset", 0))
    rows = _read("GET /chats", request, limit=limit, offset=offset)
    return _json({"chats": [r[2:] for r in rows], "total": rows[0][1], "limit": limit, "offset": offset})


@app.get("/chats/{chat_id}/messages")
async def messages(request: Request):
    q = request.query_params
    rows = _read("GET /chats/{id}/messages", request, chat=request.path_params["chat_id"],
                 limit=int(q.get("limit", 100)), offset=int(q.get("offset", 0)))
    return _json([r[2:] for r in rows])


@app.post("/chats")
async def create_chat(request: Request):
    (query,) = SQL["POST /chats"]
    body = json.loads(await request.body())
    row = _run(query, {**_ids(request), "id": uuid.uuid4(), "title": body["title"]})[0]
    return _json(row, 201)


@app.post("/chats/{chat_id}/messages")
async def send(request: Request):
    session_check, store_user, store_reply = SQL["POST /chats/{id}/messages"]
    started = time.perf_counter()
    ids, chat = _ids(request), request.path_params["chat_id"]
    content = json.loads(await request.body())["content"]
    _run(session_check, ids)
    window, reserve = context.history_window(), context.reserve_tokens(content)
    quota = {"reserve": reserve, "budget": get_settings().quota_daily_tokens,
             "per_minute": get_settings().quota_calls_per_minute}
    (mine, earlier, day, _), = _run(store_user, {
        **ids, **quota, "chat": chat, "history": window["history"], "chars": window["history_chars"],
        "id": uuid.uuid4(), "content": content, "file_name": None, "file_url": None, "metadata": Json({}),
        "file_ids": []})
    prompt = context.build([Turn(t["type"], t["content"]) for t in earlier], content)
    reply = ai.complete(prompt, deadline=ai.Deadline())
    cost, priced = reply.cost()
    usage = [{"id": str(uuid.uuid4()), "operation": "reply", "provider": reply.provider, "model": reply.model,
              "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
              "estimated": reply.estimated, "cost_usd": cost, "priced": priced}]
    (bot, _), = _run(store_reply, {
        **ids, "chat": chat, "title": None, "id": uuid.uuid4(), "content": reply.content,
        "metadata": Json(reply.metadata()), "usage": Json(usage), "replaces": None, "reserved": reserve,
        "spent": reply.total_tokens, "day": day})
    return _json({"user_message": mine, "ai_response": bot, "chat_name": None,
                  "processing_time": round(time.perf_counter() - started, 3)})
