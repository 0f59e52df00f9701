"""Messages function: a chat's messages, sending one for the AI to answer (whole or streamed),
and regenerating the last answer."""
from __future__ import annotations

import uuid

from fastapi.responses import StreamingResponse

from shared.app import CurrentCaller, CurrentUser, Limit, Offset, create_app, lambda_handler
from shared.chat_service import AIDeadline, regenerate, send_message, stream_message
from shared.models import Message
from shared.schemas import MessageIn, MessageOut, SendOut

app = create_app("messages")


@app.get("/chats/{chat_id}/messages", response_model=list[MessageOut])
async def list_messages(chat_id: uuid.UUID, caller: CurrentCaller, limit: Limit = 100, offset: Offset = 0):
    return await Message.page_for(caller, chat_id, limit, offset)


@app.post("/chats/{chat_id}/messages", response_model=SendOut)
async def post_message(chat_id: uuid.UUID, body: MessageIn, user: CurrentUser, deadline: AIDeadline):
    return await send_message(chat_id, user, body, deadline)


_STREAM_DOC = {200: {
    "description": "Server-sent events, `data: {json}` lines each followed by a blank line; `type` is one of "
                   "`user_message` (`message`), `ai_message_start` (`message_id`), `content_delta` (`content`), "
                   "`ai_message_complete` (`message`), `chat_name` (`name`), `stream_complete`, or `error` "
                   "(`error`, which ends the stream; no bot message is stored). A 404/422/429 comes before "
                   "the stream, as JSON.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}}


@app.post("/chats/{chat_id}/messages/stream", response_class=StreamingResponse, responses=_STREAM_DOC)
async def post_message_stream(chat_id: uuid.UUID, body: MessageIn, user: CurrentUser, deadline: AIDeadline):
    events = await stream_message(chat_id, user, body, deadline)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@app.post("/chats/{chat_id}/messages/regenerate", response_model=SendOut)
async def regenerate_reply(chat_id: uuid.UUID, user: CurrentUser, deadline: AIDeadline):
    return await regenerate(chat_id, user, deadline)


handler = lambda_handler(app)
