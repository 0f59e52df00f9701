"""Chats function: list, create, read, rename, name with the AI, delete."""
from __future__ import annotations

import uuid

from shared.app import CurrentCaller, CurrentUser, Limit, Offset, create_app, lambda_handler
from shared.chat_service import AIDeadline, name_chat
from shared.errors import NotFound
from shared.file_service import delete_chat as delete_chat_and_files
from shared.models import Chat
from shared.schemas import ChatCreateIn, ChatListOut, ChatNameIn, ChatNameOut, ChatOut, ChatRenameIn, Envelope

app = create_app("chats")


async def owned_chat(chat_id: uuid.UUID, user: CurrentUser) -> Chat:
    chat = await Chat.get_by_id(chat_id, user.id)
    if chat is None:
        raise NotFound("Chat not found")
    return chat


@app.get("/chats", response_model=ChatListOut)
async def list_chats(caller: CurrentCaller, limit: Limit = 50, offset: Offset = 0):
    chats, total = await Chat.page_for(caller, limit, offset)
    return {"chats": chats, "total": total, "limit": limit, "offset": offset}


@app.post("/chats", response_model=ChatOut, status_code=201)
async def create_chat(body: ChatCreateIn, caller: CurrentCaller):
    return await Chat.create_for(caller, body.title)


@app.get("/chats/{chat_id}", response_model=ChatOut)
async def get_chat(chat_id: uuid.UUID, caller: CurrentCaller):
    return await Chat.with_messages_for(caller, chat_id, limit=200)


@app.patch("/chats/{chat_id}", response_model=ChatOut)
async def rename_chat(chat_id: uuid.UUID, body: ChatRenameIn, user: CurrentUser):
    chat = await owned_chat(chat_id, user)
    return await chat.update(title=body.title)


@app.post("/chats/{chat_id}/name", response_model=ChatNameOut)
async def suggest_name(chat_id: uuid.UUID, body: ChatNameIn, user: CurrentUser, deadline: AIDeadline):
    return await name_chat(chat_id, user, body.message, deadline, file_ids=body.file_ids,
                           summary=body.file_content_summary)


@app.delete("/chats/{chat_id}", response_model=Envelope)
async def delete_chat(chat_id: uuid.UUID, user: CurrentUser):
    chat = await owned_chat(chat_id, user)
    await delete_chat_and_files(chat)
    return Envelope(message="Chat deleted", data={"chat_id": str(chat.id)})


handler = lambda_handler(app)
