"""What the speed work promises, checked without timing anything: round trips per request
(counted by shared.db), the session check folded into each read, the kept chat count, and both
DB_OFFLOAD paths."""
import pytest

from shared import db
from shared.settings import get_settings
from tests.test_ai_context import make_file


def round_trips(call):
    before = db.statements_sent
    res = call()
    assert res.status < 300, res.text
    return db.statements_sent - before


def test_round_trips_per_request(user, ai_stub):
    chat = user.new_chat()
    path = f"/chats/{chat['id']}"
    user.post(f"{path}/messages", json={"content": "first, so the chat has a title"})
    file = make_file(user.id, "some text")
    # authenticated reads: the session check rides in the read's own statement
    assert round_trips(lambda: user.get("/users/me")) == 1
    assert round_trips(lambda: user.get("/chats")) == 1
    assert round_trips(lambda: user.get(path)) == 1
    assert round_trips(lambda: user.get(f"{path}/messages")) == 1
    assert round_trips(lambda: user.get("/files")) == 1
    assert round_trips(lambda: user.get(f"/files/{file.id}")) == 1
    assert round_trips(lambda: user.get("/usage")) == 1
    assert round_trips(lambda: user.post("/chats", json={"title": "t"})) == 1
    # the session, the user's turn (with its quota reservation and history), the reply with its
    # usage and the quota's settlement
    assert round_trips(lambda: user.post(f"{path}/messages", json={"content": "again"})) == 3
    # the session, the last exchange, the quota reservation, the new reply replacing the old
    assert round_trips(lambda: user.post(f"{path}/messages/regenerate")) == 4


@pytest.mark.parametrize("path", ["/files", "/files/{file}", "/usage"])
def test_folded_check_on_files_and_usage_refuses_an_ended_session(user, sql, path):
    file = make_file(user.id, "text")
    sql("UPDATE chat_sessions SET is_active = false WHERE user_id = %s", (user.id,))
    res = user.get(path.replace("{file}", str(file.id)))
    assert res.status == 401 and res.json()["detail"] == "Session has ended; please log in again"


def test_files_page_past_the_end_keeps_the_total(user, other_user):
    make_file(user.id, "mine")
    make_file(other_user.id, "theirs")
    res = user.get("/files", query={"offset": 3})
    assert res.status == 200 and res.json() == [] and res.headers["x-total-count"] == "1"
    assert other_user.get(f"/files/{make_file(user.id, 'x').id}").status == 404


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/chats", None), ("GET", "/chats/{id}", None), ("GET", "/chats/{id}/messages", None),
    ("POST", "/chats", {"title": "after logout"}),
])
def test_folded_session_check_refuses_an_ended_session(user, sql, method, path, body):
    chat = user.new_chat()
    sql("UPDATE chat_sessions SET is_active = false WHERE user_id = %s", (user.id,))
    res = user.request(method, path.replace("{id}", chat["id"]), json=body)
    assert res.status == 401 and res.json()["detail"] == "Session has ended; please log in again"
    assert sql("SELECT count(*) FROM chats WHERE user_id = %s", (user.id,))[0][0] == 1


def test_deactivated_user_is_refused_by_the_folded_check(user, sql):
    sql("UPDATE users SET is_active = false WHERE id = %s", (user.id,))
    assert user.get("/chats").status == 401


def test_empty_chat_and_page_past_the_end(user):
    chat = user.new_chat()
    assert user.get(f"/chats/{chat['id']}/messages").json() == []
    assert user.get(f"/chats/{chat['id']}").json()["messages"] == []
    page = user.get("/chats", query={"offset": 5}).json()
    assert page["chats"] == [] and page["total"] == 1


def test_chat_count_follows_inserts_and_deletes(user, other_user, sql):
    ids = [user.new_chat(f"c{i}")["id"] for i in range(3)]
    other_user.new_chat()
    assert user.delete(f"/chats/{ids[0]}").status == 200
    assert user.get("/chats").json()["total"] == 2
    assert sql("SELECT chat_count FROM users WHERE id = %s", (user.id,))[0][0] == 2
    sql("DELETE FROM users WHERE id = %s", (other_user.id,))  # the cascade leaves no error behind


def test_thread_offload_serves_the_same_answers(user, ai_stub, setting):
    setting(DB_OFFLOAD="thread")
    assert get_settings().db_offload == "thread"
    chat = user.new_chat()
    sent = user.post(f"/chats/{chat['id']}/messages", json={"content": "hello"})
    assert sent.status == 200, sent.text
    assert [m["type"] for m in user.get(f"/chats/{chat['id']}/messages").json()] == ["user", "bot"]
    assert user.get("/chats").json()["total"] == 1
    assert round_trips(lambda: user.get("/chats")) == 1


def test_db_offload_must_be_inline_or_thread(setting):
    setting(DB_OFFLOAD="threads")
    with pytest.raises(ValueError, match="DB_OFFLOAD"):
        get_settings()
