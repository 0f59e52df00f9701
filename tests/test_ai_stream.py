"""POST /chats/{id}/messages/stream: the contract's SSE events, through the Lambda handler (which
buffers the whole stream, as API Gateway does), with usage recorded and nothing half-written."""
from __future__ import annotations

import json
import uuid


def events(res) -> list[dict]:
    """The stream's events; every one must be exactly `data: {json}` followed by a blank line."""
    assert res.status == 200, res.text
    assert res.headers["content-type"].startswith("text/event-stream")
    assert res.text.endswith("\n\n")
    parsed = []
    for block in res.text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        parsed.append(json.loads(block[len("data: "):]))
    return parsed


def test_stream_sends_the_contract_events_and_stores_the_reply_with_usage(user, ai_stub, sql):
    chat = user.new_chat("New chat")
    ai_stub.script({"chunks": ["Par", "is is ", "the capital."], "prompt_tokens": 30, "completion_tokens": 5},
                   {"reply": "French capital"})
    res = user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "Capital of France?"})
    got = events(res)
    kinds = [e["type"] for e in got]
    assert kinds == ["user_message", "ai_message_start", "content_delta", "content_delta", "content_delta",
                     "ai_message_complete", "chat_name", "stream_complete"]
    assert got[0]["message"]["content"] == "Capital of France?" and got[0]["message"]["type"] == "user"
    assert [e["content"] for e in got if e["type"] == "content_delta"] == ["Par", "is is ", "the capital."]
    bot = got[5]["message"]
    assert bot["id"] == got[1]["message_id"] and bot["content"] == "Paris is the capital."
    assert bot["metadata"]["prompt_tokens"] == 30 and bot["metadata"]["completion_tokens"] == 5
    assert bot["metadata"]["tokens_estimated"] is False
    assert got[6]["name"] == "French capital"
    assert ai_stub.requests[0]["stream"] is True
    assert ai_stub.requests[0]["stream_options"] == {"include_usage": True}

    listed = user.get(f"/chats/{chat['id']}/messages").json()
    assert [(m["type"], m["content"]) for m in listed] == [("user", "Capital of France?"), ("bot", "Paris is the capital.")]
    assert user.get(f"/chats/{chat['id']}").json()["title"] == "French capital"
    rows = sql("SELECT operation, prompt_tokens, completion_tokens, estimated, message_id::text FROM ai_usage "
               "WHERE chat_id = %s ORDER BY operation", (chat["id"],))
    assert rows[0] == ("reply", 30, 5, False, bot["id"]) and rows[1][0] == "title"


def test_stream_without_provider_usage_is_estimated_and_flagged(user, ai_stub, sql):
    chat = user.new_chat("Estimates")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})  # not a first message below
    ai_stub.script({"chunks": ["no ", "usage ", "here"], "usage": False})
    got = events(user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "second"}))
    assert [e["type"] for e in got][-2:] == ["ai_message_complete", "stream_complete"]
    bot = got[-2]["message"]
    assert bot["metadata"]["tokens_estimated"] is True and bot["metadata"]["completion_tokens"] > 0
    row = sql("SELECT estimated, completion_tokens FROM ai_usage WHERE message_id = %s", (bot["id"],))
    assert row == [(True, bot["metadata"]["completion_tokens"])]


def test_broken_stream_ends_with_an_error_and_leaves_no_bot_message(user, ai_stub, sql):
    chat = user.new_chat("Broken")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    ai_stub.script({"chunks": ["half ", "an ", "answer ", "never ", "finished"], "stream_error_after": 2})
    got = events(user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "tell me more"}))
    assert [e["type"] for e in got] == ["user_message", "ai_message_start", "content_delta", "content_delta", "error"]
    assert "saved" in got[-1]["error"]
    assert "ai_message_complete" not in [e["type"] for e in got]
    listed = user.get(f"/chats/{chat['id']}/messages").json()
    assert [(m["type"], m["content"]) for m in listed][-1] == ("user", "tell me more")
    assert not any(m["id"] == got[1]["message_id"] for m in listed)
    # The partial answer still cost tokens: recorded as an estimate, tied to no message.
    partial = sql("SELECT estimated, message_id FROM ai_usage WHERE chat_id = %s AND operation = 'reply' "
                  "AND message_id IS NULL", (chat["id"],))
    assert partial == [(True, None)]


def test_stream_provider_error_before_any_text(user, ai_stub):
    chat = user.new_chat("Down")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    ai_stub.script({"status": 500})
    got = events(user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "anyone?"}))
    assert [e["type"] for e in got] == ["user_message", "ai_message_start", "error"]
    assert "HTTP 500" in got[-1]["error"]
    assert [m["type"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["user", "bot", "user"]


def test_stream_refusals_before_the_stream_keep_their_status(user, other_user):
    res = user.post(f"/chats/{uuid.uuid4()}/messages/stream", json={"content": "hi"})
    assert res.status == 404 and res.json()["detail"] == "Chat not found"
    theirs = other_user.new_chat("Theirs")
    assert user.post(f"/chats/{theirs['id']}/messages/stream", json={"content": "hi"}).status == 404
    mine = user.new_chat("Mine")
    assert user.post(f"/chats/{mine['id']}/messages/stream", json={"content": ""}).status == 422


def test_a_stream_that_outlasts_the_time_budget_ends_with_an_error(user, ai_stub, setting):
    setting(AI_TIME_BUDGET_SECONDS=1.5)
    chat = user.new_chat("Slow stream")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    ai_stub.script({"chunks": ["a ", "b ", "c ", "d ", "e ", "f "], "chunk_delay": 0.5})
    got = events(user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "take your time"}))
    assert got[-1]["type"] == "error" and "in time" in got[-1]["error"]
    assert "ai_message_complete" not in [e["type"] for e in got]
    assert [m["type"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["user", "bot", "user"]


def test_no_time_left_before_the_stream_starts_is_an_error_event(user, ai_stub, setting):
    setting(AI_TIME_BUDGET_SECONDS=0)
    chat = user.new_chat("No time")
    got = events(user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "hurry"}))
    assert [e["type"] for e in got] == ["user_message", "ai_message_start", "error"]
    assert ai_stub.requests == [] and [m["type"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["user"]
