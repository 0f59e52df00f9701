"""The conversation: what happens when a user sends a message or asks for a chat name."""
from __future__ import annotations

import asyncio
import time
import uuid

from shared import ai
from shared.models import Chat, UsageRecord, User, add_bot_reply, add_user_message
from shared.schemas import MessageIn
from shared.settings import get_settings


def _usage(operation: str, result: ai.Completion) -> UsageRecord:
    return UsageRecord(operation=operation, provider=ai.PROVIDER, model=result.model,
                       prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                       estimated=result.estimated)


async def send_message(chat_id: uuid.UUID, user: User, body: MessageIn) -> dict:
    """Store the user's message, ask the AI, store its answer with the usage, and title a new
    chat. The user's message is stored before the AI is asked, so an AI failure loses nothing."""
    started = time.perf_counter()
    s = get_settings()
    user_message, earlier = await add_user_message(
        chat_id, user.id, body.content, file_name=body.file_name, file_url=body.file_url,
        metadata=body.metadata, history=s.ai_context_messages,
    )
    context = ai.build_context([(t.type, t.content) for t in earlier], body.content)
    reply = await asyncio.to_thread(ai.complete, context)
    usage = [_usage("reply", reply)]
    chat_name = None
    if not earlier:  # the chat's first message gives it a title
        chat_name, title_call = await asyncio.to_thread(ai.suggest_title, body.content)
        if title_call is not None:
            usage.append(_usage("title", title_call))
    bot_message = await add_bot_reply(chat_id, user.id, reply.content, reply.metadata(), usage, chat_name)
    return {
        "user_message": user_message,
        "ai_response": bot_message,
        "chat_name": chat_name,
        "processing_time": round(time.perf_counter() - started, 3),
    }


async def name_chat(chat: Chat, user: User, message: str, *, summary: str | None = None) -> dict:
    """Ask the AI for a title, rename the chat, and record the call's usage."""
    prompt = message if not summary else f"{message}\n\nAttached document summary: {summary[:2000]}"
    title, call = await asyncio.to_thread(ai.suggest_title, prompt)
    usage = [_usage("title", call)] if call is not None else []
    await add_bot_reply(chat.id, user.id, None, {}, usage, title)
    reasoning = "Suggested by the AI from the message" if call else "The AI was unavailable; taken from the message"
    return {"suggested_name": title, "reasoning": reasoning}



