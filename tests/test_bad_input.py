"""Bad input, everywhere: every route of template.yaml gets wrong input derived from its own
OpenAPI description, through the real Lambda handlers. Every answer is a 4xx JSON error with a
string `detail`, and the user's data is exactly as it was afterwards. Valid but nasty text
(emoji, right-to-left marks, SQL and path metacharacters) is stored verbatim."""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import pytest

from local import apigw
from tests.openapi_doc import merged_openapi, resolve

SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON text (json.dumps would refuse to make it)
NASTY = [
    "😀👩‍👩‍👧 emoji", "\u202eright-to-left override\u202c", "עברית ومرحبا \u200f", "'; DROP TABLE users; --",
    "\" OR 1=1 --", "../../etc/passwd", "%00%27", "C:\\Windows\\system32", "<script>alert(1)</script>",
    "${jndi:ldap://x}", "\\u0000 as text", "\u200b\ufeff zero width",
]
TABLES = ["users", "chat_sessions", "chats", "messages", "files", "ai_usage"]


def _make_file(owner) -> str:
    from tests import files_util

    body, headers = files_util.multipart("private.txt", b"private words", "text/plain")
    res = owner.post("/files/upload", body=body, headers=headers)
    assert res.status == 201, res.text
    return res.json()["id"]


# How to make, for an owner, the resource each path parameter of the route table names. The
# authorization matrix fails for a route whose parameter is missing here, so a new route with an
# id cannot be added without being attacked too.
MAKERS = {
    "chat_id": lambda owner: owner.new_chat("owner's chat")["id"],
    "file_id": _make_file,
}


def owned_ids(owner) -> dict[str, str]:
    return {name: make(owner) for name, make in MAKERS.items()}


def fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def _doc(api) -> dict[str, Any]:
    if not hasattr(api, "_openapi"):
        api._openapi = merged_openapi(api.functions)
    return api._openapi


def _routes(api):
    doc = _doc(api)
    return [(r, doc["paths"][r.path][r.method.lower()]) for r in api.functions.template.routes]


def _body_schema(doc, operation) -> dict[str, Any] | None:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(doc, body["schema"]) if body else None


def _branch(doc, prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional property."""
    for option in prop.get("anyOf", [prop]):
        option = resolve(doc, option)
        if option.get("type") != "null":
            return option
    return prop


def _valid_value(name: str, schema: dict[str, Any]) -> Any:
    if "email" in name:
        return f"probe-{uuid.uuid4().hex[:8]}@example.com"
    if "password" in name:
        return "probe-password-1"
    return {"string": "Probe text", "integer": 1, "array": [], "object": {}, "boolean": True}.get(schema.get("type"), "x")


def _valid_body(doc, schema) -> dict[str, Any]:
    return {n: _valid_value(n, _branch(doc, schema["properties"][n])) for n in schema.get("required", [])}


def _raw(body: dict[str, Any], field: str, json_text: str) -> str:
    """The body as JSON text with `field` set to the given JSON text, verbatim."""
    rest = json.dumps({k: v for k, v in body.items() if k != field})
    return ("{" + json.dumps(field) + ": " + json_text + (", " + rest[1:] if rest != "{}" else "}"))


def bad_bodies(doc, schema) -> Iterator[tuple[str, str]]:
    """(label, JSON text) pairs: each one wrong in one way, the rest of the body valid."""
    valid = _valid_body(doc, schema)
    for label, text in [("malformed JSON", '{"a": '), ("truncated JSON", json.dumps(valid)[:-1]),
                        ("JSON null", "null"), ("JSON array", "[]"), ("JSON string", '"x"'), ("JSON number", "7"),
                        ("empty body", ""), ("not JSON at all", "<xml/>"), ("NaN literal", "NaN"),
                        ("deep nesting", "[" * 5000 + "]" * 5000), ("huge integer", "9" * 5000)]:
        yield label, text
    for name in schema.get("required", []):
        yield f"missing {name}", json.dumps({k: v for k, v in valid.items() if k != name})
    for name, prop in schema["properties"].items():
        prop = _branch(doc, prop)
        kind = prop.get("type")
        wrong = {"string": ["123", "true", "[]", "{}"], "array": ['"x"', "{}", "[1, 2]"],
                 "object": ['"x"', "[1]", "3"], "integer": ['"x"', "1.5"]}.get(kind, [])
        for text in wrong:
            yield f"{name} wrong type {text}", _raw(valid, name, text)
        if kind == "string":
            yield f"{name} NUL byte", _raw(valid, name, json.dumps("a\x00b"))
            yield f"{name} lone surrogate", _raw(valid, name, SURROGATE)
            yield f"{name} beyond its limit", _raw(valid, name, json.dumps("x" * (prop.get("maxLength", 100_000) + 1)))
            if prop.get("minLength", 0) >= 1 or name in schema.get("required", []):
                yield f"{name} empty", _raw(valid, name, '""')
                yield f"{name} blank", _raw(valid, name, '"   "')
        if kind == "array" and prop.get("items", {}).get("format") == "uuid":
            yield f"{name} non-UUID item", _raw(valid, name, '["not-a-uuid"]')
            yield f"{name} too many", _raw(valid, name, json.dumps([str(uuid.uuid4())] * (prop.get("maxItems", 10) + 1)))
        if kind == "object":
            for label, text in [("NUL value", '{"a": "\\u0000"}'), ("NUL key", '{"\\u0000": 1}'),
                                ("surrogate value", '{"a": ' + SURROGATE + "}"), ("surrogate key", "{" + SURROGATE + ": 1}"),
                                ("Infinity", '{"a": Infinity}'), ("NaN", '{"a": NaN}'), ("overflowing float", '{"a": 1e400}'),
                                ("too deep", '{"a": ' + "[" * 40 + "]" * 40 + "}"),
                                ("too big", json.dumps({"a": "x" * 20_000})),
                                ("nested NUL", '{"a": [{"b": ["\\u0000"]}]}')]:
                yield f"{name} {label}", _raw(valid, name, text)


def bad_queries(operation) -> Iterator[tuple[str, str]]:
    for param in operation.get("parameters", []):
        if param["in"] != "query":
            continue
        name, schema = param["name"], param["schema"]
        values = ["-1", "abc", "1.5", "", "%00", "1e3", "0x10", "%ED%A0%80", "9" * 40, "+-1"]
        if "minimum" in schema:
            values.append(str(schema["minimum"] - 1))
        if "maximum" in schema:
            values.append(str(schema["maximum"] + 1))
        for value in values:
            yield f"{name}={value}", f"{name}={value}"


JUNK_BODIES = [  # (label, (content type, body)): whatever the route expects, these are not it
    ("text/plain", ("text/plain", "hello")),
    ("multipart without boundary", ("multipart/form-data", "--x\r\n")),
    ("multipart, wrong part name", ("multipart/form-data; boundary=b",
                                    '--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n')),
    ("multipart, truncated", ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="file"')),
    ("binary", ("application/octet-stream", b"\x00\xff\xfe\x89PNG")),
    ("form", ("application/x-www-form-urlencoded", "a=1&b=%00")),
]
BAD_IDS = ["not-a-uuid", "%00", "..%2F..%2Fetc%2Fpasswd", "1", "' OR '1'='1", "%ED%A0%80",
           "00000000-0000-0000-0000-00000000000g", "x" * 300]


def _needs_a_body(prober, route) -> bool:
    """A route that refuses an empty body (e.g. a multipart upload the OpenAPI does not describe),
    found out by a throwaway user on its own resources."""
    if not hasattr(prober, "ids"):
        prober.ids = owned_ids(prober)
    # 415/422 is a refused body; a 404/409 means the route takes no body but had nothing to act on.
    return prober.request(route.method, fill(route.path, prober.ids)).status in (415, 422)


def snapshot(sql, user_id: str) -> dict[str, Any]:
    """Everything of the user's, and how many rows every table has."""
    return {
        "counts": {t: sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES},
        "user": sql("SELECT name, email, password_hash, is_active, updated_at FROM users WHERE id = %s", (user_id,)),
        "chats": sql("SELECT id, title, updated_at FROM chats WHERE user_id = %s ORDER BY id", (user_id,)),
        "messages": sql("SELECT m.id, m.content, m.file_name, m.file_url, m.metadata::text FROM messages m "
                        "JOIN chats c ON c.id = m.chat_id WHERE c.user_id = %s ORDER BY m.id", (user_id,)),
        "sessions": sql("SELECT id, is_active FROM chat_sessions WHERE user_id = %s ORDER BY id", (user_id,)),
        "files": sql("SELECT id, original_name, s3_key, status, file_size FROM files WHERE user_id = %s ORDER BY id",
                     (user_id,)),
    }


def _check(res, label):
    assert 400 <= res.status < 500, (label, res.status, res.text[:300])
    body = res.json()
    assert isinstance(body.get("detail"), str) and body["detail"], (label, res.text[:300])
    assert "Traceback" not in res.text and "psycopg2" not in res.text and "SELECT" not in res.text, label


def test_bad_input_on_every_route_is_a_4xx_and_changes_nothing(api, user, sql, ai_stub):
    ids, prober = owned_ids(user), api.new_user()
    prober.ids = owned_ids(prober)
    chat = {"id": ids["chat_id"]}
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "keep this too"}).status == 200
    doc = _doc(api)
    before = snapshot(sql, user.id)
    sent, routes_seen = 0, set()
    for route, operation in _routes(api):
        path = fill(route.path, ids)
        schema = _body_schema(doc, operation)
        cases: list[tuple[str, str, str]] = []  # (label, path with query, body)
        if schema is not None:
            cases += [(label, path, text) for label, text in bad_bodies(doc, schema)]
        cases += [(label, f"{path}?{query}", "") for label, query in bad_queries(operation)]
        if "{" in route.path:
            cases += [(f"id {bad!r}", fill(route.path, {k: bad for k in ids}),
                       json.dumps(_valid_body(doc, schema) if schema else {})) for bad in BAD_IDS]
        if route.method in ("POST", "PATCH", "PUT") and (schema is not None or _needs_a_body(prober, route)):
            cases += [(f"junk body {label}", path, body) for label, body in JUNK_BODIES]
        for label, target, text in cases:
            content_type = "application/json"
            if isinstance(text, tuple):
                content_type, text = text
            res = user.request(route.method, target.split("?")[0], body=text,
                               query=target.split("?", 1)[1] if "?" in target else None,
                               headers={"content-type": content_type})
            _check(res, (route.route_key, label))
            sent += 1
        routes_seen.add(route.route_key)
    assert routes_seen == {r.route_key for r in api.functions.template.routes}
    assert snapshot(sql, user.id) == before
    assert user.get(f"/chats/{chat['id']}/messages").status == 200
    print(f"\nbad input: {sent} requests over {len(routes_seen)} routes")
    assert sent > 300


def test_unknown_ids_are_404_on_every_route_with_an_id(api, user, sql):
    owned_ids(user)
    before = snapshot(sql, user.id)
    doc = _doc(api)
    for route, operation in _routes(api):
        if "{" not in route.path:
            continue
        schema = _body_schema(doc, operation)
        res = user.request(route.method, fill(route.path, {k: str(uuid.uuid4()) for k in MAKERS}),
                           json=_valid_body(doc, schema) if schema else None)
        assert res.status == 404 and isinstance(res.json()["detail"], str), (route.route_key, res.text)
    assert snapshot(sql, user.id) == before


def test_every_string_field_declares_a_limit(api):
    """A string with no documented bound is how 'beyond the column's limit' slips through."""
    doc = _doc(api)
    for route, operation in _routes(api):
        schema = _body_schema(doc, operation)
        for name, prop in (schema or {}).get("properties", {}).items():
            prop = _branch(doc, prop)
            if prop.get("type") == "string":
                assert "maxLength" in prop or "enum" in prop or prop.get("format") in ("uuid", "date-time"), \
                    (route.route_key, name)


def test_wrong_methods_and_unknown_paths_reach_a_function_as_json_errors(api):
    """API Gateway answers these itself; a function that receives one anyway still answers JSON."""
    tpl = api.functions.template
    sent = 0
    for function in {r.function for r in tpl.routes}:  # the HTTP functions (not the S3-event processor)
        paths = {r.path for r in tpl.routes if r.function == function}
        for path in paths:
            concrete = fill(path, {k: str(uuid.uuid4()) for k in MAKERS})
            allowed = {r.method for r in tpl.routes if r.path == path}
            for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed:
                res = api.invoke(apigw.build_event(method, concrete, [], b""), function)
                # 405, or what a parameter route that happens to match says (DELETE /files/upload
                # is DELETE /files/{file_id} to API Gateway too): a 4xx JSON error either way
                assert 400 <= res.status < 500 and isinstance(res.json()["detail"], str), (function, method, path)
                sent += 1
        for path in ["/nope", "/chats/x/y/z", "/users/me/../../admin", "/%00", "/" + "a" * 5000]:
            res = api.invoke(apigw.build_event("GET", path, [], b""), function)
            assert res.status == 404 and isinstance(res.json()["detail"], str), (function, path)
            sent += 1
    # and through the route table, as API Gateway would
    assert api.request("GET", "/definitely/not/a/route").status == 404
    assert api.request("PUT", "/chats").status == 404
    assert sent > 20


def test_non_json_content_types_and_bodies_are_4xx(api, user):
    for headers, body in [({"content-type": "text/plain"}, '{"title": "x"}'), ({}, '{"title": "x"}'),
                          ({"content-type": "application/json"}, b"\xff\xfe\x00"),
                          ({"content-type": "application/x-www-form-urlencoded"}, "title=x"),
                          ({"content-type": "multipart/form-data; boundary=z"}, "--z--")]:
        res = user.request("POST", "/chats", body=body, headers=headers)
        _check(res, headers)


@pytest.mark.parametrize("text", NASTY)
def test_nasty_but_valid_text_is_stored_verbatim(api, user, sql, ai_stub, text):
    chat = user.post("/chats", json={"title": text}).json()
    assert chat["title"] == text
    sent = user.post(f"/chats/{chat['id']}/messages",
                     json={"content": text, "file_name": text, "metadata": {text: [text, {"k": text}]}})
    assert sent.status == 200, sent.text
    message = sent.json()["user_message"]
    assert (message["content"], message["file_name"], message["metadata"]) == (text, text, {text: [text, {"k": text}]})
    stored = sql("SELECT content, file_name, metadata FROM messages WHERE id = %s", (message["id"],))[0]
    assert stored == (text, text, {text: [text, {"k": text}]})
    renamed = user.patch(f"/chats/{chat['id']}", json={"title": text + "!"})  # after the first message's AI title
    assert renamed.status == 200 and renamed.json()["title"] == text + "!"
    assert sql("SELECT title FROM chats WHERE id = %s", (chat["id"],))[0][0] == text + "!"
    me = user.patch("/users/me", json={"name": text})
    assert me.status == 200 and me.json()["name"] == text.strip()
    assert sql("SELECT count(*) FROM users")[0][0] > 0  # the tables are all still there
