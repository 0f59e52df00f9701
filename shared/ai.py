"""The AI: one face over the providers (OpenAI, or Amazon Bedrock with AI_PROVIDER=bedrock),
token estimates and prices, the time budget that keeps every call inside the Lambda's own
timeout, and chat titles. Provider clients are created lazily and imported only by the
functions that talk to the AI (cold start), and every provider failure becomes the contract's
502/503/504 ApiError."""
from __future__ import annotations

import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator

from shared.errors import ApiError, BadGateway, GatewayTimeout, ServiceUnavailable
from shared.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from openai import OpenAI

log = logging.getLogger(__name__)
TITLE_MAX_CHARS = 60
TITLE_MAX_TOKENS = 30
TITLE_TIMEOUT_SECONDS = 10.0
TITLE_PROMPT = (
    "Write a short title (at most 6 words) for a chat that starts with the user's message below. "
    "Answer with the title only: no quotes, no trailing punctuation."
)
FILTERED_REPLY = "I can't help with that request: the AI provider's content filter stopped the answer."
SAVED = "your message was saved, please retry"

# A provider call in progress: yields the reply's text pieces, returns the finished Completion.
Stream = Generator[str, None, "Completion"]

_client: OpenAI | None = None


def provider() -> str:
    return get_settings().ai_provider


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


def estimate_tokens(text: str | None) -> int:
    """A cheap token estimate (about four characters a token), never zero for text."""
    return max(1, (len(text) + 3) // 4) if text else 0


def price(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
    """(cost in USD, whether the model is in the price table). A dated model name such as
    gpt-4o-mini-2024-07-18 takes the price of its longest listed prefix; an unknown model costs 0."""
    prices = get_settings().ai_prices
    key = model if model in prices else max((k for k in prices if model.startswith(k)), key=len, default=None)
    if key is None:
        return 0.0, False
    per_in, per_out = prices[key]
    cost = (max(0, prompt_tokens) * per_in + max(0, completion_tokens) * per_out) / 1_000_000
    return max(0.0, round(cost, 8)), True


@dataclass
class Completion:
    content: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    finish_reason: str | None
    latency_ms: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def content_filtered(self) -> bool:
        return self.finish_reason in ("content_filter", "content_filtered", "guardrail_intervened")

    def cost(self) -> tuple[float, bool]:
        return price(self.model, self.prompt_tokens, self.completion_tokens)

    def metadata(self) -> dict[str, Any]:
        cost, priced = self.cost()
        meta = {
            "model": self.model,
            "provider": self.provider,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "tokens_estimated": self.estimated,
            "cost_usd": cost,
            "cost_known": priced,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
        }
        if self.content_filtered:
            meta["content_filtered"] = True
        return meta


def finish(messages: list[dict[str, str]], content: str, *, model: str, finish_reason: str | None,
           prompt_tokens: int | None, completion_tokens: int | None, started: float) -> Completion:
    """The Completion of a provider's answer: its token counts, or estimates flagged as such. A
    content-filter refusal becomes a normal reply; an empty answer is a provider failure (502),
    which still carries the completion so its usage is recorded."""
    estimated = prompt_tokens is None
    if estimated:
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        completion_tokens = estimate_tokens(content)
    result = Completion(
        content=content, model=model, provider=provider(), prompt_tokens=int(prompt_tokens),
        completion_tokens=int(completion_tokens or 0), estimated=estimated, finish_reason=finish_reason,
        latency_ms=int((time.perf_counter() - started) * 1000),
    )
    if result.content_filtered and not content.strip():
        result.content = FILTERED_REPLY
    elif not content.strip():
        raise failed(BadGateway(f"The AI service returned an empty answer; {SAVED}"), result)
    return result


def partial(messages: list[dict[str, str]], parts: list[str], model: str, started: float) -> Completion | None:
    """What a stream that broke off had produced, its tokens estimated (None if nothing came)."""
    if not parts:
        return None
    content = "".join(parts)
    return Completion(content, model, provider(), sum(estimate_tokens(m["content"]) for m in messages),
                      estimate_tokens(content), True, "error", int((time.perf_counter() - started) * 1000))


def failed(error: ApiError, completion: Completion | None) -> ApiError:
    """Attach what a failed call still cost (a partial stream, an empty answer) to its error."""
    error.completion = completion  # type: ignore[attr-defined]
    return error


# --------------------------------------------------------------------------- the time budget


class Deadline:
    """The time a request may spend on the AI, shared by all its calls, so that timeouts and
    retries together end before the Lambda's own timeout (and API Gateway's 30 s) does."""

    def __init__(self, seconds: float | None = None, *, lambda_context: Any = None):
        seconds = get_settings().ai_time_budget_seconds if seconds is None else seconds
        if lambda_context is not None:  # never longer than the invocation has left, minus a margin
            seconds = min(seconds, lambda_context.get_remaining_time_in_millis() / 1000 - 3)
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def call_limits(self, timeout: float, retries: int) -> tuple[float, int]:
        """(timeout per attempt, retries) for the next call; GatewayTimeout if no time is left.
        Retries are allowed only as far as whole attempts still fit in the budget."""
        left = self.left()
        if left < 1:
            raise GatewayTimeout(f"The AI service did not answer in time; {SAVED}")
        timeout = min(timeout, left)
        return timeout, max(0, min(retries, int(left // timeout) - 1))

    def check(self, partial: Callable[[], Completion | None]) -> None:
        """Between the pieces of a stream: a GatewayTimeout carrying the partial answer when time is up."""
        if self.left() <= 0:
            raise failed(GatewayTimeout(f"The AI service did not finish in time; {SAVED}"), partial())


# --------------------------------------------------------------------------- the calls


def complete(messages: list[dict[str, str]], *, deadline: Deadline, max_tokens: int | None = None,
             timeout: float | None = None) -> Completion:
    """One chat completion. Raises the contract's ApiError on any provider failure."""
    s = get_settings()
    limits = deadline.call_limits(timeout or s.openai_timeout_seconds, s.openai_max_retries)
    if s.ai_provider == "bedrock":
        from shared import bedrock

        return bedrock.complete(messages, max_tokens or s.ai_max_tokens, limits)
    return _openai_complete(messages, max_tokens or s.ai_max_tokens, limits)


def stream(messages: list[dict[str, str]], *, deadline: Deadline) -> Stream:
    """A streamed chat completion: yields text pieces, returns the Completion (StopIteration.value).
    Raises the contract's ApiError on failure; after a partial answer the error carries it."""
    s = get_settings()
    limits = deadline.call_limits(s.openai_timeout_seconds, s.openai_max_retries)
    if s.ai_provider == "bedrock":
        from shared import bedrock

        return bedrock.stream(messages, s.ai_max_tokens, limits, deadline)
    return _openai_stream(messages, s.ai_max_tokens, limits, deadline)


def openai_error(exc: Exception) -> ApiError:
    """The contract's error for a failed OpenAI call."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return GatewayTimeout(f"The AI service did not answer in time; {SAVED}")
    if isinstance(exc, openai.RateLimitError):
        return ServiceUnavailable(f"The AI service is rate limited right now; {SAVED}")
    if isinstance(exc, openai.APIConnectionError):
        return BadGateway(f"The AI service could not be reached; {SAVED}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in (503, 529):
            return ServiceUnavailable(f"The AI service is overloaded right now; {SAVED}")
        return BadGateway(f"The AI service failed (HTTP {exc.status_code}); {SAVED}")
    return BadGateway(f"The AI service returned an unusable answer; {SAVED}")


def _openai_complete(messages: list[dict[str, str]], max_tokens: int, limits: tuple[float, int]) -> Completion:
    import openai

    started = time.perf_counter()
    try:
        response = client().with_options(timeout=limits[0], max_retries=limits[1]).chat.completions.create(
            model=get_settings().openai_model, messages=messages, max_tokens=max_tokens
        )
        choice = response.choices[0]
        content = choice.message.content or getattr(choice.message, "refusal", None) or ""
    except (openai.OpenAIError, IndexError, AttributeError) as exc:
        log.warning("AI call failed: %s: %s", type(exc).__name__, exc)
        raise openai_error(exc) from exc
    usage = response.usage
    counted = usage is not None and usage.prompt_tokens is not None
    return finish(messages, content, model=response.model or get_settings().openai_model,
                  finish_reason=choice.finish_reason, prompt_tokens=usage.prompt_tokens if counted else None,
                  completion_tokens=usage.completion_tokens if counted else None, started=started)


def _openai_stream(messages: list[dict[str, str]], max_tokens: int, limits: tuple[float, int],
                   deadline: Deadline) -> Stream:
    import openai

    s = get_settings()
    started = time.perf_counter()
    parts: list[str] = []
    model, finish_reason, usage = s.openai_model, None, None

    def cut() -> Completion | None:
        return partial(messages, parts, model, started)

    try:
        response = client().with_options(timeout=limits[0], max_retries=limits[1]).chat.completions.create(
            model=s.openai_model, messages=messages, max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True},
        )
    except openai.OpenAIError as exc:
        log.warning("AI stream failed to start: %s: %s", type(exc).__name__, exc)
        raise openai_error(exc) from exc
    try:
        for chunk in response:
            model = chunk.model or model
            usage = chunk.usage or usage
            for choice in chunk.choices:
                piece = choice.delta.content if choice.delta else None
                if piece:
                    parts.append(piece)
                    yield piece
                finish_reason = choice.finish_reason or finish_reason
            deadline.check(cut)
    except openai.OpenAIError as exc:
        log.warning("AI stream broke: %s: %s", type(exc).__name__, exc)
        raise failed(openai_error(exc), cut()) from exc
    finally:
        response.close()
    counted = usage is not None and usage.prompt_tokens is not None
    return finish(messages, "".join(parts), model=model, finish_reason=finish_reason,
                  prompt_tokens=usage.prompt_tokens if counted else None,
                  completion_tokens=usage.completion_tokens if counted else None, started=started)


# --------------------------------------------------------------------------- titles


def _joins_previous(text: str, i: int) -> bool:
    """Is there no grapheme boundary before text[i]? Covers combining marks, emoji modifiers
    and variation selectors, zero-width-joiner sequences, tag sequences and flag pairs."""
    ch, prev = text[i], text[i - 1]
    cp = ord(ch)
    if (unicodedata.category(ch) in ("Mn", "Me", "Mc") or cp == 0x200D or prev == "\u200d"
            or 0xFE00 <= cp <= 0xFE0F or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F):
        return True
    if 0x1F1E6 <= cp <= 0x1F1FF:  # a regional indicator joins an odd run of them before it
        run = 0
        while i - 1 - run >= 0 and 0x1F1E6 <= ord(text[i - 1 - run]) <= 0x1F1FF:
            run += 1
        return run % 2 == 1
    return False


def grapheme_prefix(text: str, limit: int) -> str:
    """The longest prefix of at most `limit` characters that ends on a grapheme boundary."""
    if len(text) <= limit:
        return text
    cut = limit
    while cut > 0 and _joins_previous(text, cut):
        cut -= 1
    return text[:cut]


_SPACE = re.compile(r"\s+")
_LABEL = re.compile(r"^(chat\s+)?title\s*:\s*", re.IGNORECASE)


def clean_title(raw: str, fallback: str) -> str:
    """A title of at most TITLE_MAX_CHARS characters, never empty, cut between words when it can
    and never inside a grapheme (half an emoji); the fallback's first words when `raw` is empty."""
    title = _LABEL.sub("", _SPACE.sub(" ", raw or "").strip()).strip().strip("\"'`*").strip()
    title = title.rstrip(".!?:;,").strip()
    if not title:
        title = _SPACE.sub(" ", fallback).strip() or "New chat"
    if len(title) > TITLE_MAX_CHARS:
        cut = grapheme_prefix(title, TITLE_MAX_CHARS)
        space = len(cut) if title[len(cut)] == " " else cut.rfind(" ")
        title = (cut[:space] if space >= TITLE_MAX_CHARS // 2 else cut).rstrip()
    return title or "New chat"


def suggest_title(first_message: str, deadline: Deadline) -> tuple[str, Completion | None]:
    """A title for a chat from its first message; the message's first words if the AI fails.
    Returns the call's Completion (also when its answer was unusable) for the usage record."""
    try:
        result = complete(
            [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": first_message[:2000]}],
            deadline=deadline, max_tokens=TITLE_MAX_TOKENS, timeout=TITLE_TIMEOUT_SECONDS,
        )
    except ApiError as exc:
        return clean_title("", first_message), getattr(exc, "completion", None)
    if result.content_filtered:
        return clean_title("", first_message), result
    return clean_title(result.content, first_message), result
