"""The data model: every SQL statement of the application lives here.

Each model is a plain dataclass with async methods. The methods run their SQL through
`shared.db.run`, which owns the connection, the transaction and the retry rules; ids are
generated here so a retried insert can never create a second row.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterable, TypeVar

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extras import Json

from shared import db
from shared.errors import Conflict, NotFound, SessionEnded, TooManyRequests
from shared.settings import get_settings

M = TypeVar("M", bound="Model")


class Model:
    """What every table's dataclass shares: building from rows and the allow-listed update."""

    table: ClassVar[str]
    updatable: ClassVar[frozenset[str]]

    @classmethod
    def columns(cls) -> str:
        return ", ".join(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def qualified(cls, alias: str) -> str:
        """The columns, each prefixed with a table alias: "u.id, u.name, ..."."""
        return ", ".join(f"{alias}.{name}" for name in cls.columns().split(", "))

    @classmethod
    def from_row(cls: type[M], row: Iterable[Any] | None) -> M | None:
        return None if row is None else cls(*row)  # type: ignore[call-arg]

    async def update(self: M, *, together: Iterable[tuple[str, tuple]] = (), **changes: Any) -> M:
        """Set the given columns (only those in `updatable`) and return the stored row; the
        statements `together` run in the same transaction, after it."""
        together = list(together)
        unknown = set(changes) - self.updatable
        if unknown:
            raise ValueError(f"{type(self).__name__}.update: not updatable: {sorted(unknown)}")
        if not changes:
            return self
        names = sorted(changes)
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names]
        if "updated_at" in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            assignments.append(sql.SQL("updated_at = now()"))
        query = sql.SQL("UPDATE {} SET {} WHERE id = %s RETURNING {}").format(
            sql.Identifier(self.table), sql.SQL(", ").join(assignments), sql.SQL(self.columns())
        )
        values = [_adapt(changes[n]) for n in names] + [self.id]  # type: ignore[attr-defined]

        def work(cur):
            cur.execute(query, values)
            row = cur.fetchone()
            for statement, params in together if row else ():
                cur.execute(statement, params)
            return row

        row = await db.run(work, transaction=bool(together))
        if row is None:
            raise NotFound(f"{type(self).__name__} not found")
        fresh = type(self).from_row(row)
        self.__dict__.update(fresh.__dict__)
        return self

    async def delete(self) -> bool:
        query = sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(self.table))

        def work(cur):
            cur.execute(query, (self.id,))  # type: ignore[attr-defined]
            return cur.rowcount == 1

        return await db.run(work)


def _adapt(value: Any) -> Any:
    return Json(value) if isinstance(value, dict) else value


async def _one(cls: type[M], query: str, params: Any) -> M | None:
    def work(cur):
        cur.execute(query, params)
        return cur.fetchone()

    return cls.from_row(await db.run(work))


async def _rows(query: str, params: Any) -> list[tuple]:
    def work(cur):
        cur.execute(query, params)
        return cur.fetchall()

    return await db.run(work)


async def _many(cls: type[M], query: str, params: Any) -> list[M]:
    return [cls(*row) for row in await _rows(query, params)]  # type: ignore[call-arg]


# --------------------------------------------------------------------------- who is calling


@dataclass(frozen=True)
class Caller:
    """The user and session a request's token names. The token's signature is checked, the
    session is not yet: the model methods that take a Caller check it in their own statement
    (see `_for_caller`), so an authenticated read is one round trip."""

    user_id: uuid.UUID
    session_id: uuid.UUID


# A live session of an active user (aliases s and u; parameters %(session)s and %(user)s).
_LIVE = "s.id = %(session)s AND s.user_id = %(user)s AND s.is_active AND s.expires_at > now() AND u.is_active"
_LIVE_SESSION = f"EXISTS (SELECT 1 FROM chat_sessions s JOIN users u ON u.id = s.user_id WHERE {_LIVE})"


async def _for_caller(caller: Caller, query: str, params: dict[str, Any]) -> list[tuple]:
    """Run `query` (named parameters; %(user)s is the caller) and the session check as one
    statement. SessionEnded (401) when the session is not live; otherwise the query's rows. The
    query's first column must never be NULL (a row of NULLs stands for "no rows")."""

    def work(cur):
        cur.execute(
            f"SELECT me.live, q.* FROM (SELECT {_LIVE_SESSION} AS live) me LEFT JOIN LATERAL ({query}) q ON me.live",
            {**params, "user": caller.user_id, "session": caller.session_id},
        )
        return cur.fetchall()

    rows = await db.run(work)
    if not rows[0][0]:
        raise SessionEnded()
    return [row[1:] for row in rows if row[1] is not None]


# --------------------------------------------------------------------------- users and sessions


@dataclass
class User(Model):
    id: uuid.UUID
    name: str
    email: str
    password_hash: str
    is_active: bool
    created_at: datetime
    updated_at: datetime

    table: ClassVar[str] = "users"
    updatable: ClassVar[frozenset[str]] = frozenset({"name", "email", "password_hash", "is_active"})

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email,
                "is_active": self.is_active, "created_at": self.created_at}

    @classmethod
    async def create(cls, name: str, email: str, password_hash: str) -> User:
        user_id = uuid.uuid4()  # made once: a retried insert meets its own row, never makes a second

        def work(cur):
            cur.execute(
                f"INSERT INTO users (id, name, email, password_hash) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (email) DO NOTHING RETURNING {cls.columns()}",
                (user_id, name, email.lower(), password_hash),
            )
            return cur.fetchone()

        row = await db.run(work)
        if row is None:
            raise Conflict("An account with this email already exists")
        return cls(*row)

    @classmethod
    async def get_by_id(cls, user_id: uuid.UUID) -> User | None:
        return await _one(cls, f"SELECT {cls.columns()} FROM users WHERE id = %s", (user_id,))

    @classmethod
    async def get_by_email(cls, email: str) -> User | None:
        return await _one(cls, f"SELECT {cls.columns()} FROM users WHERE email = %s", (email.strip().lower(),))

    @classmethod
    async def get_by_session(cls, caller: Caller) -> User | None:
        """The active user behind a live session (for routes that need the whole user)."""
        return await _one(cls, f"SELECT {cls.qualified('u')} FROM chat_sessions s JOIN users u ON u.id = s.user_id WHERE {_LIVE}",
                          {"user": caller.user_id, "session": caller.session_id})

    async def update(self, *, end_sessions_but: uuid.UUID | None = None, **changes: Any) -> User:
        """With `end_sessions_but`, every other session of the user ends in the same transaction
        (a password change: no stolen session outlives it, even if the change half fails)."""
        if "email" in changes:
            changes["email"] = changes["email"].strip().lower()
        together = [(_END_OTHER_SESSIONS, (self.id, end_sessions_but))] if end_sessions_but else []
        try:
            return await super().update(together=together, **changes)
        except psycopg2.errors.UniqueViolation:
            raise Conflict("An account with this email already exists") from None


_END_OTHER_SESSIONS = ("UPDATE chat_sessions SET is_active = false, revoked_at = now() "
                       "WHERE user_id = %s AND is_active AND id <> %s")


@dataclass
class ChatSession(Model):
    id: uuid.UUID
    user_id: uuid.UUID
    is_active: bool
    user_agent: str | None
    ip_address: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    table: ClassVar[str] = "chat_sessions"
    updatable: ClassVar[frozenset[str]] = frozenset({"is_active", "revoked_at"})

    @classmethod
    async def create(cls, user_id: uuid.UUID, ttl_seconds: int, user_agent: str | None = None,
                     ip_address: str | None = None) -> ChatSession:
        expires = datetime.now(timezone.utc) + timedelta(seconds=ttl_seconds)
        return await _one(
            cls,
            f"INSERT INTO chat_sessions (id, user_id, user_agent, ip_address, expires_at) "
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {cls.columns()}",
            (uuid.uuid4(), user_id, (user_agent or "")[:500] or None, ip_address, expires),
        )

    @staticmethod
    async def revoke(session_id: uuid.UUID) -> None:
        def work(cur):
            cur.execute("UPDATE chat_sessions SET is_active = false, revoked_at = now() "
                        "WHERE id = %s AND is_active", (session_id,))

        await db.run(work)



# --------------------------------------------------------------------------- chats and messages


@dataclass
class Message(Model):
    id: uuid.UUID
    chat_id: uuid.UUID
    type: str
    content: str
    file_name: str | None
    file_url: str | None
    metadata: dict[str, Any]
    created_at: datetime
    file_ids: list[uuid.UUID] = field(default_factory=list)  # the files it named, resolved

    table: ClassVar[str] = "messages"
    updatable: ClassVar[frozenset[str]] = frozenset({"content", "file_name", "file_url", "metadata"})

    @classmethod
    async def create(cls, chat_id: uuid.UUID, type: str, content: str, file_name: str | None = None,
                     file_url: str | None = None, metadata: dict[str, Any] | None = None) -> Message:
        return await _one(
            cls,
            f"INSERT INTO messages (id, chat_id, type, content, file_name, file_url, metadata) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {cls.columns()}",
            (uuid.uuid4(), chat_id, type, content, file_name, file_url, Json(metadata or {})),
        )

    @classmethod
    async def get_by_id(cls, message_id: uuid.UUID) -> Message | None:
        return await _one(cls, f"SELECT {cls.columns()} FROM messages WHERE id = %s", (message_id,))

    @classmethod
    def _chat_page(cls) -> str:
        """The messages of chat %(chat)s, oldest first (also %(limit)s, %(offset)s). The chat is a
        parameter, not the outer query's column, so the planner knows which chat it reads and
        walks the (chat_id, seq) index for a long one instead of sorting all of its messages."""
        return (f"SELECT {cls.columns()} FROM messages WHERE chat_id = %(chat)s ORDER BY seq "
                "LIMIT %(limit)s OFFSET %(offset)s")

    @classmethod
    async def get_by_chat(cls, chat_id: uuid.UUID, limit: int = 100, offset: int = 0) -> list[Message]:
        """A page of a chat's messages, oldest first (no ownership check: see page_for)."""
        return await _many(cls, cls._chat_page(), {"chat": chat_id, "limit": limit, "offset": offset})

    @classmethod
    async def page_for(cls, caller: Caller, chat_id: uuid.UUID, limit: int = 100, offset: int = 0) -> list[Message]:
        """A page of one of the caller's chats, oldest first; NotFound if the chat is not theirs."""
        rows = await _for_caller(
            caller,
            f"SELECT c.id, m.* FROM chats c LEFT JOIN LATERAL ({cls._chat_page()}) m ON true "
            "WHERE c.id = %(chat)s AND c.user_id = %(user)s",
            {"chat": chat_id, "limit": limit, "offset": offset},
        )
        if not rows:
            raise NotFound("Chat not found")
        return [cls(*row[1:]) for row in rows if row[1] is not None]


@dataclass
class Chat(Model):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[Message] = field(default_factory=list)

    table: ClassVar[str] = "chats"
    updatable: ClassVar[frozenset[str]] = frozenset({"title"})

    @classmethod
    def columns(cls) -> str:
        return "id, user_id, title, created_at, updated_at"

    @classmethod
    async def get_by_id(cls, chat_id: uuid.UUID, user_id: uuid.UUID | None = None) -> Chat | None:
        """The chat, or None when it does not exist or (given user_id) belongs to someone else."""
        if user_id is None:
            return await _one(cls, f"SELECT {cls.columns()} FROM chats WHERE id = %s", (chat_id,))
        return await _one(cls, f"SELECT {cls.columns()} FROM chats WHERE id = %s AND user_id = %s",
                          (chat_id, user_id))

    @classmethod
    async def create(cls, user_id: uuid.UUID, title: str) -> Chat:
        return await _one(cls, f"INSERT INTO chats (id, user_id, title) VALUES (%s, %s, %s) RETURNING {cls.columns()}",
                          (uuid.uuid4(), user_id, title))

    @classmethod
    def _page(cls) -> str:
        """A user's chats, latest activity first, behind their total (kept in users.chat_count
        by a trigger: counting grows with the chats, this does not)."""
        return (f"SELECT u.chat_count, page.* FROM users u "
                f"LEFT JOIN LATERAL (SELECT {cls.columns()} FROM chats WHERE user_id = %(user)s "
                "ORDER BY updated_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s) page ON true WHERE u.id = %(user)s")

    @classmethod
    async def get_by_user(cls, user_id: uuid.UUID, limit: int = 50, offset: int = 0) -> tuple[list[Chat], int]:
        """One page of a user's chats and how many they have in all (no session check: see page_for)."""
        rows = await _rows(cls._page(), {"user": user_id, "limit": limit, "offset": offset})
        return [cls(*row[1:]) for row in rows if row[1] is not None], rows[0][0] if rows else 0

    async def delete_with_files(self, remove_objects: Callable[[list[str]], Any]) -> bool:
        """Delete the chat and the files uploaded into it, calling `remove_objects(s3 keys)` in
        between, all under a lock on the chat row: no upload into the chat can land meanwhile
        (its insert waits, then finds no chat), and if removing the objects fails nothing is
        deleted, so a retry starts afresh. False when the chat was already gone."""

        def work(cur):
            cur.execute("SELECT id FROM chats WHERE id = %s FOR UPDATE", (self.id,))
            if cur.fetchone() is None:
                return False
            cur.execute("SELECT s3_key FROM files WHERE chat_id = %s", (self.id,))
            keys = [row[0] for row in cur.fetchall()]
            if keys:
                remove_objects(keys)
            cur.execute("DELETE FROM chats WHERE id = %s", (self.id,))  # its messages and files cascade
            return True

        return await db.run(work, transaction=True)

    async def get_messages(self, limit: int = 100, offset: int = 0) -> list[Message]:
        return await Message.get_by_chat(self.id, limit, offset)

    @classmethod
    async def create_for(cls, caller: Caller, title: str) -> Chat:
        """A new chat of the caller's, in the same statement as the session check."""
        chat = await _one(
            cls,
            f"INSERT INTO chats (id, user_id, title) SELECT %(id)s, %(user)s, %(title)s WHERE {_LIVE_SESSION} "
            f"RETURNING {cls.columns()}",
            {"id": uuid.uuid4(), "title": title, "user": caller.user_id, "session": caller.session_id},
        )
        if chat is None:
            raise SessionEnded()
        return chat

    @classmethod
    async def page_for(cls, caller: Caller, limit: int = 50, offset: int = 0) -> tuple[list[Chat], int]:
        """One page of the caller's chats and their total, with the session check (one round trip)."""
        rows = await _for_caller(caller, cls._page(), {"limit": limit, "offset": offset})
        return [cls(*row[1:]) for row in rows if row[1] is not None], rows[0][0]

    @classmethod
    async def with_messages_for(cls, caller: Caller, chat_id: uuid.UUID, limit: int = 200) -> Chat:
        """One of the caller's chats with its first `limit` messages; NotFound if it is not theirs."""
        rows = await _for_caller(
            caller,
            f"SELECT {cls.qualified('c')}, m.* FROM chats c "
            f"LEFT JOIN LATERAL ({Message._chat_page()}) m ON true WHERE c.id = %(chat)s AND c.user_id = %(user)s",
            {"chat": chat_id, "limit": limit, "offset": 0},
        )
        if not rows:
            raise NotFound("Chat not found")
        n = len(cls.columns().split(", "))
        chat = cls(*rows[0][:n])
        chat.messages = [Message(*row[n:]) for row in rows if row[n] is not None]
        return chat


# --------------------------------------------------------------------------- the conversation


@dataclass
class Turn:
    type: str
    content: str


@dataclass
class Reservation:
    """Tokens held against the user's daily budget while an AI call runs (settled afterwards)."""
    tokens: int
    day: date


def _reserve_sql(guard: str) -> str:
    """Check-and-reserve against the quota in one atomic upsert: the conflicting row is locked and
    the WHERE re-checked against its latest version, so concurrent requests queue on the user's
    row and each sees what the one before it reserved. `guard` (a constant SQL condition) says
    whether the request is valid at all (its chat is the user's); an invalid one reserves nothing."""
    fresh_day = "CASE WHEN q.day = excluded.day THEN q.day_tokens ELSE 0 END"
    in_window = "q.window_start > now() - interval '1 minute'"
    return f"""
        INSERT INTO ai_quota AS q (user_id, day, day_tokens, window_start, window_calls)
        SELECT %(user)s, (now() AT TIME ZONE 'UTC')::date, %(reserve)s, now(), 1
        WHERE {guard} AND (%(budget)s = 0 OR %(reserve)s <= %(budget)s)
        ON CONFLICT (user_id) DO UPDATE SET
            day = excluded.day,
            day_tokens = {fresh_day} + excluded.day_tokens,
            window_start = CASE WHEN {in_window} THEN q.window_start ELSE now() END,
            window_calls = CASE WHEN {in_window} THEN q.window_calls ELSE 0 END + 1
        WHERE (%(budget)s = 0 OR {fresh_day} + excluded.day_tokens <= %(budget)s)
          AND (%(per_minute)s = 0 OR CASE WHEN {in_window} THEN q.window_calls ELSE 0 END < %(per_minute)s)
        RETURNING day"""


_OWNED_CHAT = "EXISTS (SELECT 1 FROM chats WHERE id = %(chat)s AND user_id = %(user)s)"


def _earlier_sql(where: str) -> str:
    """The latest turns of a chat matching `where` (newest first, at most %(history)s rows),
    stopping once %(chars)s characters are collected: a long chat never loads in full."""
    return f"""
        SELECT type, content, seq FROM (
            SELECT m.type, m.content, m.seq,
                   sum(char_length(m.content)) OVER (ORDER BY m.seq DESC) - char_length(m.content) AS before
            FROM messages m WHERE {where} ORDER BY m.seq DESC LIMIT %(history)s
        ) w WHERE w.before < %(chars)s"""


_EARLIER_JSON = ("coalesce((SELECT json_agg(json_build_object('type', type, 'content', content) ORDER BY seq) "
                 "FROM earlier), '[]'::json)")


def _quota_params(user_id: uuid.UUID, reserve: int) -> dict[str, Any]:
    s = get_settings()
    return {"user": user_id, "reserve": int(reserve), "budget": s.quota_daily_tokens,
            "per_minute": s.quota_calls_per_minute}


async def _quota_refusal(user_id: uuid.UUID, reserve: int) -> TooManyRequests:
    """The 429 for a refused reservation, naming the limit that refused it."""
    s = get_settings()

    def work(cur):
        cur.execute("SELECT day, day_tokens, window_start, window_calls, now() FROM ai_quota WHERE user_id = %s",
                    (user_id,))
        return cur.fetchone()

    row = await db.run(work)
    now = datetime.now(timezone.utc) if row is None else row[4]
    used = row[1] if row is not None and row[0] == now.astimezone(timezone.utc).date() else 0
    if s.quota_daily_tokens and (used + reserve > s.quota_daily_tokens or not s.quota_calls_per_minute):
        midnight = datetime.combine(now.astimezone(timezone.utc).date() + timedelta(days=1), datetime.min.time(),
                                    tzinfo=timezone.utc)
        return TooManyRequests(
            f"Daily AI token budget reached: {s.quota_daily_tokens} tokens a day, {used} used, and this request "
            f"may need up to {reserve}; it resets at 00:00 UTC", retry_after=int((midnight - now).total_seconds()) + 1)
    retry = 1 if row is None else int((row[2] + timedelta(minutes=1) - now).total_seconds()) + 1
    return TooManyRequests(f"AI request limit reached: {s.quota_calls_per_minute} AI requests a minute; "
                           "please wait a moment", retry_after=max(1, retry))


async def add_user_message(chat_id: uuid.UUID, user_id: uuid.UUID, content: str, *,
                           file_name: str | None, file_url: str | None, metadata: dict[str, Any] | None,
                           history: int, history_chars: int, reserve: int,
                           file_ids: Iterable[uuid.UUID] = ()) -> tuple[Message, list[Turn], Reservation]:
    """Reserve `reserve` tokens of the user's quota, store the message, move the chat to the top,
    and return the latest earlier turns (oldest first) - all in one statement. NotFound if the chat
    is not theirs; TooManyRequests (and nothing stored) when over a quota."""
    cols = Message.columns()
    message_id = uuid.uuid4()  # made once, outside the unit of work that may be retried

    def work(cur):
        cur.execute(
            f"""
            WITH quota AS ({_reserve_sql(_OWNED_CHAT)}
            ), chat AS (
                UPDATE chats SET updated_at = now()
                WHERE id = %(chat)s AND user_id = %(user)s AND EXISTS (SELECT 1 FROM quota) RETURNING id
            ), earlier AS ({_earlier_sql("m.chat_id = (SELECT id FROM chat)")}
            ), stored AS (
                INSERT INTO messages (id, chat_id, type, content, file_name, file_url, metadata, file_ids)
                SELECT %(id)s, chat.id, 'user', %(content)s, %(file_name)s, %(file_url)s, %(metadata)s,
                       %(file_ids)s::uuid[] FROM chat
                RETURNING {cols}
            )
            SELECT (SELECT row_to_json(stored) FROM stored), {_EARLIER_JSON}, (SELECT day FROM quota), {_OWNED_CHAT}
            """,
            {"chat": chat_id, "history": history, "chars": history_chars, "id": message_id, "content": content,
             "file_name": file_name, "file_url": file_url, "metadata": Json(metadata or {}),
             "file_ids": list(file_ids),
             **_quota_params(user_id, reserve)},
        )
        return cur.fetchone()

    stored, earlier, day, owned = await db.run(work)
    if not owned:
        raise NotFound("Chat not found")
    if stored is None:
        raise await _quota_refusal(user_id, reserve)
    return _message_from_json(stored), [Turn(**t) for t in earlier], Reservation(reserve, day)


@dataclass
class LastExchange:
    user_message: Message
    reply: Message | None  # the bot's answer to it, if there is one
    earlier: list[Turn]  # the turns before the user's message


async def last_exchange(chat_id: uuid.UUID, user_id: uuid.UUID, *, history: int, history_chars: int) -> LastExchange:
    """For a regenerate: the chat's last user message, the bot reply after it and the turns
    before it, in one statement. NotFound when the chat is not theirs or has nothing to answer."""
    cols = Message.columns()

    def work(cur):
        cur.execute(
            f"""
            WITH asked AS (
                SELECT {cols}, seq FROM messages WHERE chat_id = %(chat)s AND type = 'user' AND {_OWNED_CHAT}
                ORDER BY seq DESC LIMIT 1
            ), reply AS (
                SELECT {cols} FROM messages WHERE chat_id = %(chat)s AND type = 'bot'
                AND seq > (SELECT seq FROM asked) ORDER BY seq DESC LIMIT 1
            ), earlier AS ({_earlier_sql("m.chat_id = %(chat)s AND m.seq < (SELECT seq FROM asked)")}
            )
            SELECT (SELECT row_to_json(asked) FROM asked), (SELECT row_to_json(reply) FROM reply), {_EARLIER_JSON}
            """,
            {"chat": chat_id, "user": user_id, "history": history, "chars": history_chars},
        )
        return cur.fetchone()

    asked, reply, earlier = await db.run(work)
    if asked is None:
        raise NotFound("Chat not found or it has no message to answer")
    return LastExchange(_message_from_json(asked), reply and _message_from_json(reply), [Turn(**t) for t in earlier])


def reserve_work(cur, chat_id: uuid.UUID, user_id: uuid.UUID, reserve: int) -> tuple[date | None, bool]:
    """The reservation statement on a given cursor: (the day reserved or None if refused, whether
    the chat is the user's). Tests run it on their own connections to race it."""
    cur.execute(f"WITH quota AS ({_reserve_sql(_OWNED_CHAT)}) SELECT (SELECT day FROM quota), {_OWNED_CHAT}",
                {"chat": chat_id, **_quota_params(user_id, reserve)})
    return cur.fetchone()


async def reserve_quota(chat_id: uuid.UUID, user_id: uuid.UUID, reserve: int) -> Reservation:
    """Reserve quota for an AI call about one of the user's chats (NotFound if it is not theirs)."""
    day, owned = await db.run(reserve_work, chat_id, user_id, reserve)
    if not owned:
        raise NotFound("Chat not found")
    if day is None:
        raise await _quota_refusal(user_id, reserve)
    return Reservation(reserve, day)


def _message_from_json(obj: dict[str, Any]) -> Message:
    return Message(
        id=uuid.UUID(obj["id"]), chat_id=uuid.UUID(obj["chat_id"]), type=obj["type"], content=obj["content"],
        file_name=obj["file_name"], file_url=obj["file_url"], metadata=obj["metadata"],
        created_at=datetime.fromisoformat(obj["created_at"]),
        file_ids=[uuid.UUID(i) for i in obj.get("file_ids") or []],
    )


@dataclass
class UsageRecord:
    operation: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    cost_usd: float = 0.0
    priced: bool = True


async def add_bot_reply(chat_id: uuid.UUID, user_id: uuid.UUID, content: str | None,
                        metadata: dict[str, Any], usage: list[UsageRecord], new_title: str | None = None, *,
                        reservation: Reservation | None = None, message_id: uuid.UUID | None = None,
                        replaces: uuid.UUID | None = None) -> Message | None:
    """Store the AI's reply, its usage rows, (on a first message) the chat's new title, the
    settlement of the quota reservation (the real tokens replace the reserved ones) and (for a
    regenerate) the removal of the reply it `replaces` - in one statement, so they land together
    or not at all. The reply is None when only usage is recorded (a failed call that still cost
    tokens, or none); usage survives a chat deleted meanwhile."""
    cols = Message.columns()
    usage_rows = [
        {"id": str(uuid.uuid4()), "operation": u.operation, "provider": u.provider, "model": u.model,
         "prompt_tokens": max(0, int(u.prompt_tokens)), "completion_tokens": max(0, int(u.completion_tokens)),
         "estimated": bool(u.estimated), "cost_usd": max(0.0, float(u.cost_usd)), "priced": bool(u.priced)}
        for u in usage
    ]
    spent = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage_rows)
    reply_id = message_id or uuid.uuid4()  # made once, outside the unit of work that may be retried

    def work(cur):
        # `settle` runs first (chat waits for it): every statement locks the quota row before the
        # chat row, so two requests of one user can never deadlock.
        cur.execute(
            f"""
            WITH settle AS (
                UPDATE ai_quota SET day_tokens = greatest(0, day_tokens - %(reserved)s + %(spent)s)
                WHERE user_id = %(user)s AND day = %(day)s RETURNING 1
            ), chat AS (
                UPDATE chats SET updated_at = now(), title = coalesce(%(title)s, title)
                WHERE id = %(chat)s AND user_id = %(user)s AND (SELECT count(*) FROM settle) >= 0 RETURNING id
            ), gone AS (
                DELETE FROM messages WHERE id = %(replaces)s AND chat_id = (SELECT id FROM chat) AND type = 'bot'
                RETURNING 1
            ), reply AS (
                -- A replacement lands only if it removed the reply it replaces: of two regenerates
                -- racing for one reply, the second stores nothing.
                INSERT INTO messages (id, chat_id, type, content, metadata)
                SELECT %(id)s, chat.id, 'bot', %(content)s, %(metadata)s FROM chat WHERE %(content)s IS NOT NULL
                AND (%(replaces)s::uuid IS NULL OR EXISTS (SELECT 1 FROM gone))
                RETURNING {cols}
            ), usage AS (
                INSERT INTO ai_usage (id, user_id, chat_id, message_id, operation, provider, model,
                                      prompt_tokens, completion_tokens, total_tokens, estimated, cost_usd, priced)
                SELECT u.id, %(user)s, (SELECT id FROM chat), (SELECT id FROM reply), u.operation, u.provider,
                       u.model, u.prompt_tokens, u.completion_tokens, u.prompt_tokens + u.completion_tokens,
                       u.estimated, u.cost_usd, u.priced
                FROM jsonb_to_recordset(%(usage)s) AS u(id uuid, operation text, provider text, model text,
                     prompt_tokens int, completion_tokens int, estimated boolean, cost_usd numeric, priced boolean)
                RETURNING 1
            )
            SELECT (SELECT row_to_json(reply) FROM reply), (SELECT count(*) FROM usage)
            """,
            {"chat": chat_id, "user": user_id, "title": new_title, "id": reply_id,
             "content": content, "metadata": Json(metadata), "usage": Json(usage_rows), "replaces": replaces,
             "reserved": reservation.tokens if reservation else 0, "spent": spent,
             "day": reservation.day if reservation else None},
        )
        return cur.fetchone()

    stored, _ = await db.run(work)
    return None if stored is None else _message_from_json(stored)


# --------------------------------------------------------------------------- usage


_USAGE_SUMS = ("count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
               "coalesce(sum(total_tokens), 0), coalesce(sum(cost_usd), 0), "
               "count(*) FILTER (WHERE estimated), count(*) FILTER (WHERE NOT priced)")
_USAGE_KEYS = ("calls", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "estimated_calls",
               "unpriced_calls")


async def usage_report(caller: Caller, first: date, last: date) -> dict[str, Any]:
    """The caller's AI usage from `first` to `last` (UTC days, both included): totals by day, by
    provider and model, and overall, from one grouped query over the ai_usage rows (which also
    checks the session)."""
    rows = await _for_caller(
        caller,
        f"""
        SELECT grouping(day, provider, model), day, provider, model, {_USAGE_SUMS}
        FROM (SELECT *, (created_at AT TIME ZONE 'UTC')::date AS day FROM ai_usage
              WHERE user_id = %(user)s AND created_at >= %(first)s::timestamp AT TIME ZONE 'UTC'
              AND created_at < (%(last)s::date + 1)::timestamp AT TIME ZONE 'UTC') u
        GROUP BY GROUPING SETS ((day), (provider, model), ())
        ORDER BY 1, 2, 3, 4
        """,
        {"first": first, "last": last},
    )
    report: dict[str, Any] = {"from": first, "to": last, "by_day": [], "by_model": [], "total": None}
    for grouping, day, provider, model, *sums in rows:
        totals = dict(zip(_USAGE_KEYS, sums))
        totals["cost_usd"] = float(totals["cost_usd"])
        if grouping == 0b011:  # grouped by day
            report["by_day"].append({"day": day, **totals})
        elif grouping == 0b100:  # grouped by provider and model
            report["by_model"].append({"provider": provider, "model": model, **totals})
        else:
            report["total"] = totals
    return report


# --------------------------------------------------------------------------- files


@dataclass
class File(Model):
    id: uuid.UUID
    user_id: uuid.UUID
    original_name: str
    content_type: str
    s3_key: str
    file_size: int
    status: str
    processed: bool
    error: str | None
    extracted_text: str | None
    text_truncated: bool
    created_at: datetime
    updated_at: datetime
    chat_id: uuid.UUID | None = None

    table: ClassVar[str] = "files"
    updatable: ClassVar[frozenset[str]] = frozenset(
        {"status", "processed", "error", "extracted_text", "text_truncated", "file_size", "content_type"}
    )

    @property
    def file_url(self) -> str:
        """The stable URL the front end keeps (and sends back with a message); it redirects to a
        short-lived presigned download."""
        return f"/files/{self.id}/download"

    def public(self, *, with_text: bool = False) -> dict[str, Any]:
        """The contract's File (the upload response), plus status details; the text on request."""
        out = {"id": self.id, "original_name": self.original_name, "content_type": self.content_type,
               "file_url": self.file_url, "file_size": self.file_size, "processed": self.processed,
               "created_at": self.created_at, "status": self.status, "error": self.error,
               "text_truncated": self.text_truncated, "chat_id": self.chat_id}
        if with_text:
            out["extracted_text"] = self.extracted_text
        return out

    @classmethod
    async def create(cls, user_id: uuid.UUID, original_name: str, content_type: str, s3_key: str,
                     file_size: int, *, file_id: uuid.UUID | None = None, status: str = "pending",
                     processed: bool = False, error: str | None = None, extracted_text: str | None = None,
                     text_truncated: bool = False, chat_id: uuid.UUID | None = None) -> File:
        """Insert the file's row; NotFound if chat_id is given and is not one of the user's chats."""
        row = await _one(
            cls,
            f"INSERT INTO files (id, user_id, original_name, content_type, s3_key, file_size, status, processed,"
            f" error, extracted_text, text_truncated, chat_id)"
            f" SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
            f" WHERE %s::uuid IS NULL OR EXISTS (SELECT 1 FROM chats WHERE id = %s AND user_id = %s)"
            f" RETURNING {cls.columns()}",
            (file_id or uuid.uuid4(), user_id, original_name, content_type, s3_key, file_size, status, processed,
             error, extracted_text, text_truncated, chat_id, chat_id, chat_id, user_id),
        )
        if row is None:
            raise NotFound("Chat not found")
        return row

    @classmethod
    async def get_by_id(cls, file_id: uuid.UUID, user_id: uuid.UUID | None = None) -> File | None:
        if user_id is None:
            return await _one(cls, f"SELECT {cls.columns()} FROM files WHERE id = %s", (file_id,))
        return await _one(cls, f"SELECT {cls.columns()} FROM files WHERE id = %s AND user_id = %s",
                          (file_id, user_id))

    @classmethod
    async def get_for(cls, caller: Caller, file_id: uuid.UUID) -> File:
        """One of the caller's files, with the session check; NotFound if it is not theirs."""
        rows = await _for_caller(caller, f"SELECT {cls.columns()} FROM files WHERE id = %(file)s AND user_id = %(user)s",
                                 {"file": file_id})
        if not rows:
            raise NotFound("File not found")
        return cls(*rows[0])

    @classmethod
    async def page_for(cls, caller: Caller, limit: int = 50, offset: int = 0) -> tuple[list[File], int]:
        """One page of the caller's files and their total, with the session check (one round trip)."""
        rows = await _for_caller(caller, cls._page(), {"limit": limit, "offset": offset})
        return [cls(*row[1:]) for row in rows if row[1] is not None], rows[0][0]

    @classmethod
    def _page(cls) -> str:
        """A user's files, newest first, behind how many they have in all."""
        return ("SELECT n.total, page.* FROM (SELECT count(*) AS total FROM files WHERE user_id = %(user)s) n "
                f"LEFT JOIN LATERAL (SELECT {cls.columns()} FROM files WHERE user_id = %(user)s "
                "ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s) page ON true")

    @classmethod
    async def get_by_user(cls, user_id: uuid.UUID, limit: int = 50, offset: int = 0) -> tuple[list[File], int]:
        """One page of a user's files and their total (no session check: see page_for)."""
        rows = await _rows(cls._page(), {"user": user_id, "limit": limit, "offset": offset})
        return [cls(*row[1:]) for row in rows if row[1] is not None], rows[0][0]


    @classmethod
    async def get_owned(cls, file_ids: list[uuid.UUID], user_id: uuid.UUID) -> list[File]:
        """Those of the files that belong to the user, in the order asked."""
        files = await _many(cls, f"SELECT {cls.columns()} FROM files WHERE id = ANY(%s) AND user_id = %s",
                            (list(file_ids), user_id))
        order = {file_id: i for i, file_id in enumerate(file_ids)}
        return sorted(files, key=lambda f: order[f.id])

# --------------------------------------------------------------------------- login back-off


class LoginAttempts:
    """The rows behind shared/throttle.py: attempts per (scope, key) over a sliding window."""

    @staticmethod
    async def reserve(keys: dict[str, str], window_seconds: int,
                      refuse: Callable[[dict[str, tuple[int, float]]], float]) -> list[uuid.UUID] | float:
        """Under a per-key lock (so parallel attempts are counted one by one): count each scope's
        attempts in the window and ask `refuse({scope: (attempts, seconds since the latest)})`
        for a wait. A wait > 0 is returned as is and nothing is recorded (a refused attempt does
        not extend the back-off); otherwise one attempt row per scope is recorded and their ids
        returned."""
        pairs = sorted(keys.items())

        def work(cur):
            for scope, key in pairs:
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"login:{scope}:{key}",))
            cur.execute(
                "SELECT scope, count(*), extract(epoch FROM now() - max(attempted_at))::float8 FROM login_attempts "
                "WHERE (scope, key) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
                "AND attempted_at > now() - make_interval(secs => %s) GROUP BY scope",
                ([s for s, _ in pairs], [k for _, k in pairs], window_seconds),
            )
            wait = refuse({scope: (n, since) for scope, n, since in cur.fetchall()})
            if wait > 0:
                return wait
            ids = [uuid.uuid4() for _ in pairs]
            cur.execute(
                "INSERT INTO login_attempts (id, scope, key) SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[])",
                (ids, [s for s, _ in pairs], [k for _, k in pairs]),
            )
            cur.execute(
                "DELETE FROM login_attempts WHERE id IN (SELECT id FROM login_attempts "
                "WHERE attempted_at < now() - make_interval(secs => %s) LIMIT 100)",
                (window_seconds,),
            )
            return ids

        return await db.run(work, transaction=True)

    @staticmethod
    async def succeeded(account_key: str, ids: list[uuid.UUID]) -> None:
        """A login succeeded: the account starts afresh and this attempt does not count."""

        def work(cur):
            cur.execute("DELETE FROM login_attempts WHERE (scope = 'account' AND key = %s) OR id = ANY(%s)",
                        (account_key, ids))

        await db.run(work)
