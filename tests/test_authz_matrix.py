"""Authorization matrix: every route with a path parameter in template.yaml's route table, called
by another user on the owner's resource, answers 404 (never 403, never the data) and leaves the
owner's data as it was. A new route with an id is in the matrix the moment it is in the template."""
from __future__ import annotations

from tests.openapi_doc import merged_openapi
from tests.test_bad_input import MAKERS, _body_schema, _valid_body, fill, owned_ids, snapshot


def test_another_user_gets_404_on_every_route_with_an_id(api, user, other_user, sql, ai_stub):
    doc = merged_openapi(api.functions)
    ids = owned_ids(user)
    chat_id = ids["chat_id"]
    assert user.post(f"/chats/{chat_id}/messages", json={"content": "private words"}).status == 200
    before = snapshot(sql, user.id)
    checked = []
    for route in api.functions.template.routes:
        params = [seg[1:-1] for seg in route.segments if seg.startswith("{")]
        if not params:
            continue
        missing = [p for p in params if p not in MAKERS]
        assert not missing, f"{route.route_key}: add a maker for {missing} to MAKERS"
        path = fill(route.path, ids)
        operation = doc["paths"][route.path][route.method.lower()]
        schema = _body_schema(doc, operation)
        body = _valid_body(doc, schema) if schema else None
        for intruder in ({"cookies": [other_user.cookie]}, {"cookies": [], "token": other_user.token}):
            res = other_user.request(route.method, path, json=body, **intruder)
            assert res.status == 404, (route.route_key, res.status, res.text)
            assert isinstance(res.json()["detail"], str)
            assert "private words" not in res.text and not any(i in res.json()["detail"] for i in ids.values())
        checked.append(route.route_key)
    assert snapshot(sql, user.id) == before
    assert user.get(f"/chats/{chat_id}").status == 200 and user.get(f"/files/{ids['file_id']}").status == 200
    assert checked == [r.route_key for r in api.functions.template.routes if "{" in r.path]


def test_lists_never_show_another_users_rows(user, other_user):
    mine = user.new_chat("mine only")
    listed = other_user.get("/chats").json()
    assert listed["total"] == 0 and all(c["id"] != mine["id"] for c in listed["chats"])
