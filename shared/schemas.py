"""Request and response shapes of the HTTP contract (pydantic v2)."""
from __future__ import annotations

import json
import math
import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.security import MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold a lone surrogate: refuse both."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


MAX_JSON_BYTES = 16_384
MAX_JSON_DEPTH = 20


def _storable_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            _storable_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item, depth + 1)


def storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON object PostgreSQL's jsonb can hold: `storable` strings (keys too), finite numbers,
    bounded depth and size."""
    _storable_json(value)
    if len(json.dumps(value, ensure_ascii=False)) > MAX_JSON_BYTES:
        raise ValueError(f"must be at most {MAX_JSON_BYTES} characters of JSON")
    return value


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise ValueError("is not a valid email address")
    return value


def _password(value: str) -> str:
    if len(value) < MIN_PASSWORD_CHARS:
        raise ValueError(f"must be at least {MIN_PASSWORD_CHARS} characters")
    if len(value.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt's limit)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(storable)]
# Names and titles are stored without the white space around them.
Name = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(storable), AfterValidator(_not_blank),
                 AfterValidator(str.strip)]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(storable), AfterValidator(_email)]
Password = Annotated[str, StringConstraints(max_length=MAX_PASSWORD_BYTES), AfterValidator(storable),
                     AfterValidator(_password)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(storable), AfterValidator(_not_blank),
                  AfterValidator(str.strip)]
Content = Annotated[str, StringConstraints(min_length=1, max_length=100_000), AfterValidator(storable), AfterValidator(_not_blank)]
OptionalShort = Annotated[str, StringConstraints(max_length=2048), AfterValidator(storable)] | None
JsonObject = Annotated[dict[str, Any], AfterValidator(storable_json)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class RegisterIn(Body):
    name: Name
    email: Email
    password: Password


class LoginIn(Body):
    # Login checks nothing but shape: a wrong-length password is simply a wrong password (401).
    email: Annotated[str, StringConstraints(max_length=1000), AfterValidator(storable)]
    password: Annotated[str, StringConstraints(max_length=1000), AfterValidator(storable)]


class UserUpdateIn(Body):
    name: Name | None = None
    email: Email | None = None
    password: Password | None = None
    current_password: Annotated[str, StringConstraints(max_length=1000), AfterValidator(storable)] | None = None


class ChatCreateIn(Body):
    title: Title


class ChatRenameIn(Body):
    title: Title


class MessageIn(Body):
    content: Content
    file_name: OptionalShort = None
    file_url: OptionalShort = None
    file_ids: list[uuid.UUID] | None = Field(default=None, max_length=10)
    metadata: JsonObject | None = None


class ChatNameIn(Body):
    message: Content
    file_ids: list[uuid.UUID] | None = Field(default=None, max_length=10)
    file_content_summary: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(storable)] | None = None


class PresignIn(Body):
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(storable)]
    file_size: int = Field(ge=0, description="The file's size in bytes; the upload may not exceed it")
    chat_id: uuid.UUID | None = None


class DeleteAccountIn(Body):
    password: Annotated[str, StringConstraints(max_length=1000)]


class UserOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    is_active: bool
    created_at: datetime


class MessageOut(BaseModel):
    id: uuid.UUID
    chat_id: uuid.UUID
    type: Literal["user", "bot"]
    content: str
    file_name: str | None
    file_url: str | None
    metadata: dict[str, Any]
    created_at: datetime
    file_ids: list[uuid.UUID] = Field(default=[], description="The files the message named, by file_url or file_ids")


class ChatOut(BaseModel):
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


class Envelope(BaseModel):
    success: bool = True
    message: str
    data: dict[str, Any] = {}


class LoginOut(BaseModel):
    success: bool = True
    message: str
    user: UserOut
    access_token: str
    token_type: Literal["bearer"] = "bearer"


class SendOut(BaseModel):
    user_message: MessageOut
    ai_response: MessageOut | None
    chat_name: str | None
    processing_time: float


class ChatNameOut(BaseModel):
    suggested_name: str
    reasoning: str | None = None


class FileOut(BaseModel):
    id: uuid.UUID
    original_name: str
    content_type: str
    file_url: str
    file_size: int
    processed: bool
    created_at: datetime
    status: Literal["pending", "processed", "failed"]
    error: str | None
    text_truncated: bool
    chat_id: uuid.UUID | None


class FileDetailOut(FileOut):
    extracted_text: str | None


class PresignedUpload(BaseModel):
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


class PresignOut(BaseModel):
    file: FileOut
    upload: PresignedUpload


class UsageTotals(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    estimated_calls: int
    unpriced_calls: int


class UsageDay(UsageTotals):
    day: date


class UsageModel(UsageTotals):
    provider: str
    model: str


class UsageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    first: date = Field(alias="from")
    last: date = Field(alias="to")
    total: UsageTotals
    by_day: list[UsageDay]
    by_model: list[UsageModel]

