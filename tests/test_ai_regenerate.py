"""POST /chats/{id}/messages/regenerate: the last reply replaced by a new one; the old text kept in
the new reply's metadata (previous_versions, newest first); usage recorded."""
from __future__ import annotations

import uuid


def test_regenerate_replaces_the_last_reply_and_keeps_the_old_text(user, ai_stub, sql):
    chat = user.new_chat("Again")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    ai_stub.script({"reply": "first answer"})
    first = user.post(f"/chats/{chat['id']}/messages", json={"content": "tell me a joke"}).json()["ai_response"]
    ai_stub.reset()
    ai_stub.script({"reply": "second answer", "prompt_tokens": 77, "completion_tokens": 7})
    res = user.post(f"/chats/{chat['id']}/messages/regenerate")
    assert res.status == 200, res.text
    body = res.json()
    assert body["user_message"]["content"] == "tell me a joke" and body["chat_name"] is None
    new = body["ai_response"]
    assert new["content"] == "second answer" and new["id"] != first["id"]
    assert new["metadata"]["previous_versions"][0]["content"] == "first answer"
    assert new["metadata"]["previous_versions"][0]["id"] == first["id"]
    # The AI saw the question once and not the reply being replaced.
    sent = [m["content"] for m in ai_stub.requests[0]["messages"]]
    assert sent[-1] == "tell me a joke" and sent.count("tell me a joke") == 1 and "first answer" not in sent
    contents = [(m["type"], m["content"]) for m in user.get(f"/chats/{chat['id']}/messages").json()]
    assert contents[-2:] == [("user", "tell me a joke"), ("bot", "second answer")] and len(contents) == 4
    usage = sql("SELECT operation, prompt_tokens, message_id::text FROM ai_usage WHERE chat_id = %s "
                "AND operation = 'regenerate'", (chat["id"],))
    assert usage == [("regenerate", 77, new["id"])]
    # The replaced reply's usage stays, detached from the deleted message.
    assert sql("SELECT count(*) FROM ai_usage WHERE chat_id = %s AND operation = 'reply' AND message_id IS NULL",
               (chat["id"],))[0][0] == 1

    ai_stub.script({"reply": "third answer"})
    third = user.post(f"/chats/{chat['id']}/messages/regenerate").json()["ai_response"]
    assert [v["content"] for v in third["metadata"]["previous_versions"]] == ["second answer", "first answer"]


def test_regenerate_answers_a_message_whose_reply_failed(user, ai_stub):
    chat = user.new_chat("Retry")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    ai_stub.script({"status": 500})
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "unanswered"}).status == 502
    ai_stub.script({"reply": "answered now"})
    new = user.post(f"/chats/{chat['id']}/messages/regenerate").json()["ai_response"]
    assert new["content"] == "answered now" and "previous_versions" not in new["metadata"]
    contents = [m["content"] for m in user.get(f"/chats/{chat['id']}/messages").json()]
    assert contents[-2:] == ["unanswered", "answered now"]


def test_failed_regenerate_keeps_the_old_reply(user, ai_stub):
    chat = user.new_chat("Keep")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    before = user.get(f"/chats/{chat['id']}/messages").json()
    ai_stub.script({"status": 503})
    res = user.post(f"/chats/{chat['id']}/messages/regenerate")
    assert res.status == 503 and res.json()["detail"]
    assert user.get(f"/chats/{chat['id']}/messages").json() == before


def test_regenerate_needs_a_message_in_a_chat_of_ones_own(user, other_user):
    empty = user.new_chat("Empty")
    assert user.post(f"/chats/{empty['id']}/messages/regenerate").status == 404
    assert user.post(f"/chats/{uuid.uuid4()}/messages/regenerate").status == 404
    theirs = other_user.new_chat("Theirs")
    other_user.post(f"/chats/{theirs['id']}/messages", json={"content": "mine"})
    res = user.post(f"/chats/{theirs['id']}/messages/regenerate")
    assert res.status == 404 and isinstance(res.json()["detail"], str)


def test_of_two_regenerates_racing_for_one_reply_only_one_lands(user, ai_stub, sql):
    """Both read the same old reply; the first replaces it, the second must store nothing
    (its usage still counts) rather than leave the chat with two answers."""
    import asyncio
    import uuid as uuidlib

    from shared.models import add_bot_reply

    chat = user.new_chat("Race")
    old = user.post(f"/chats/{chat['id']}/messages", json={"content": "question"}).json()["ai_response"]
    assert user.post(f"/chats/{chat['id']}/messages/regenerate").status == 200  # the first replaces `old`
    late = asyncio.new_event_loop().run_until_complete(add_bot_reply(
        uuidlib.UUID(chat["id"]), uuidlib.UUID(user.id), "the late answer", {}, [], replaces=uuidlib.UUID(old["id"])))
    assert late is None
    bots = sql("SELECT content FROM messages WHERE chat_id = %s AND type = 'bot'", (chat["id"],))
    assert len(bots) == 1 and bots[0][0] != "the late answer"
