"""The conversation: sending a message (answered whole or streamed), regenerating the last reply,
and naming a chat. Each reserves quota before the AI is asked and settles it with the usage."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Annotated, Any, AsyncIterator

from fastapi import Depends, Request

from shared import ai, context
from shared.errors import ApiError, Conflict, NotFound
from shared.models import (
    Message, Reservation, UsageRecord, User, add_bot_reply, add_user_message, last_exchange, reserve_quota,
)
from shared.schemas import MessageIn, MessageOut

log = logging.getLogger(__name__)
PREVIOUS_VERSIONS_KEPT = 5


async def ai_deadline(request: Request) -> ai.Deadline:
    """The request's AI time budget, never beyond what its Lambda invocation has left."""
    return ai.Deadline(lambda_context=request.scope.get("aws.context"))


AIDeadline = Annotated[ai.Deadline, Depends(ai_deadline)]


def _usage(operation: str, result: ai.Completion) -> UsageRecord:
    cost, priced = result.cost()
    return UsageRecord(operation=operation, provider=result.provider, model=result.model,
                       prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                       estimated=result.estimated, cost_usd=cost, priced=priced)


class _Asked:
    """A stored user message, its prompt and its quota reservation; `first` when it opened the chat."""

    def __init__(self, user_id: uuid.UUID, message: Message, prompt: list[dict[str, str]], reservation: Reservation,
                 first: bool = False):
        self.user_id, self.message, self.prompt = user_id, message, prompt
        self.reservation, self.first = reservation, first

    async def title(self, usage: list[UsageRecord], deadline: ai.Deadline) -> str | None:
        """On a first message, the chat's title (asked after the reply; its usage joins `usage`)."""
        if not self.first:
            return None
        name, call = await asyncio.to_thread(ai.suggest_title, self.message.content, deadline)
        if call is not None:
            usage.append(_usage("title", call))
        return name

    async def fail(self, exc: ApiError, operation: str) -> None:
        """An AI failure: the user's message stays; what the failed call still cost (a partial
        stream, an empty answer) is recorded and the rest of the reservation released."""
        partial = getattr(exc, "completion", None)
        usage = [_usage(operation, partial)] if partial is not None else []
        await add_bot_reply(self.message.chat_id, self.user_id, None, {}, usage, reservation=self.reservation)


async def _ask(chat_id: uuid.UUID, user: User, body: MessageIn) -> _Asked:
    """Resolve the files, reserve quota and store the user's message (before the AI is asked, so an
    AI failure loses nothing), and build the prompt."""
    files = await context.attached_files(user.id, context.file_ids_of(body.file_url, body.file_ids))
    message, earlier, reservation = await add_user_message(
        chat_id, user.id, body.content, file_name=body.file_name, file_url=body.file_url, metadata=body.metadata,
        file_ids=[f.id for f in files], reserve=context.reserve_tokens(body.content), **context.history_window(),
    )
    return _Asked(user.id, message, context.build(earlier, body.content, files), reservation, first=not earlier)


async def send_message(chat_id: uuid.UUID, user: User, body: MessageIn, deadline: ai.Deadline) -> dict:
    """Store the user's message, ask the AI, store its answer with the usage, and title a new chat."""
    started = time.perf_counter()
    asked = await _ask(chat_id, user, body)
    try:
        reply = await asyncio.to_thread(ai.complete, asked.prompt, deadline=deadline)
    except ApiError as exc:
        await asked.fail(exc, "reply")
        raise
    usage = [_usage("reply", reply)]
    chat_name = await asked.title(usage, deadline)
    bot_message = await add_bot_reply(chat_id, user.id, reply.content, reply.metadata(), usage, chat_name,
                                      reservation=asked.reservation)
    return {"user_message": asked.message, "ai_response": bot_message, "chat_name": chat_name,
            "processing_time": round(time.perf_counter() - started, 3)}


# --------------------------------------------------------------------------- streaming


def _event(kind: str, **fields: Any) -> str:
    return "data: " + json.dumps({"type": kind, **fields}, ensure_ascii=False, default=str) + "\n\n"


def _message_json(message: Message) -> dict[str, Any]:
    return MessageOut.model_validate(message, from_attributes=True).model_dump(mode="json")


class _InThread:
    """Iterates a blocking generator one step at a time in worker threads, so the event loop never
    waits on the provider's socket; its return value lands in `result`."""

    def __init__(self, gen: ai.Stream):
        self.gen, self.result = gen, None

    def _step(self) -> tuple[bool, Any]:
        try:
            return False, next(self.gen)
        except StopIteration as stop:
            return True, stop.value

    def __aiter__(self) -> _InThread:
        return self

    async def __anext__(self) -> str:
        done, value = await asyncio.to_thread(self._step)
        if done:
            self.result = value
            raise StopAsyncIteration
        return value


async def stream_message(chat_id: uuid.UUID, user: User, body: MessageIn, deadline: ai.Deadline) -> AsyncIterator[str]:
    """Everything that can refuse the request (chat, files, quota) happens here, before the stream
    starts, so those answers keep their status codes; then the events of the contract."""
    asked = await _ask(chat_id, user, body)
    return _stream_events(asked, deadline)


async def _stream_events(asked: _Asked, deadline: ai.Deadline) -> AsyncIterator[str]:
    bot_id = uuid.uuid4()
    yield _event("user_message", message=_message_json(asked.message))
    yield _event("ai_message_start", message_id=str(bot_id))
    pieces: _InThread | None = None
    try:
        try:
            pieces = _InThread(ai.stream(asked.prompt, deadline=deadline))
            async for piece in pieces:
                yield _event("content_delta", content=piece)
        except ApiError as exc:
            await asked.fail(exc, "reply")
            yield _event("error", error=exc.detail)
            return
        reply: ai.Completion = pieces.result
        usage = [_usage("reply", reply)]
        chat_name = await asked.title(usage, deadline)
        bot_message = await add_bot_reply(asked.message.chat_id, asked.user_id, reply.content,
                                          reply.metadata(), usage, chat_name, reservation=asked.reservation,
                                          message_id=bot_id)
    except ApiError as exc:  # the database failed while storing the reply
        yield _event("error", error=exc.detail)
        return
    except Exception:  # noqa: BLE001 - the status line is sent: a bug can only be an error event now
        log.exception("stream failed")
        yield _event("error", error="Internal server error")
        return
    finally:
        if pieces is not None:
            with contextlib.suppress(ValueError):  # still running in its thread if the client went away
                pieces.gen.close()
    if bot_message is None:
        yield _event("error", error="The chat was deleted while the AI was answering")
        return
    yield _event("ai_message_complete", message=_message_json(bot_message))
    if chat_name is not None:
        yield _event("chat_name", name=chat_name)
    yield _event("stream_complete")


# --------------------------------------------------------------------------- regenerate, name


async def regenerate(chat_id: uuid.UUID, user: User, deadline: ai.Deadline) -> dict:
    """Answer the chat's last user message again. The new reply replaces the old one, which is
    deleted; its text is kept in the new reply's metadata (`previous_versions`, newest first, the
    last five). With no reply yet (the AI failed before), this simply answers the message."""
    started = time.perf_counter()
    last = await last_exchange(chat_id, user.id, **context.history_window())
    asked_text = last.user_message.content
    reservation = await reserve_quota(chat_id, user.id, context.reserve_tokens(asked_text, may_title=False))
    named = last.user_message.file_ids or context.file_ids_of(last.user_message.file_url, None)
    files = await context.attached_files(user.id, named, strict=False) if named else []
    asked = _Asked(user.id, last.user_message, context.build(last.earlier, asked_text, files), reservation)
    try:
        reply = await asyncio.to_thread(ai.complete, asked.prompt, deadline=deadline)
    except ApiError as exc:
        await asked.fail(exc, "regenerate")
        raise
    metadata = reply.metadata()
    if last.reply is not None:
        old = last.reply
        earlier_versions = old.metadata.get("previous_versions", []) if isinstance(old.metadata, dict) else []
        metadata["previous_versions"] = ([{"id": str(old.id), "content": old.content, "model": old.metadata.get("model"),
                                           "created_at": old.created_at.isoformat()}] + earlier_versions
                                         )[:PREVIOUS_VERSIONS_KEPT]
    bot_message = await add_bot_reply(chat_id, user.id, reply.content, metadata, [_usage("regenerate", reply)],
                                      reservation=reservation, replaces=last.reply.id if last.reply else None)
    if bot_message is None:  # its usage is recorded all the same
        if last.reply is not None:
            raise Conflict("This reply was just regenerated by another request; reload the chat")
        raise NotFound("Chat not found")
    return {"user_message": last.user_message, "ai_response": bot_message, "chat_name": None,
            "processing_time": round(time.perf_counter() - started, 3)}


async def name_chat(chat_id: uuid.UUID, user: User, message: str, deadline: ai.Deadline, *,
                    file_ids: list[uuid.UUID] | None = None, summary: str | None = None) -> dict:
    """Ask the AI for a title, rename the chat, and record the call's usage."""
    files = await context.attached_files(user.id, list(dict.fromkeys(file_ids or [])))
    reservation = await reserve_quota(chat_id, user.id, context.TITLE_RESERVE_TOKENS)
    prompt = message
    if files:
        prompt += "\n\nAttached files: " + ", ".join(f.original_name for f in files)
    if summary:
        prompt += f"\n\nAttached document summary: {summary[:2000]}"
    title, call = await asyncio.to_thread(ai.suggest_title, prompt, deadline)
    usage = [_usage("title", call)] if call is not None else []
    await add_bot_reply(chat_id, user.id, None, {}, usage, title, reservation=reservation)
    reasoning = "Suggested by the AI from the message" if call else "The AI was unavailable; taken from the message"
    return {"suggested_name": title, "reasoning": reasoning}
