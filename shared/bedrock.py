"""Amazon Bedrock through the Converse API (AI_PROVIDER=bedrock): the same calls as the OpenAI
path in shared/ai.py - a completion, a stream, token usage, the contract's errors. boto3 is
imported and its client created only when the first call needs it."""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from shared import ai
from shared.errors import ApiError, BadGateway, GatewayTimeout, ServiceUnavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)
_clients: dict[tuple[int, int], Any] = {}
_BUSY = {"ThrottlingException", "ServiceUnavailableException", "ServiceQuotaExceededException",
         "ModelNotReadyException", "throttlingException", "serviceUnavailableException"}
_SLOW = {"ModelTimeoutException", "modelTimeoutException"}


def client(timeout: float, retries: int) -> Any:
    """A bedrock-runtime client whose read timeout and attempts fit the call's time budget (botocore
    fixes them per client, so there is one per whole-second timeout and retry count)."""
    key = (max(1, math.ceil(timeout)), retries)
    if key not in _clients:
        import boto3
        from botocore.config import Config

        s = get_settings()
        _clients[key] = boto3.client(
            "bedrock-runtime", region_name=s.bedrock_region or s.aws_region,
            config=Config(connect_timeout=min(5, key[0]), read_timeout=key[0],
                          retries={"total_max_attempts": 1 + retries, "mode": "standard"}),
        )
    return _clients[key]


def error(exc: Exception) -> ApiError:
    """The contract's error for a failed Bedrock call."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
    elif isinstance(exc, ReadTimeoutError):
        code = "ModelTimeoutException"
    elif isinstance(exc, ConnectTimeoutError):
        return BadGateway(f"The AI service could not be reached; {ai.SAVED}")
    else:
        code = type(exc).__name__
    if code in _SLOW:
        return GatewayTimeout(f"The AI service did not answer in time; {ai.SAVED}")
    if code in _BUSY:
        return ServiceUnavailable(f"The AI service is rate limited or busy right now; {ai.SAVED}")
    if code in ("EndpointConnectionError", "ConnectionClosedError"):
        return BadGateway(f"The AI service could not be reached; {ai.SAVED}")
    return BadGateway(f"The AI service failed ({code}); {ai.SAVED}")


def converse_args(messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """Chat messages in the Converse API's shape: system prompts apart, turns alternating and
    starting with the user (consecutive turns of one role are merged)."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        role = "assistant" if m["role"] == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].append({"text": m["content"]})
        else:
            turns.append({"role": role, "content": [{"text": m["content"]}]})
    if turns and turns[0]["role"] == "assistant":
        turns.pop(0)
    return {"modelId": get_settings().bedrock_model_id, "messages": turns,
            "system": [{"text": m["content"]} for m in messages if m["role"] == "system"],
            "inferenceConfig": {"maxTokens": max_tokens}}


def complete(messages: list[dict[str, str]], max_tokens: int, limits: tuple[float, int]) -> ai.Completion:
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.perf_counter()
    try:
        response = client(*limits).converse(**converse_args(messages, max_tokens))
        blocks = response["output"]["message"]["content"]
    except (BotoCoreError, ClientError, KeyError, TypeError) as exc:
        log.warning("Bedrock call failed: %s: %s", type(exc).__name__, exc)
        raise error(exc) from exc
    usage = response.get("usage") or {}
    return ai.finish(messages, "".join(b.get("text", "") for b in blocks), model=get_settings().bedrock_model_id,
                     finish_reason=response.get("stopReason"), prompt_tokens=usage.get("inputTokens"),
                     completion_tokens=usage.get("outputTokens"), started=started)


def stream(messages: list[dict[str, str]], max_tokens: int, limits: tuple[float, int],
           deadline: ai.Deadline) -> ai.Stream:
    from botocore.exceptions import BotoCoreError, ClientError

    s = get_settings()
    started = time.perf_counter()
    parts: list[str] = []
    stop, usage = None, {}

    def cut() -> ai.Completion | None:
        return ai.partial(messages, parts, s.bedrock_model_id, started)

    try:
        response = client(*limits).converse_stream(**converse_args(messages, max_tokens))
        for event in response["stream"]:
            if "contentBlockDelta" in event:
                piece = event["contentBlockDelta"].get("delta", {}).get("text")
                if piece:
                    parts.append(piece)
                    yield piece
            elif "messageStop" in event:
                stop = event["messageStop"].get("stopReason")
            elif "metadata" in event:
                usage = event["metadata"].get("usage") or {}
            elif event and not {"messageStart", "contentBlockStart", "contentBlockStop"} & set(event):
                code = next(iter(event))  # an error event in the stream: its name is the error code
                raise ai.failed(error(ClientError({"Error": {"Code": code}}, "ConverseStream")), cut())
            deadline.check(cut)
    except (BotoCoreError, ClientError, KeyError, TypeError) as exc:
        log.warning("Bedrock stream failed: %s: %s", type(exc).__name__, exc)
        raise ai.failed(error(exc), cut()) from exc
    return ai.finish(messages, "".join(parts), model=s.bedrock_model_id, finish_reason=stop,
                     prompt_tokens=usage.get("inputTokens"), completion_tokens=usage.get("outputTokens"),
                     started=started)
