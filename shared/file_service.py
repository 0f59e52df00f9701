"""Files: the upload, the presigned upload and its processing, and deleting what belongs to a
file, a chat or a user in S3 as well as in the database.

Ordering rules, so that nothing is ever orphaned beyond what a retry cleans up:
- An upload is checked and extracted in memory, then stored in S3, then recorded in one INSERT;
  if the INSERT fails the object is deleted again (and if even that fails, it sits under the
  user's prefix, which deleting the account removes whole).
- A presigned upload's row (`pending`) exists before the browser gets the form, so a presigned
  object that lands with no row belongs to nobody (its file or user was deleted) and is deleted.
  S3 also reports direct uploads, possibly before their INSERT: those carry a metadata mark
  (storage.DIRECT_UPLOAD) that a presigned POST cannot set, and the processor leaves them alone.
- Deleting removes the S3 objects first, then the rows. If S3 fails, nothing changed and the
  call can be repeated; if the database fails after S3, the rows remain (pointing at nothing)
  and repeating the call finishes the job, because deleting an absent object succeeds. A chat's
  objects are removed while its row is locked, so no upload into it can land in between.

shared.extract (zipfile, and pypdf/python-docx when used) is imported where it is needed, so the
chats and users functions, which only delete, do not load it.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

from starlette.requests import Request

from shared import storage
from shared.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.models import Chat, File, User
from shared.settings import get_settings

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the file's bytes
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def clean_name(name: str | None) -> str:
    """The file's own name: no directory parts, no control characters, at most 255 characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = _UNSAFE_NAME.sub("", base).strip().strip(".") or "file"
    if len(base) > 255:
        dot = base.rfind(".")
        ext = base[dot:] if 0 < dot and len(base) - dot <= 16 else ""
        base = base[: 255 - len(ext)] + ext
    return base


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _too_large(limit: int, hint: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than the {_megabytes(limit)} ({limit} bytes) allowed{hint}")


async def _check_chat(chat_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    if chat_id is not None and await Chat.get_by_id(chat_id, user_id) is None:
        raise NotFound("Chat not found")


async def read_upload(request: Request) -> tuple[str, bytes, uuid.UUID | None]:
    """(file name, bytes, chat_id) of a multipart upload with a part named `file`. The body's
    size is checked before it is parsed, the file's before anything is stored. (On Lambda the
    body is already in memory, decoded from base64 by Mangum: there is nothing to stream.)"""
    limit = get_settings().max_upload_bytes
    too_large = _too_large(limit, "; upload bigger files through POST /files/presign")
    body = await request.body()
    if len(body) > limit + MULTIPART_OVERHEAD:
        raise too_large
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Send the file as multipart/form-data with one part named 'file'")
    form = await request.form(max_files=1, max_fields=10)
    part = form.get("file")
    if part is None or isinstance(part, str):
        raise ValidationFailed("Invalid input - file: a multipart part named 'file' holding the file is required")
    data = await part.read()
    if len(data) > limit:
        raise too_large
    raw_chat = form.get("chat_id")
    try:
        chat_id = uuid.UUID(raw_chat) if isinstance(raw_chat, str) and raw_chat.strip() else None
    except ValueError:
        raise ValidationFailed("Invalid input - chat_id: is not a valid UUID") from None
    return part.filename or "", data, chat_id


async def store_upload(user_id: uuid.UUID, name: str, data: bytes, chat_id: uuid.UUID | None = None) -> File:
    """Check, extract, store and record a directly uploaded file."""
    from shared import extract

    s = get_settings()
    if not data:
        raise ValidationFailed("The file is empty")
    if len(data) > s.max_upload_bytes:
        raise _too_large(s.max_upload_bytes)
    name = clean_name(name)
    content_type = extract.detect(data, name)
    await _check_chat(chat_id, user_id)
    found = await asyncio.to_thread(extract.extract, data, content_type, s.extract_max_chars)
    file_id = uuid.uuid4()
    key = storage.key_for(user_id, file_id)
    await asyncio.to_thread(storage.put, key, data, content_type)
    try:
        return await File.create(
            user_id, name, content_type, key, len(data), file_id=file_id,
            status="processed" if found.processed else "failed", processed=found.processed, error=found.error,
            extracted_text=found.text, text_truncated=found.truncated, chat_id=chat_id,
        )
    except BaseException:
        await asyncio.to_thread(_delete_quietly, key)
        raise


def _delete_quietly(key: str) -> None:
    try:
        storage.delete(key)
    except Exception:  # noqa: BLE001 - the object stays under the user's prefix; account deletion removes it
        log.warning("could not delete %s after a failed upload", key)


async def start_presigned_upload(user_id: uuid.UUID, file_name: str, file_size: int,
                                 chat_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Record a `pending` file and return the presigned POST the browser sends it with: this
    key only, the content type the name promises, at most the announced size, a few minutes."""
    from shared import extract

    s = get_settings()
    if file_size == 0:
        raise ValidationFailed("The file is empty")
    if file_size > s.max_presigned_upload_bytes:
        raise _too_large(s.max_presigned_upload_bytes)
    name = clean_name(file_name)
    content_type = extract.type_for_name(name)
    await _check_chat(chat_id, user_id)
    file_id = uuid.uuid4()
    key = storage.key_for(user_id, file_id)
    form = storage.upload_form(key, content_type, file_size)
    file = await File.create(user_id, name, content_type, key, file_size, file_id=file_id, chat_id=chat_id)
    upload = {"url": form["url"], "fields": form["fields"], "expires_in": s.presigned_url_ttl_seconds,
              "max_bytes": file_size}
    return {"file": file.public(), "upload": upload}


async def process_object(key: str) -> str:
    """Extract the text of an object that a presigned upload put in S3 and record the result.
    Safe to run twice for one object (S3 may deliver an event more than once)."""
    from shared import extract

    s = get_settings()
    file_id = storage.file_id_from_key(key)
    file = await File.get_by_id(file_id) if file_id else None
    found_object = await asyncio.to_thread(storage.head, key)
    if found_object is None:
        return "skipped: the object is gone"
    if file is None or file.s3_key != key:
        if found_object.direct_upload:  # its upload call records it (or deletes it if it cannot)
            return "skipped: a direct upload"
        await asyncio.to_thread(storage.delete, key)
        return "deleted: no file record owns this object"
    if file.status != "pending":
        return f"skipped: already {file.status}"
    size = found_object.size
    content_type = file.content_type
    if size == 0:
        found = extract.Extraction(None, False, "The file is empty")
    elif size > s.max_presigned_upload_bytes:
        found = extract.Extraction(None, False, f"The file is larger than {s.max_presigned_upload_bytes} bytes")
    elif size > file.file_size:
        # S3 refuses this (the form's content-length-range); a store that does not check
        # policies (moto under `make dev`) or a form edited by hand must not get past us either.
        found = extract.Extraction(None, False, f"The file is larger than the {file.file_size} bytes announced")
    else:
        data = await asyncio.to_thread(storage.get, key)
        try:
            content_type = extract.detect(data, file.original_name)
        except UnsupportedMediaType as exc:
            found = extract.Extraction(None, False, exc.detail)
        else:
            found = await asyncio.to_thread(extract.extract, data, content_type, s.extract_max_chars)
    try:
        await file.update(status="processed" if found.processed else "failed", processed=found.processed,
                          error=found.error, extracted_text=found.text, text_truncated=found.truncated,
                          file_size=size, content_type=content_type)
    except NotFound:  # deleted while we read it (its object too): nothing to retry
        return "skipped: the file was deleted meanwhile"
    return file.status


async def delete_file(file: File) -> None:
    await asyncio.to_thread(storage.delete, file.s3_key)
    if not await file.delete():  # a parallel delete got there first: only one of them succeeds
        raise NotFound("File not found")


async def delete_chat(chat: Chat) -> None:
    """Delete a chat, the files uploaded into it and their S3 objects (see Chat.delete_with_files)."""
    if not await chat.delete_with_files(lambda keys: storage.delete(*keys)):
        raise NotFound("Chat not found")  # a parallel delete got there first: only one succeeds


async def delete_account(user: User) -> int:
    """Delete everything of a user under their S3 prefix, then the user (the rows cascade).
    Returns how many objects were removed."""
    removed = 0
    if get_settings().s3_bucket:
        removed = await asyncio.to_thread(storage.delete_prefix, storage.user_prefix(user.id))
    if not await user.delete():
        raise NotFound("User not found")
    return removed
