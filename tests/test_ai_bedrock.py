"""AI_PROVIDER=bedrock: the Converse API through boto3, checked with botocore's Stubber (never a
real call): replies, streams, usage and cost, titles, and the contract's errors."""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from shared import ai, bedrock

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def stub(setting, monkeypatch):
    setting(AI_PROVIDER="bedrock", BEDROCK_MODEL_ID=MODEL, BEDROCK_REGION="us-east-1")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    monkeypatch.setattr(bedrock, "client", lambda timeout, retries: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def answer(text: str, tokens=(12, 3), stop="end_turn") -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": stop,
            "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
            "metrics": {"latencyMs": 5}}


def add_stream(stubber: Stubber, events: list[dict]) -> None:
    # The Stubber validates responses and an event stream is no dict: give it an empty stream to
    # validate, then the events to play (it keeps the same object).
    response = {"stream": {}}
    stubber.add_response("converse_stream", response, {"modelId": MODEL, "messages": ANY, "system": ANY,
                                                       "inferenceConfig": ANY})
    response["stream"] = events


def test_send_answers_through_bedrock_with_usage_and_cost(user, stub, sql):
    chat = user.new_chat("New chat")
    stub.add_response("converse", answer("Bonjour!", (1200, 300)), {
        "modelId": MODEL, "inferenceConfig": {"maxTokens": 1024},
        "system": [{"text": ANY}], "messages": [{"role": "user", "content": [{"text": "Say hello in French"}]}]})
    stub.add_response("converse", answer("French greeting", (30, 3)))
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "Say hello in French"})
    assert res.status == 200, res.text
    body = res.json()
    meta = body["ai_response"]["metadata"]
    assert body["ai_response"]["content"] == "Bonjour!" and body["chat_name"] == "French greeting"
    assert (meta["provider"], meta["model"], meta["prompt_tokens"], meta["completion_tokens"]) == ("bedrock", MODEL, 1200, 300)
    assert meta["cost_known"] is True and meta["cost_usd"] == pytest.approx((1200 * 0.25 + 300 * 1.25) / 1e6)
    rows = sql("SELECT operation, provider, model, total_tokens, estimated FROM ai_usage WHERE chat_id = %s "
               "ORDER BY operation", (chat["id"],))
    assert rows == [("reply", "bedrock", MODEL, 1500, False), ("title", "bedrock", MODEL, 33, False)]


def test_stream_through_bedrock(user, stub):
    chat = user.new_chat("Streamed")
    add_stream(stub, [{"messageStart": {"role": "assistant"}},
                      {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
                      {"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 0}},
                      {"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}},
                      {"metadata": {"usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11},
                                    "metrics": {"latencyMs": 3}}}])
    stub.add_response("converse", answer("Greeting"))  # the title, asked after the reply
    res = user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "hi"})
    got = [json.loads(b[6:]) for b in res.text.split("\n\n") if b]
    assert [e["type"] for e in got] == ["user_message", "ai_message_start", "content_delta", "content_delta",
                                        "ai_message_complete", "chat_name", "stream_complete"]
    meta = got[4]["message"]["metadata"]
    assert got[4]["message"]["content"] == "Hello" and (meta["prompt_tokens"], meta["completion_tokens"]) == (9, 2)
    assert got[5]["name"] == "Greeting"


def test_stream_error_event_from_bedrock_leaves_no_bot_message(user, stub):
    chat = user.new_chat("Broken")
    add_stream(stub, [{"contentBlockDelta": {"delta": {"text": "par"}, "contentBlockIndex": 0}},
                      {"throttlingException": {"message": "slow down"}}])
    res = user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "hi"})
    got = [json.loads(b[6:]) for b in res.text.split("\n\n") if b]
    assert got[-1]["type"] == "error" and "busy" in got[-1]["error"]
    assert [m["type"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["user"]


@pytest.mark.parametrize("code, status", [("ThrottlingException", 503), ("ModelTimeoutException", 504),
                                          ("InternalServerException", 502), ("AccessDeniedException", 502)])
def test_bedrock_errors_map_to_gateway_errors(user, stub, code, status):
    chat = user.new_chat("Failing")
    stub.add_client_error("converse", service_error_code=code, service_message="no", http_status_code=400)
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "hello?"})
    assert res.status == status and "your message was saved" in res.json()["detail"]
    assert [m["content"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["hello?"]


def test_guardrail_refusal_is_a_flagged_reply(user, stub):
    chat = user.new_chat("Guarded")
    stub.add_response("converse", answer("", stop="guardrail_intervened"))
    stub.add_response("converse", answer("Title"))
    bot = user.post(f"/chats/{chat['id']}/messages", json={"content": "bad idea"}).json()["ai_response"]
    assert bot["content"] == ai.FILTERED_REPLY and bot["metadata"]["content_filtered"] is True


def test_converse_shape_alternates_and_starts_with_the_user(setting):
    setting(BEDROCK_MODEL_ID=MODEL)
    args = bedrock.converse_args([{"role": "system", "content": "sys"}, {"role": "assistant", "content": "orphan"},
                                  {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                  {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}], 50)
    assert args["system"] == [{"text": "sys"}] and args["inferenceConfig"] == {"maxTokens": 50}
    assert args["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                                {"role": "assistant", "content": [{"text": "c"}]},
                                {"role": "user", "content": [{"text": "d"}]}]


def test_client_is_lazy_and_its_timeouts_fit_the_budget(setting, monkeypatch):
    setting(BEDROCK_REGION="eu-west-1")
    monkeypatch.setattr(bedrock, "_clients", {})
    c = bedrock.client(7.2, 1)
    assert c.meta.config.read_timeout == 8 and c.meta.config.retries["total_max_attempts"] == 2
    assert c.meta.region_name == "eu-west-1" and bedrock.client(7.9, 1) is c
