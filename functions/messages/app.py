"""Messages function: a chat's messages, and sending one for the AI to answer."""
from __future__ import annotations

import uuid

from shared.app import CurrentCaller, CurrentUser, Limit, Offset, create_app, lambda_handler
from shared.chat_service import send_message
from shared.models import Message
from shared.schemas import MessageIn, MessageOut, SendOut

app = create_app("messages")


@app.get("/chats/{chat_id}/messages", response_model=list[MessageOut])
async def list_messages(chat_id: uuid.UUID, caller: CurrentCaller, limit: Limit = 100, offset: Offset = 0):
    return await Message.page_for(caller, chat_id, limit, offset)


@app.post("/chats/{chat_id}/messages", response_model=SendOut)
async def post_message(chat_id: uuid.UUID, body: MessageIn, user: CurrentUser):
    return await send_message(chat_id, user, body)


handler = lambda_handler(app)
