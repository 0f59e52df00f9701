"""Sending and listing messages through the messages function's Lambda handler."""
from __future__ import annotations

import uuid


def test_send_stores_both_messages_with_usage_and_titles_a_new_chat(user, ai_stub, sql):
    chat = user.new_chat("New chat")
    ai_stub.script({"reply": "Paris is the capital of France.", "prompt_tokens": 21, "completion_tokens": 8},
                   {"reply": "Capital of France"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "What is the capital of France?",
                                                          "metadata": {"client": "web"}})
    assert res.status == 200, res.text
    body = res.json()
    assert body["user_message"]["type"] == "user"
    assert body["user_message"]["content"] == "What is the capital of France?"
    assert body["user_message"]["metadata"] == {"client": "web"}
    bot = body["ai_response"]
    assert bot["type"] == "bot" and bot["content"] == "Paris is the capital of France."
    assert bot["metadata"]["model"] and bot["metadata"]["prompt_tokens"] == 21
    assert bot["metadata"]["completion_tokens"] == 8 and bot["metadata"]["total_tokens"] == 29
    assert body["chat_name"] == "Capital of France"
    assert isinstance(body["processing_time"], float)

    listed = user.get(f"/chats/{chat['id']}/messages").json()
    assert [m["type"] for m in listed] == ["user", "bot"]
    assert user.get(f"/chats/{chat['id']}").json()["title"] == "Capital of France"
    usage = sql("SELECT operation, prompt_tokens, completion_tokens, total_tokens, message_id::text "
                "FROM ai_usage WHERE chat_id = %s ORDER BY operation", (chat["id"],))
    assert usage[0][:4] == ("reply", 21, 8, 29) and usage[0][4] == bot["id"]
    assert usage[1][0] == "title"


def test_second_message_keeps_the_title(user, ai_stub):
    chat = user.new_chat("Kept")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    title = user.get(f"/chats/{chat['id']}").json()["title"]
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "second"}).json()
    assert res["chat_name"] is None
    assert user.get(f"/chats/{chat['id']}").json()["title"] == title


def test_context_is_the_latest_turns_and_the_new_message_once(user, ai_stub, setting):
    setting(AI_CONTEXT_MESSAGES=20)
    chat = user.new_chat("Long")
    for i in range(25):
        assert user.post(f"/chats/{chat['id']}/messages", json={"content": f"message number {i}"}).status == 200
    ai_stub.reset()
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "the newest question"}).status == 200
    sent = ai_stub.requests[0]["messages"]
    assert sent[0]["role"] == "system"
    contents = [m["content"] for m in sent[1:]]
    assert contents[-1] == "the newest question"
    assert contents.count("the newest question") == 1
    assert "message number 24" in contents and "message number 0" not in contents
    users_turns = [c for c in contents if c.startswith("message number")]
    numbers = [int(c.split()[-1]) for c in users_turns]
    assert numbers == sorted(numbers) and numbers[-1] == 24


def test_ai_failure_keeps_the_user_message(user, ai_stub, sql):
    chat = user.new_chat("Failing")
    ai_stub.script({"status": 500, "message": "upstream exploded"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "are you there?"})
    assert res.status == 502 and "saved" in res.json()["detail"]
    listed = user.get(f"/chats/{chat['id']}/messages").json()
    assert [(m["type"], m["content"]) for m in listed] == [("user", "are you there?")]


def test_ai_timeout_is_a_504_and_rate_limit_a_503(user, ai_stub):
    chat = user.new_chat("Slow")
    ai_stub.script({"delay": 5, "reply": "too late"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "slow one"})
    assert res.status == 504 and res.json()["detail"]
    ai_stub.script({"status": 429, "message": "slow down"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "limited one"})
    assert res.status == 503 and res.json()["detail"]
    kinds = [m["content"] for m in user.get(f"/chats/{chat['id']}/messages").json()]
    assert kinds == ["slow one", "limited one"]


def test_message_validation(user):
    chat = user.new_chat("Validation")
    for payload in ({}, {"content": ""}, {"content": "   "}, {"content": 5}, {"content": "ok", "metadata": []},
                    {"content": "nul\x00byte"}, {"content": "ok", "metadata": "x"}):
        res = user.post(f"/chats/{chat['id']}/messages", json=payload)
        assert res.status == 422, payload
        assert isinstance(res.json()["detail"], str)
    assert user.get(f"/chats/{chat['id']}/messages").json() == []


def test_message_page_is_oldest_first_with_limit_and_offset(user, ai_stub):
    chat = user.new_chat("Paging")
    for i in range(3):
        user.post(f"/chats/{chat['id']}/messages", json={"content": f"m{i}"})
    page = user.get(f"/chats/{chat['id']}/messages", query={"limit": 2, "offset": 2}).json()
    assert [m["content"] for m in page][0] == "m1"
    assert len(page) == 2
    assert user.get(f"/chats/{chat['id']}/messages", query={"limit": 500}).status == 422


def test_unknown_chat_is_404(user):
    res = user.post(f"/chats/{uuid.uuid4()}/messages", json={"content": "hi"})
    assert res.status == 404 and res.json()["detail"] == "Chat not found"


def test_deleting_a_chat_removes_messages_but_keeps_usage(user, ai_stub, sql):
    chat = user.new_chat("Doomed")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    before = sql("SELECT sum(total_tokens) FROM ai_usage WHERE user_id = %s", (user.id,))[0][0]
    assert user.delete(f"/chats/{chat['id']}").status == 200
    assert sql("SELECT count(*) FROM messages WHERE chat_id = %s", (chat["id"],))[0][0] == 0
    after = sql("SELECT sum(total_tokens), count(*) FILTER (WHERE chat_id IS NULL) FROM ai_usage WHERE user_id = %s",
                (user.id,))[0]
    assert after[0] == before and after[1] >= 1
