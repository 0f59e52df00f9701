"""Chats through the chats function's Lambda handler."""
from __future__ import annotations

import uuid


def test_create_get_rename_delete(user, sql):
    chat = user.new_chat("  Trip to Lisbon ")
    assert chat["title"] == "Trip to Lisbon" and chat["user_id"] == user.id and chat["messages"] == []
    got = user.get(f"/chats/{chat['id']}")
    assert got.status == 200 and got.json()["id"] == chat["id"]

    renamed = user.patch(f"/chats/{chat['id']}", json={"title": "Lisbon, May"})
    assert renamed.status == 200 and renamed.json()["title"] == "Lisbon, May"

    gone = user.delete(f"/chats/{chat['id']}")
    assert gone.status == 200
    assert gone.json() == {"success": True, "message": "Chat deleted", "data": {"chat_id": chat["id"]}}
    assert user.get(f"/chats/{chat['id']}").status == 404
    assert sql("SELECT count(*) FROM chats WHERE id = %s", (chat["id"],))[0][0] == 0


def test_list_is_latest_activity_first_with_true_total(user, ai_stub):
    ids = [user.new_chat(f"chat {i}")["id"] for i in range(5)]
    # Activity on the oldest chat moves it to the top.
    assert user.post(f"/chats/{ids[0]}/messages", json={"content": "hello"}).status == 200
    page = user.get("/chats", query={"limit": 2, "offset": 0}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0
    assert [c["id"] for c in page["chats"]] == [ids[0], ids[4]]
    rest = user.get("/chats", query={"limit": 2, "offset": 4}).json()
    assert rest["total"] == 5 and [c["id"] for c in rest["chats"]] == [ids[1]]
    beyond = user.get("/chats", query={"offset": 50}).json()
    assert beyond["total"] == 5 and beyond["chats"] == []


def test_title_validation(user):
    for title in ("", "   ", "x" * 501, None, 5):
        res = user.post("/chats", json={"title": title})
        assert res.status == 422, title
        assert "title" in res.json()["detail"]
    assert user.post("/chats", json={"title": "x" * 500}).status == 201
    assert user.post("/chats", json={"title": "Robert'); DROP TABLE chats;--"}).json()["title"] == "Robert'); DROP TABLE chats;--"


def test_limit_and_offset_bounds(user):
    for query in ({"limit": 0}, {"limit": 201}, {"limit": -1}, {"limit": "ten"}, {"offset": -1}, {"offset": "x"}):
        res = user.get("/chats", query=query)
        assert res.status == 422, query
        assert isinstance(res.json()["detail"], str)
    assert user.get("/chats", query={"limit": 200}).status == 200


def test_unknown_and_malformed_ids(user):
    assert user.get(f"/chats/{uuid.uuid4()}").status == 404
    res = user.get("/chats/not-a-uuid")
    assert res.status == 422 and "chat_id" in res.json()["detail"]


def test_other_users_chat_is_404_on_every_route(user, other_user, sql):
    chat = user.new_chat("mine")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "private words"})
    cid = chat["id"]
    attempts = [
        ("GET", f"/chats/{cid}", None),
        ("PATCH", f"/chats/{cid}", {"title": "stolen"}),
        ("DELETE", f"/chats/{cid}", None),
        ("POST", f"/chats/{cid}/name", {"message": "rename it"}),
        ("GET", f"/chats/{cid}/messages", None),
        ("POST", f"/chats/{cid}/messages", {"content": "injected"}),
    ]
    for method, path, body in attempts:
        res = other_user.request(method, path, json=body)
        assert res.status == 404, (method, path, res.status)
        assert res.json()["detail"] == "Chat not found"
    after = user.get(f"/chats/{cid}").json()
    assert after["title"] != "stolen"
    assert [m["content"] for m in after["messages"]][0] == "private words"
    assert sql("SELECT count(*) FROM messages WHERE chat_id = %s", (cid,))[0][0] == 2
    assert other_user.get("/chats").json()["total"] == 0


def test_name_endpoint_renames_the_chat(user, ai_stub):
    chat = user.new_chat("Untitled")
    ai_stub.script({"reply": "Packing List For Iceland"})
    res = user.post(f"/chats/{chat['id']}/name", json={"message": "What should I pack for Iceland in March?"})
    assert res.status == 200
    assert res.json()["suggested_name"] == "Packing List For Iceland"
    assert user.get(f"/chats/{chat['id']}").json()["title"] == "Packing List For Iceland"


def test_name_falls_back_to_the_message_when_the_ai_fails(user, ai_stub):
    chat = user.new_chat("Untitled")
    ai_stub.script({"status": 500, "message": "boom"})
    res = user.post(f"/chats/{chat['id']}/name", json={"message": "Budget for the kitchen renovation"})
    assert res.status == 200
    name = res.json()["suggested_name"]
    assert name and "Budget" in name and len(name) <= 60
