"""The models' own API (what the routes build on): create, get, page, update with its
allow-list, delete - on the real database."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.models import Chat, File, Message, User


@pytest.fixture
def run():
    loop = asyncio.new_event_loop()  # not asyncio.run: that would unset the loop Mangum uses
    yield loop.run_until_complete
    loop.close()


def test_user_chat_message_file_round_trip(run):
    email = f"Model-{uuid.uuid4().hex[:8]}@Example.com"
    user = run(User.create("Mo", email, "not-a-real-hash"))
    assert run(User.get_by_id(user.id)).email == email.lower()
    assert run(User.get_by_email(email.upper())).id == user.id

    first = run(Chat.create(user.id, "first"))
    second = run(Chat.create(user.id, "second"))
    assert run(Chat.get_by_id(first.id, user.id)).title == "first"
    assert run(Chat.get_by_id(first.id, uuid.uuid4())) is None  # someone else's: not found
    for i in range(3):
        run(Message.create(first.id, "user" if i % 2 == 0 else "bot", f"m{i}", metadata={"i": i}))
    chats, total = run(Chat.get_by_user(user.id, limit=1, offset=0))
    assert total == 2 and [c.id for c in chats] == [second.id]  # latest activity first: a page of one
    assert [m.content for m in run(first.get_messages(limit=2, offset=1))] == ["m1", "m2"]
    assert [m.metadata for m in run(Message.get_by_chat(first.id))] == [{"i": 0}, {"i": 1}, {"i": 2}]

    renamed = run(second.update(title="renamed"))
    assert renamed.title == "renamed" and run(Chat.get_by_id(second.id)).title == "renamed"
    with pytest.raises(ValueError, match="not updatable"):
        run(second.update(user_id=uuid.uuid4()))  # the allow-list: no caller-chosen columns

    file = run(File.create(user.id, "notes.txt", "text/plain", f"users/{user.id}/{uuid.uuid4()}", 5,
                           status="processed", processed=True, extracted_text="hello"))
    files, count = run(File.get_by_user(user.id))
    assert count == 1 and files[0].id == file.id and run(File.get_by_id(file.id)).extracted_text == "hello"

    assert run(second.delete()) is True and run(second.delete()) is False
    assert run(user.delete()) is True
    assert run(Chat.get_by_id(first.id)) is None and run(File.get_by_id(file.id)) is None  # cascaded
