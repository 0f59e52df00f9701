"""Authorization matrix: every route with a path parameter in template.yaml's route table, called
by another user on the owner's resource, answers 404 (never 403, never the data) and leaves the
owner's data as it was. A new route with an id is in the matrix the moment it is in the template."""
from __future__ import annotations

from tests.openapi_doc import merged_openapi, resolve
from tests.test_bad_input import _body_schema, _valid_body, snapshot

# How to make, for the owner, the resource a path parameter names. A route whose parameter is
# missing here fails the test below, so nobody can add an id route without adding it here.
MAKERS = {
    "chat_id": lambda owner: owner.new_chat("owner's chat")["id"],
}


def test_another_user_gets_404_on_every_route_with_an_id(api, user, other_user, sql, ai_stub):
    doc = merged_openapi(api.functions)
    chat_id = MAKERS["chat_id"](user)
    assert user.post(f"/chats/{chat_id}/messages", json={"content": "private words"}).status == 200
    ids = {"chat_id": chat_id}
    before = snapshot(sql, user.id)
    checked = []
    for route in api.functions.template.routes:
        params = [seg[1:-1] for seg in route.segments if seg.startswith("{")]
        if not params:
            continue
        missing = [p for p in params if p not in MAKERS]
        assert not missing, f"{route.route_key}: add a maker for {missing} to MAKERS"
        path = route.path
        for p in params:
            path = path.replace("{" + p + "}", ids[p])
        operation = doc["paths"][route.path][route.method.lower()]
        schema = _body_schema(doc, operation)
        body = _valid_body(doc, schema) if schema else None
        for intruder in ({"cookies": [other_user.cookie]}, {"cookies": [], "token": other_user.token}):
            res = other_user.request(route.method, path, json=body, **intruder)
            assert res.status == 404, (route.route_key, res.status, res.text)
            assert isinstance(res.json()["detail"], str)
            assert "private words" not in res.text and chat_id not in res.json()["detail"]
        checked.append(route.route_key)
    assert snapshot(sql, user.id) == before
    assert user.get(f"/chats/{chat_id}").status == 200
    assert len(checked) >= 6, checked


def test_lists_never_show_another_users_rows(user, other_user):
    mine = user.new_chat("mine only")
    listed = other_user.get("/chats").json()
    assert listed["total"] == 0 and all(c["id"] != mine["id"] for c in listed["chats"])
