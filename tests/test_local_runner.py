"""The local tooling: template parsing and event building of local.run, local.ai_stub through the
real openai client, local.embedded_pg, and the runner end to end as a subprocess."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import openai
import psutil
import pytest

from local import embedded_pg
from local.ai_stub import AIStub
from local.apigw import REPO_ROOT, Route, build_event, load_template, match_route, to_http

SERVER_URL = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
USER = {"role": "user", "content": "hello there, stub"}

TEMPLATE = """
Parameters:
  FrontendOrigin: {Type: String, Default: "http://localhost:5173"}
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 30
    MemorySize: 512
    Environment:
      Variables:
        FRONTEND_ORIGIN: !Ref FrontendOrigin
Resources:
  HttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      StageName: !Ref Stage
      CorsConfiguration:
        AllowOrigins: [!Ref FrontendOrigin]
        AllowCredentials: true
        AllowHeaders: [Content-Type, Authorization]
        AllowMethods: [GET, POST]
        MaxAge: 600
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties: {LayerName: !Sub "x-${Stage}", ContentUri: shared/}
  Role:
    Type: AWS::IAM::Role
    Properties: {Arn: !GetAtt Other.Arn, Policy: !If [Cond, a, b]}
  ThingsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/things/
      Handler: app.handler
      Timeout: 60
      Events:
        List: {Type: HttpApi, Properties: {ApiId: !Ref HttpApi, Method: GET, Path: /things}}
        One: {Type: HttpApi, Properties: {ApiId: !Ref HttpApi, Method: get, Path: "/things/{thing_id}"}}
        Mine: {Type: HttpApi, Properties: {ApiId: !Ref HttpApi, Method: GET, Path: /things/mine}}
        Queue: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
  NotAnApi:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/worker/, Handler: app.handler}
"""


# ---- template.yaml --------------------------------------------------------------------------
def test_template_parsing_reads_routes_functions_and_cors(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    tpl = load_template(tmp_path / "template.yaml", env={})
    assert set(tpl.functions) == {"ThingsFunction"}
    fn = tpl.functions["ThingsFunction"]
    assert fn.code_dir == (tmp_path / "functions/things").resolve()
    assert (fn.handler, fn.timeout, fn.memory_mb) == ("app.handler", 60.0, 512)
    assert sorted(r.route_key for r in tpl.routes) == ["GET /things", "GET /things/mine", "GET /things/{thing_id}"]
    assert tpl.cors.allow_origins == ("http://localhost:5173",)
    assert tpl.cors.allow_credentials is True
    assert tpl.cors.allow_methods == ("GET", "POST") and tpl.cors.max_age == 600

    overridden = load_template(tmp_path / "template.yaml", env={"FRONTEND_ORIGIN": "https://app.example, https://b.example"})
    assert overridden.cors.allow_origins == ("https://app.example", "https://b.example")


def test_the_repository_template_loads():
    tpl = load_template(REPO_ROOT / "template.yaml", env={})
    keys = {r.route_key: r.function for r in tpl.routes}
    assert keys["GET /health"] == "HealthFunction"
    assert "POST /chats/{chat_id}/messages" in keys
    for fn in tpl.functions.values():
        assert fn.code_dir.is_relative_to(REPO_ROOT / "functions")


def test_route_matching_prefers_literals_and_reports_allowed_methods():
    routes = [Route("GET", "/things/{thing_id}", "A"), Route("GET", "/things/mine", "B"),
              Route("POST", "/things/{thing_id}/name", "C"), Route("ANY", "/any", "D")]
    assert match_route(routes, "GET", "/things/mine")[0].function == "B"
    route, params, _ = match_route(routes, "GET", "/things/a%20b")
    assert route.function == "A" and params == {"thing_id": "a b"}
    assert match_route(routes, "POST", "/things/7/name")[1] == {"thing_id": "7"}
    assert match_route(routes, "DELETE", "/things/7") == (None, {}, ["GET"])
    assert match_route(routes, "GET", "/nothing") == (None, {}, [])
    assert match_route(routes, "PATCH", "/any")[0].function == "D"


# ---- payload 2.0 events -----------------------------------------------------------------------
def test_build_event_is_payload_2_0():
    route = Route("POST", "/chats/{chat_id}/messages", "MessagesFunction")
    headers = [("Host", "127.0.0.1:3000"), ("Content-Type", "application/json"), ("User-Agent", "pytest"),
               ("Cookie", "iflychat_session=abc; theme=dark"), ("X-Multi", "a"), ("X-Multi", "b")]
    body = json.dumps({"content": "hé"}).encode()
    event = build_event("POST", "/chats/c1/messages?limit=5&tag=a&tag=b&empty=", headers, body, route=route,
                        path_parameters={"chat_id": "c1"}, source_ip="10.0.0.7", now=1_700_000_000.123)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /chats/{chat_id}/messages"
    assert event["rawPath"] == "/chats/c1/messages"
    assert event["rawQueryString"] == "limit=5&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"limit": "5", "tag": "a,b", "empty": ""}
    assert event["cookies"] == ["iflychat_session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "a,b"
    assert event["headers"]["content-type"] == "application/json"
    assert event["pathParameters"] == {"chat_id": "c1"}
    assert event["body"] == body.decode() and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "POST", "path": "/chats/c1/messages", "protocol": "HTTP/1.1",
                           "sourceIp": "10.0.0.7", "userAgent": "pytest"}
    assert ctx["stage"] == "$default" and ctx["routeKey"] == event["routeKey"]
    assert ctx["timeEpoch"] == 1_700_000_000_123 and ctx["time"] == "14/Nov/2023:22:13:20 +0000"
    assert uuid.UUID(ctx["requestId"]) and ctx["accountId"] and ctx["apiId"] and ctx["domainName"] == "127.0.0.1"


def test_build_event_without_body_query_or_cookies():
    event = build_event("GET", "/health", [("Host", "localhost")], b"", route=Route("GET", "/health", "H"))
    assert "body" not in event and event["isBase64Encoded"] is False
    assert "queryStringParameters" not in event and "cookies" not in event and "pathParameters" not in event
    assert event["rawQueryString"] == ""


def test_build_event_base64_encodes_multipart_and_binary():
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\r\n--XyZ--\r\n")
    event = build_event("POST", "/files/upload", [("Content-Type", "multipart/form-data; boundary=XyZ")], body)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["routeKey"] == "$default"

    form = build_event("POST", "/x", [("Content-Type", "application/x-www-form-urlencoded")], b"a=1&b=2")
    assert form["body"] == "a=1&b=2" and form["isBase64Encoded"] is False
    raw = build_event("POST", "/x", [], b"\x89PNG")
    assert raw["isBase64Encoded"] is True


def test_to_http_turns_the_response_back_into_http():
    status, headers, body = to_http({"statusCode": 201, "headers": {"content-type": "application/json", "content-length": "99"},
                                     "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": '{"ok":true}',
                                     "isBase64Encoded": False})
    assert status == 201 and body == b'{"ok":true}'
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; HttpOnly"]
    assert not any(k.lower() == "content-length" for k, _ in headers)
    assert to_http({"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True})[2] == b"\x00\x01"
    assert to_http({"hello": "world"}) == (200, [("Content-Type", "application/json")], b'{"hello": "world"}')


# ---- the AI stub through the real openai client --------------------------------------------------
@pytest.fixture(scope="module")
def stub():
    with AIStub() as s:
        yield s


@pytest.fixture
def client(stub):
    stub.reset()
    yield openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0, timeout=5)
    stub.reset()


def test_stub_default_reply_with_usage_and_recorded_requests(stub, client):
    assert stub.base_url.startswith("http://127.0.0.1:") and stub.base_url.endswith("/v1")
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, USER])
    assert r.choices[0].message.content == "Stub reply to: hello there, stub"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens >= 1 and r.usage.completion_tokens == len(r.choices[0].message.content) // 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert stub.requests[-1]["messages"][-1] == USER and stub.requests[-1]["model"] == "gpt-4o-mini"

    title = client.chat.completions.create(model="m", messages=[
        {"role": "system", "content": "Suggest a short title for this chat."},
        {"role": "user", "content": "How do I bake sourdough bread at home?"}])
    assert title.choices[0].message.content == "How do I bake sourdough"
    assert [m.id for m in client.models.list().data][0] == "gpt-4o-mini"


def test_stub_scripted_replies_are_fifo(stub, client):
    stub.script({"reply": "first", "prompt_tokens": 11, "completion_tokens": 3},
                {"reply": "second", "usage": False, "finish_reason": "content_filter"})
    a = client.chat.completions.create(model="m", messages=[USER])
    b = client.chat.completions.create(model="m", messages=[USER])
    c = client.chat.completions.create(model="m", messages=[USER])
    assert (a.choices[0].message.content, a.usage.prompt_tokens, a.usage.completion_tokens) == ("first", 11, 3)
    assert (b.choices[0].message.content, b.usage, b.choices[0].finish_reason) == ("second", None, "content_filter")
    assert c.choices[0].message.content.startswith("Stub reply to:")
    assert len(stub.requests) == 3


def test_stub_streams_with_include_usage(stub, client):
    stub.script({"chunks": ["Hel", "lo", "!"], "completion_tokens": 3})
    chunks = list(client.chat.completions.create(model="m", messages=[USER], stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello!"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3

    plain = list(client.chat.completions.create(model="m", messages=[USER], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "Stub reply to: hello there, stub"
    assert all(c.usage is None for c in plain)


def test_stub_errors_map_to_openai_exceptions(stub, client):
    stub.script({"status": 429, "message": "slow down"}, {"status": 500}, {"status": 400, "message": "bad"})
    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(model="m", messages=[USER])
    assert rate.value.response.headers["retry-after"] and rate.value.body["message"] == "slow down"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[USER])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[USER])


def test_stub_delay_disconnect_and_broken_stream(stub, client):
    stub.script({"delay": 2}, {"disconnect": True}, {"reply": "one two three four", "stream_error_after": 1})
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="m", messages=[USER])
    assert time.monotonic() - started < 1.5
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=[USER])
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=[USER], stream=True):
            got.append(chunk.choices[0].delta.content)
    assert got == ["", "one "]


def test_stub_repeat_outlasts_client_retries(stub):
    retrying = openai.OpenAI(base_url=stub.base_url, api_key="t", max_retries=1, timeout=5)
    stub.reset()
    stub.script({"status": 503, "repeat": 2})
    with pytest.raises(openai.InternalServerError):
        retrying.chat.completions.create(model="m", messages=[USER])
    assert len(stub.requests) == 2 and stub.pending == 0


# ---- the embedded PostgreSQL ------------------------------------------------------------------------
def test_embedded_postgres_starts_persists_and_really_stops(tmp_path):
    import psycopg2

    server = embedded_pg.start(tmp_path / "pgdata")
    try:
        url = embedded_pg.create_database(server.url, "scratch")
        assert embedded_pg.create_database(server.url, "scratch") == url  # exist_ok
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        conn.close()
    finally:
        server.stop()
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE

    again = embedded_pg.start(tmp_path / "pgdata")
    try:
        with psycopg2.connect(again.url_for("scratch")) as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM kept")
            assert cur.fetchone() == (42,)
        conn.close()
        embedded_pg.drop_database(again.url, "scratch")
    finally:
        again.stop()


# ---- the runner end to end ---------------------------------------------------------------------------
@pytest.fixture
def throwaway_database():
    name = f"iflychat_runner_{uuid.uuid4().hex[:10]}"
    url = embedded_pg.create_database(SERVER_URL, name, exist_ok=False)
    yield url
    embedded_pg.drop_database(SERVER_URL, name)


def test_runner_serves_health_and_stops_cleanly(tmp_path, throwaway_database):
    # As on a developer's machine: no AI key and no bucket, so the runner starts its stub and its
    # local S3 (the test run's own S3 settings point at a mock only this process sees).
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PORT") and not k.startswith(("S3_", "AWS_"))}
    env["DATABASE_URL"] = throwaway_database
    log_path = tmp_path / "runner.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "local.run", "--port", "0"], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            for line in log_path.read_text().splitlines():
                if "API running on " in line:
                    url = line.split("API running on ", 1)[1].split()[0]
            time.sleep(0.2)
        assert url, log_path.read_text()
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        assert workers  # one process per function

        r = httpx.get(f"{url}/health", headers={"Origin": "http://localhost:5173"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["database"] == "healthy"
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert r.headers["access-control-allow-credentials"] == "true"

        assert httpx.get(f"{url}/no/such/route").json() == {"detail": "Not Found"}
        spec = httpx.get(f"{url}/openapi.json", timeout=60)
        assert spec.status_code == 200 and spec.json() == json.loads((REPO_ROOT / "openapi.json").read_text())
        docs = httpx.get(f"{url}/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text and "swagger-ui" in docs.text
        assert httpx.delete(f"{url}/health").status_code == 405
        pre = httpx.options(f"{url}/auth/login", headers={"Origin": "http://localhost:5173",
                                                            "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]

        log_text = log_path.read_text()
        assert "LOCAL STUB" in log_text and "LOCAL in-memory S3" in log_text and "GET /health 200" in log_text and "HealthFunction" in log_text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log_path.read_text()
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p.pid) and p.status() != psutil.STATUS_ZOMBIE for p in workers)
