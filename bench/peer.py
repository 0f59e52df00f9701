"""The rival: the same five endpoints written the pre-migration way - SQLAlchemy 2 async ORM on
asyncpg, FastAPI with pydantic response models, Mangum - as well as we know how:

- one engine per process (per warm container), a pool of one connection, `pool_pre_ping` off
  (the product does not ping either), asyncpg's prepared-statement cache on, no echo;
- `expire_on_commit=False`, so committed objects are serialised without reloading;
- the session check is one joined query (session + user), the chat list takes its total from a
  window function, the message page checks ownership in the same query, and sending a message
  writes the user's turn, the chat's bump and the quota reservation in one transaction and the
  reply, its usage and the quota's settlement in another - the same units of work as the product
  (the quota's limits are not re-checked here: the benchmark's are never reached).

It lives under bench/ only: nothing in the product imports it.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import date, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Boolean, Date, FetchedValue, DateTime, ForeignKey, Integer, Numeric, String, event, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared import ai, context  # the same AI client, prompt and stub as the product: the AI is not what is compared
from shared.models import Turn


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    email: Mapped[str] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)
    is_active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    is_active: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Chat(Base):
    __tablename__ = "chats"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __mapper_args__ = {"eager_defaults": True}


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id"))
    type: Mapped[str] = mapped_column(String)
    content: Mapped[str] = mapped_column(String)
    file_name: Mapped[str | None] = mapped_column(String)
    file_url: Mapped[str | None] = mapped_column(String)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())

    __mapper_args__ = {"eager_defaults": True}


class AiUsage(Base):
    __tablename__ = "ai_usage"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID)
    chat_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    message_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    operation: Mapped[str] = mapped_column(String)
    provider: Mapped[str] = mapped_column(String)
    model: Mapped[str] = mapped_column(String)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    estimated: Mapped[bool] = mapped_column(Boolean)
    cost_usd: Mapped[float] = mapped_column(Numeric, default=0)
    priced: Mapped[bool] = mapped_column(Boolean, default=True)


class AiQuota(Base):
    __tablename__ = "ai_quota"
    user_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    day_tokens: Mapped[int] = mapped_column(BigInteger)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_calls: Mapped[int] = mapped_column(Integer)


# --------------------------------------------------------------------------- schemas


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class UserOut(Out):
    id: uuid.UUID
    name: str
    email: str
    is_active: bool
    created_at: datetime


class MessageOut(Out):
    id: uuid.UUID
    chat_id: uuid.UUID
    type: str
    content: str
    file_name: str | None
    file_url: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime


class ChatOut(Out):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut] = []


class ChatListOut(BaseModel):
    chats: list[ChatOut]
    total: int
    limit: int
    offset: int


class SendOut(BaseModel):
    user_message: MessageOut
    ai_response: MessageOut | None
    chat_name: str | None
    processing_time: float


class ChatIn(BaseModel):
    title: str = Field(min_length=1, max_length=500)


class MessageIn(BaseModel):
    content: str = Field(min_length=1, max_length=100_000)
    file_name: str | None = None
    file_url: str | None = None
    metadata: dict[str, Any] | None = None


# --------------------------------------------------------------------------- engine and auth

engine = create_async_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1),
    pool_size=1, max_overflow=0, pool_pre_ping=False,
)
Session = async_sessionmaker(engine, expire_on_commit=False)
round_trips = 0  # statements, BEGINs and COMMITs sent by this process


def _count(*_: Any) -> None:
    global round_trips
    round_trips += 1


event.listen(engine.sync_engine, "before_cursor_execute", _count)
event.listen(engine.sync_engine, "begin", _count)
event.listen(engine.sync_engine, "commit", _count)
event.listen(engine.sync_engine, "rollback", _count)


def _count_reset(_conn: Any, _record: Any, state: Any) -> None:
    if not state.transaction_was_reset:  # the pool's own ROLLBACK, unless the session's already ran
        _count()


event.listen(engine.sync_engine.pool, "reset", _count_reset)


async def db():
    async with Session() as session:
        yield session


Db = Annotated[AsyncSession, Depends(db)]


async def current_user(request: Request, session: Db) -> User:
    token = request.cookies.get("iflychat_session", "")
    try:
        claims = jwt.decode(token, os.environ["JWT_SECRET"], algorithms=["HS256"])
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HTTPException(401, "Invalid or expired session") from None
    user = await session.scalar(
        select(User).join(ChatSession, ChatSession.user_id == User.id).where(
            ChatSession.id == session_id, ChatSession.user_id == user_id, ChatSession.is_active,
            ChatSession.expires_at > func.now(), User.is_active)
    )
    if user is None:
        raise HTTPException(401, "Session has ended; please log in again")
    return user


Me = Annotated[User, Depends(current_user)]
app = FastAPI(docs_url=None, redoc_url=None)


@app.get("/users/me", response_model=UserOut)
async def me(user: Me):
    return user


@app.get("/chats", response_model=ChatListOut)
async def list_chats(user: Me, session: Db, limit: int = 50, offset: int = 0):
    rows = (await session.execute(
        select(Chat, func.count().over()).where(Chat.user_id == user.id)
        .order_by(Chat.updated_at.desc(), Chat.id.desc()).limit(limit).offset(offset)
    )).all()
    total = rows[0][1] if rows else await session.scalar(select(func.count()).where(Chat.user_id == user.id))
    return {"chats": [ChatOut.model_validate(c) for c, _ in rows], "total": total, "limit": limit, "offset": offset}


@app.post("/chats", response_model=ChatOut, status_code=201)
async def create_chat(body: ChatIn, user: Me, session: Db):
    chat = Chat(user_id=user.id, title=body.title.strip())
    session.add(chat)
    await session.commit()
    return ChatOut.model_validate(chat)


@app.get("/chats/{chat_id}/messages", response_model=list[MessageOut])
async def list_messages(chat_id: uuid.UUID, user: Me, session: Db, limit: int = 100, offset: int = 0):
    messages = (await session.scalars(
        select(Message).join(Chat, Chat.id == Message.chat_id)
        .where(Message.chat_id == chat_id, Chat.user_id == user.id).order_by(Message.seq).limit(limit).offset(offset)
    )).all()
    if not messages and await session.scalar(select(Chat.id).where(Chat.id == chat_id, Chat.user_id == user.id)) is None:
        raise HTTPException(404, "Chat not found")
    return messages


@app.post("/chats/{chat_id}/messages", response_model=SendOut)
async def send(chat_id: uuid.UUID, body: MessageIn, user: Me, session: Db):
    started = time.perf_counter()
    bumped = await session.scalar(
        update(Chat).where(Chat.id == chat_id, Chat.user_id == user.id).values(updated_at=func.now()).returning(Chat.id))
    if bumped is None:
        raise HTTPException(404, "Chat not found")
    reserve = context.reserve_tokens(body.content)
    today = func.current_date()
    day = await session.scalar(  # reserve against the daily budget (the limits themselves left to the product)
        insert(AiQuota).values(user_id=user.id, day=today, day_tokens=reserve, window_start=func.now(), window_calls=1)
        .on_conflict_do_update(index_elements=[AiQuota.user_id], set_={
            "day": today, "day_tokens": AiQuota.day_tokens + reserve, "window_calls": AiQuota.window_calls + 1})
        .returning(AiQuota.day))
    window = context.history_window()
    earlier = (await session.execute(
        select(Message.type, Message.content).where(Message.chat_id == chat_id).order_by(Message.seq.desc())
        .limit(window["history"])
    )).all()
    mine = Message(chat_id=chat_id, type="user", content=body.content, file_name=body.file_name,
                   file_url=body.file_url, metadata_=body.metadata or {})
    session.add(mine)
    await session.commit()
    prompt = context.build([Turn(t, c) for t, c in reversed(earlier)], body.content)
    reply = await asyncio.to_thread(ai.complete, prompt, deadline=ai.Deadline())
    cost, priced = reply.cost()
    bot = Message(chat_id=chat_id, type="bot", content=reply.content, metadata_=reply.metadata())
    session.add(bot)
    await session.flush()
    session.add(AiUsage(user_id=user.id, chat_id=chat_id, message_id=bot.id, operation="reply", provider=reply.provider,
                        model=reply.model, prompt_tokens=reply.prompt_tokens,
                        completion_tokens=reply.completion_tokens, total_tokens=reply.total_tokens,
                        estimated=reply.estimated, cost_usd=cost, priced=priced))
    await session.execute(update(AiQuota).where(AiQuota.user_id == user.id, AiQuota.day == day)
                          .values(day_tokens=AiQuota.day_tokens - reserve + reply.total_tokens))
    await session.execute(update(Chat).where(Chat.id == chat_id).values(updated_at=func.now()))
    await session.commit()
    return {"user_message": MessageOut.model_validate(mine), "ai_response": MessageOut.model_validate(bot),
            "chat_name": None, "processing_time": round(time.perf_counter() - started, 3)}


handler = Mangum(app, lifespan="off")
