"""A test client that invokes the functions' real Lambda handlers with API Gateway HTTP API
payload-2.0 events, the way the deployed API does (and the way the local runner does)."""
from __future__ import annotations

import json as jsonlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from local import apigw


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def cookie(self, name: str) -> SimpleCookie | None:
        for raw in self.cookies:
            jar = SimpleCookie()
            jar.load(raw)
            if name in jar:
                return jar
        return None


@dataclass
class Context:
    function_name: str = "iflychat-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:iflychat-test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class LambdaClient:
    def __init__(self, root: Path):
        self.functions = apigw.InProcess(root / "template.yaml")
        self.statuses: Counter[int] = Counter()  # every answer of this run, by status (conftest reports it)

    def invoke(self, event: dict[str, Any], function: str) -> Response:
        result = self.functions.handler(function)(event, Context())
        status, pairs, raw = apigw.to_http(result)
        self.statuses[status] += 1
        headers = {k.lower(): v for k, v in pairs if k.lower() != "set-cookie"}
        return Response(status, headers, list(result.get("cookies") or []), raw)

    def request(self, method: str, path: str, *, json: Any = None, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, query: dict[str, Any] | str | None = None,
                cookies: list[str] | None = None, token: str | None = None,
                source_ip: str = "127.0.0.1") -> Response:
        headers = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json)
            headers.setdefault("content-type", "application/json")
        if token:
            headers["authorization"] = f"Bearer {token}"
        raw_query = query if isinstance(query, str) else urlencode(query or {}, doseq=True)
        route, params, _ = self.functions.match(method, path)
        if route is None:
            return Response(404, {}, [], b'{"detail": "Not Found"}')
        pairs = list(headers.items()) + [("cookie", c) for c in cookies or []]
        event = apigw.build_event(
            method, f"{path}?{raw_query}" if raw_query else path, pairs,
            body.encode("utf-8") if isinstance(body, str) else (body or b""),
            route=route, path_parameters=params, source_ip=source_ip,
        )
        return self.invoke(event, route.function)

    def new_user(self, password: str = "correct horse battery") -> "UserSession":
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        reg = self.request("POST", "/auth/register", json={"name": "Test User", "email": email, "password": password})
        assert reg.status == 201, reg.text
        session = UserSession(self, email, password, reg.json()["data"]["user_id"])
        session.login()
        return session


class UserSession:
    """A logged-in user who sends the session cookie with every call, as the browser does."""

    def __init__(self, client: LambdaClient, email: str, password: str, user_id: str):
        self.client, self.email, self.password, self.id = client, email, password, user_id
        self.cookie: str | None = None
        self.token: str | None = None

    def login(self) -> Response:
        res = self.client.request("POST", "/auth/login", json={"email": self.email, "password": self.password})
        assert res.status == 200, res.text
        self.token = res.json()["access_token"]
        jar = res.cookie("iflychat_session")
        assert jar is not None, res.cookies
        self.cookie = f"iflychat_session={jar['iflychat_session'].value}"
        return res

    def request(self, method: str, path: str, **kw) -> Response:
        kw.setdefault("cookies", [self.cookie] if self.cookie else [])
        return self.client.request(method, path, **kw)

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw) -> Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    def new_chat(self, title: str = "A chat") -> dict:
        res = self.post("/chats", json={"title": title})
        assert res.status == 201, res.text
        return res.json()
