"""What the AI sees: the system prompt, the text of the files a message names, the chat's latest
turns and the new message once - fitted to the token budget in settings (AI_CONTEXT_TOKENS)."""
from __future__ import annotations

import re
import uuid

from shared.ai import estimate_tokens
from shared.errors import NotFound
from shared.models import File, Turn
from shared.settings import get_settings

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators a provider adds to every message
TITLE_RESERVE_TOKENS = 600  # the title call: its prompt, up to 2,000 characters of the message, its answer
CUT_NOTE = "[... the rest of this file was cut to fit the AI's context]"
_FILE_URL = re.compile(r"files/([0-9a-fA-F-]{36})(?:/|$|\?)")


def file_ids_of(file_url: str | None, file_ids: list[uuid.UUID] | None) -> list[uuid.UUID]:
    """The files a message names: by its `file_url` (/files/{id}/download, as the front end
    sends it) and by `file_ids`, without repeats. A file_url naming no file id is NotFound."""
    ids = list(file_ids or [])
    if file_url:
        match = _FILE_URL.search(file_url)
        try:
            ids.insert(0, uuid.UUID(match.group(1)))
        except (AttributeError, ValueError):  # no file id in it at all, or not a UUID
            raise NotFound("File not found") from None
    return list(dict.fromkeys(ids))


async def attached_files(user_id: uuid.UUID, file_ids: list[uuid.UUID], *, strict: bool = True) -> list[File]:
    """The user's own files by id; NotFound if any is unknown or someone else's (never ignored),
    unless not `strict` (a regenerate takes the files of a stored message that still exist)."""
    if not file_ids:
        return []
    files = await File.get_owned(file_ids, user_id)
    if strict and len(files) != len(file_ids):
        raise NotFound("File not found")
    return files


def _chars(tokens: int) -> int:
    return max(0, tokens) * 4


def documents(files: list[File], budget_tokens: int) -> str | None:
    """The files' text as one context block, each cut to an equal share of `budget_tokens`, with a
    note wherever text was cut (here, or already when the file was read)."""
    if not files:
        return None
    share = _chars(budget_tokens // len(files))
    blocks = []
    for f in files:
        text = f.extracted_text or ""
        if not text.strip():
            body = "[no text could be read from this file]" if f.status == "failed" else "[this file's text is not available yet]"
        elif len(text) > share:
            body = text[:share].rstrip() + "\n" + CUT_NOTE
        else:
            body = text + ("\n" + CUT_NOTE if f.text_truncated else "")
        blocks.append(f"--- File: {f.original_name} ---\n{body}")
    return "\n\n".join(blocks)


def reserve_tokens(content: str, *, may_title: bool = True) -> int:
    """The most tokens one request can spend: the reservation held against the daily budget."""
    s = get_settings()
    title = TITLE_RESERVE_TOKENS if may_title else 0
    return s.ai_context_tokens + estimate_tokens(content) + s.ai_max_tokens + title


def history_window() -> dict[str, int]:
    """How much history the database needs to return at most (rows, characters)."""
    s = get_settings()
    return {"history": s.ai_context_messages, "history_chars": _chars(s.ai_context_tokens)}


def build(history: list[Turn], new_message: str, files: list[File] | None = None) -> list[dict[str, str]]:
    """System prompt, the files' text (at most their share of the budget), then as many of the
    chat's latest turns as fit, oldest first, then the new message exactly once."""
    s = get_settings()
    system = s.ai_system_prompt
    left = s.ai_context_tokens - estimate_tokens(system) - estimate_tokens(new_message) - 2 * MESSAGE_OVERHEAD_TOKENS
    messages = [{"role": "system", "content": system}]
    docs = documents(files or [], int(max(0, left) * s.ai_file_context_share))
    if docs:
        messages.append({"role": "system", "content": "Documents the user attached:\n\n" + docs})
        left -= estimate_tokens(messages[-1]["content"]) + MESSAGE_OVERHEAD_TOKENS
    turns: list[dict[str, str]] = []
    for turn in reversed(history):  # newest first, stop at the first that does not fit: no gaps
        cost = estimate_tokens(turn.content) + MESSAGE_OVERHEAD_TOKENS
        if cost > left:
            break
        left -= cost
        turns.append({"role": "assistant" if turn.type == "bot" else "user", "content": turn.content})
    messages.extend(reversed(turns))
    messages.append({"role": "user", "content": new_message})
    return messages

