"""What the AI sees: the latest turns within the token budget, the new message once, the text of
attached files (the user's own only) cut to their share with a note; and chat titles."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from shared import ai, context
from shared.models import File


def add_history(sql, chat_id, count: int, size: int = 0) -> None:
    """`count` stored turns, alternating user and bot, numbered from 1 (padded to `size` chars)."""
    rows = [(str(uuid.uuid4()), chat_id, "user" if i % 2 else "bot", f"turn {i} ".ljust(size, "x"))
            for i in range(1, count + 1)]
    sql("INSERT INTO messages (id, chat_id, type, content) SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[])",
        ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]))


def sent_turns(ai_stub) -> list[str]:
    return [m["content"] for m in ai_stub.requests[0]["messages"] if m["role"] != "system"]


def test_the_200th_message_is_answered_with_the_latest_turns(user, ai_stub, sql):
    chat = user.new_chat("Long chat")
    add_history(sql, chat["id"], 199)
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "message 200"})
    assert res.status == 200 and res.json()["chat_name"] is None
    turns = sent_turns(ai_stub)
    assert turns[-1] == "message 200" and turns.count("message 200") == 1
    numbers = [int(t.split()[1]) for t in turns[:-1]]
    assert numbers == list(range(numbers[0], 200)) and numbers[-1] == 199  # the latest, in order, no gaps
    assert 1 not in numbers
    roles = [m["role"] for m in ai_stub.requests[0]["messages"][1:-1]]
    assert roles == ["user" if n % 2 else "assistant" for n in numbers]


def test_history_is_cut_to_the_token_budget(user, ai_stub, sql, setting):
    setting(AI_CONTEXT_TOKENS=1000)
    chat = user.new_chat("Budget")
    add_history(sql, chat["id"], 30, size=400)  # about 100 tokens a turn
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "newest"}).status == 200
    sent = ai_stub.requests[0]["messages"]
    numbers = [int(t.split()[1]) for t in sent_turns(ai_stub)[:-1]]
    assert numbers and numbers[-1] == 30 and numbers == list(range(numbers[0], 31))
    assert len(numbers) < 10  # about nine turns of 100 tokens would not leave room for the rest
    assert sum(ai.estimate_tokens(m["content"]) for m in sent) <= 1000


def make_file(user_id, text, name="notes.txt", **kw) -> File:
    loop = asyncio.new_event_loop()  # not asyncio.run: that would unset the main thread's loop
    try:
        return loop.run_until_complete(File.create(uuid.UUID(user_id), name, "text/plain", f"u/{uuid.uuid4()}",
                                                   len(text or ""), status="processed", processed=True,
                                                   extracted_text=text, **kw))
    finally:
        loop.close()


def test_file_url_puts_the_files_text_into_the_context(user, ai_stub):
    f = make_file(user.id, "The secret word is BANANA.")
    chat = user.new_chat("File")
    res = user.post(f"/chats/{chat['id']}/messages",
                    json={"content": "What is the secret word?", "file_name": "notes.txt",
                          "file_url": f"/files/{f.id}/download"})
    assert res.status == 200, res.text
    assert res.json()["user_message"]["file_url"] == f"/files/{f.id}/download"
    systems = [m["content"] for m in ai_stub.requests[0]["messages"] if m["role"] == "system"]
    assert any("The secret word is BANANA." in s and "notes.txt" in s for s in systems)


def test_file_text_is_cut_to_its_share_with_a_note(user, ai_stub, setting):
    setting(AI_CONTEXT_TOKENS=2000, AI_FILE_CONTEXT_SHARE=0.5)
    long = make_file(user.id, "long text " * 2000, name="long.txt")
    short = make_file(user.id, "short and whole", name="short.txt", text_truncated=True)
    chat = user.new_chat("Files")
    res = user.post(f"/chats/{chat['id']}/messages",
                    json={"content": "Summarise", "file_ids": [str(long.id), str(short.id)]})
    assert res.status == 200, res.text
    docs = next(m["content"] for m in ai_stub.requests[0]["messages"] if "Documents" in m["content"])
    assert docs.count(context.CUT_NOTE) == 2  # the long one cut here, the short one cut at extraction
    assert "short and whole" in docs and ai.estimate_tokens(docs) <= 1000 + 50


def test_someone_elses_or_an_unknown_file_is_404_and_nothing_is_stored(user, other_user, ai_stub, sql):
    theirs = make_file(other_user.id, "private")
    chat = user.new_chat("Nope")
    for body in ({"file_url": f"/files/{theirs.id}/download"}, {"file_ids": [str(theirs.id)]},
                 {"file_ids": [str(uuid.uuid4())]}, {"file_url": "/files/not-a-file/download"}):
        res = user.post(f"/chats/{chat['id']}/messages", json={"content": "read it", **body})
        assert res.status == 404 and res.json()["detail"] == "File not found", body
        assert user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "read it", **body}).status == 404
    assert sql("SELECT count(*) FROM messages WHERE chat_id = %s", (chat["id"],))[0][0] == 0
    assert ai_stub.requests == []


FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467"  # one grapheme, five code points
FLAG = "\U0001F1EB\U0001F1F7"  # France: two regional indicators
THUMB = "\U0001F44D\U0001F3FD"  # thumbs up, medium skin tone


@pytest.mark.parametrize("raw, expected", [
    ('"Trip to Paris."', "Trip to Paris"),
    ("Title: Budget review", "Budget review"),
    ("  ", "Fallback words here"),
    ("word " * 30, ("word " * 12).strip()),  # cut between words
])
def test_clean_title(raw, expected):
    assert ai.clean_title(raw, "Fallback words here") == expected


@pytest.mark.parametrize("tail", [FAMILY, FLAG, THUMB, "e\u0301\u0301", "\u2764\ufe0f"])
@pytest.mark.parametrize("start", range(54, 61))
def test_titles_never_split_a_grapheme(tail, start):
    raw = "x" * start + tail * 3
    title = ai.clean_title(raw, "fallback")
    assert raw.startswith(title) and start <= len(title) <= ai.TITLE_MAX_CHARS
    assert (len(title) - start) % len(tail) == 0  # whole graphemes only
    assert len(title) == len(raw) or not ai._joins_previous(raw, len(title))


def test_title_falls_back_to_the_first_words_when_the_ai_fails(user, ai_stub):
    chat = user.new_chat("New chat")
    ai_stub.script({"reply": "an answer"}, {"status": 500})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "Plan my   weekend in Lisbon " + FAMILY * 30})
    name = res.json()["chat_name"]
    assert name.startswith("Plan my weekend in Lisbon") and len(name) <= 60
    assert user.get(f"/chats/{chat['id']}").json()["title"] == name


def test_name_endpoint_renames_and_records_usage(user, ai_stub, sql):
    chat = user.new_chat("Unnamed")
    f = make_file(user.id, "quarterly numbers", name="q3.pdf")
    ai_stub.script({"reply": "Quarterly Numbers Review"})
    res = user.post(f"/chats/{chat['id']}/name", json={"message": "look at my numbers", "file_ids": [str(f.id)]})
    assert res.status == 200 and res.json()["suggested_name"] == "Quarterly Numbers Review"
    assert "q3.pdf" in ai_stub.requests[0]["messages"][-1]["content"]
    assert user.get(f"/chats/{chat['id']}").json()["title"] == "Quarterly Numbers Review"
    assert sql("SELECT operation FROM ai_usage WHERE chat_id = %s", (chat["id"],)) == [("title",)]
    assert user.post(f"/chats/{chat['id']}/name", json={"message": "x", "file_ids": [str(uuid.uuid4())]}).status == 404


def test_a_regenerate_sees_the_files_the_message_named_by_file_ids(user, ai_stub):
    """Files named by file_ids (not only file_url) are stored with the message, so a regenerated
    answer is given with the same documents as the first one."""
    chat = user.new_chat("Docs")
    by_id = make_file(user.id, "The boiler was serviced in March.", name="boiler.txt")
    by_url = make_file(user.id, "The roof was repaired in June.", name="roof.txt")
    sent = user.post(f"/chats/{chat['id']}/messages", json={
        "content": "When was maintenance done?", "file_ids": [str(by_id.id)],
        "file_url": f"/files/{by_url.id}/download"})
    assert sent.status == 200
    assert set(sent.json()["user_message"]["file_ids"]) == {str(by_id.id), str(by_url.id)}
    ai_stub.reset()
    assert user.post(f"/chats/{chat['id']}/messages/regenerate").status == 200
    system = " ".join(m["content"] for m in ai_stub.requests[0]["messages"] if m["role"] == "system")
    assert "serviced in March" in system and "repaired in June" in system
