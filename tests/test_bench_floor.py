"""The benchmark's floor replays the SQL the product sends (bench/floor.py captures it from a real
request). When a product statement gains a parameter, the floor must follow, or `make bench`
breaks; this test runs each floor route once on the product's own captured SQL."""
from __future__ import annotations

import json

from bench import floor
from local import apigw
from tests.lambda_client import Context


def _floor(method: str, path: str, template: str, user, body: dict | None = None) -> dict:
    route = apigw.Route(method, template, "floor")
    params = {"chat_id": path.split("/")[2]} if "{chat_id}" in template else None
    event = apigw.build_event(method, path, [("cookie", user.cookie), ("content-type", "application/json")],
                              json.dumps(body).encode() if body else b"", route=route, path_parameters=params)
    return floor.handler(event, Context())


def test_every_floor_route_runs_the_products_current_sql(user, ai_stub):
    chat = user.new_chat("Floor")
    cid = chat["id"]
    cases = [
        ("GET /users/me", "GET", "/users/me", "/users/me", None),
        ("GET /chats", "GET", "/chats", "/chats", None),
        ("GET /chats/{id}/messages", "GET", f"/chats/{cid}/messages", "/chats/{chat_id}/messages", None),
        ("POST /chats", "POST", "/chats", "/chats", {"title": "from the floor"}),
        ("POST /chats/{id}/messages", "POST", f"/chats/{cid}/messages", "/chats/{chat_id}/messages",
         {"content": "Is the floor in step?"}),
    ]
    for endpoint, method, path, template, body in cases:
        floor.capture(endpoint, lambda: user.request(method, path, json=body))
        assert floor.SQL[endpoint], endpoint
        result = _floor(method, path, template, user, body)
        assert result["statusCode"] in (200, 201), (endpoint, result.get("body"))
