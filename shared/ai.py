"""The AI: prompts, the OpenAI client (created lazily, imported only by the functions that talk
to the AI), and the mapping of provider failures onto the contract's 502/503/504."""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ApiError, BadGateway, GatewayTimeout, ServiceUnavailable
from shared.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from openai import OpenAI

log = logging.getLogger(__name__)
PROVIDER = "openai"
TITLE_MAX_CHARS = 60
TITLE_PROMPT = (
    "Write a short title (at most 6 words) for a chat that starts with the user's message below. "
    "Answer with the title only: no quotes, no trailing punctuation."
)

_client: OpenAI | None = None


def client() -> OpenAI:
    global _client
    if _client is None:
        from openai import OpenAI  # imported here so functions without AI never load it

        s = get_settings()
        _client = OpenAI(
            api_key=s.openai_api_key or "missing-key",
            base_url=s.openai_base_url or None,
            timeout=s.openai_timeout_seconds,
            max_retries=s.openai_max_retries,
        )
    return _client


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token), never zero for text."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass
class Completion:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    finish_reason: str | None
    latency_ms: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def metadata(self) -> dict[str, Any]:
        meta = {
            "model": self.model,
            "provider": PROVIDER,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "tokens_estimated": self.estimated,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
        }
        if self.finish_reason == "content_filter":
            meta["content_filtered"] = True
        return meta


def provider_error(exc: Exception) -> ApiError:
    """The contract's error for a failed AI call."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return GatewayTimeout("The AI service did not answer in time; your message was saved, please retry")
    if isinstance(exc, openai.RateLimitError):
        return ServiceUnavailable("The AI service is rate limited right now; your message was saved, please retry")
    if isinstance(exc, openai.APIConnectionError):
        return BadGateway("The AI service could not be reached; your message was saved, please retry")
    if isinstance(exc, openai.APIStatusError):
        return BadGateway(f"The AI service failed (HTTP {exc.status_code}); your message was saved, please retry")
    return BadGateway("The AI service returned an unusable answer; your message was saved, please retry")


def complete(messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Completion:
    """One chat completion. Raises the contract's ApiError on any provider failure."""
    import openai

    s = get_settings()
    started = time.perf_counter()
    try:
        response = client().chat.completions.create(
            model=s.openai_model, messages=messages, max_tokens=max_tokens or s.ai_max_tokens
        )
        choice = response.choices[0]
        content = choice.message.content or ""
    except (openai.OpenAIError, IndexError, AttributeError) as exc:
        log.warning("AI call failed: %s: %s", type(exc).__name__, exc)
        raise provider_error(exc) from exc
    usage = response.usage
    if usage is not None and usage.prompt_tokens is not None:
        prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens or 0, False
    else:
        prompt = sum(estimate_tokens(m["content"]) for m in messages)
        completion, estimated = estimate_tokens(content), True
    return Completion(
        content=content, model=response.model or s.openai_model, prompt_tokens=prompt,
        completion_tokens=completion, estimated=estimated, finish_reason=choice.finish_reason,
        latency_ms=int((time.perf_counter() - started) * 1000),
    )


def build_context(history: list[tuple[str, str]], new_message: str, *, documents: str | None = None) -> list[dict[str, str]]:
    """System prompt, then the chat's latest turns in order, then the new message exactly once."""
    s = get_settings()
    messages = [{"role": "system", "content": s.ai_system_prompt}]
    if documents:
        messages.append({"role": "system", "content": "Documents the user attached:\n\n" + documents})
    for kind, content in history:
        messages.append({"role": "assistant" if kind == "bot" else "user", "content": content})
    messages.append({"role": "user", "content": new_message})
    return messages


_SPACE = re.compile(r"\s+")


def clean_title(raw: str, fallback: str) -> str:
    """A title of at most TITLE_MAX_CHARS characters, never empty, cut between words."""
    title = _SPACE.sub(" ", raw or "").strip().strip("\"'`").strip()
    title = title.rstrip(".!?:;,").strip()
    if not title:
        title = _SPACE.sub(" ", fallback).strip() or "New chat"
    if len(title) > TITLE_MAX_CHARS:
        cut = title[:TITLE_MAX_CHARS]
        space = cut.rfind(" ")
        title = (cut[:space] if space >= TITLE_MAX_CHARS // 2 else cut).rstrip()
    return title


def suggest_title(first_message: str) -> tuple[str, Completion | None]:
    """A title for a chat from its first message; the message's first words if the AI fails."""
    try:
        result = complete(
            [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": first_message[:2000]}],
            max_tokens=30,
        )
    except ApiError:
        return clean_title("", first_message), None
    return clean_title(result.content, first_message), result
