"""Real parallel clients against the local runner (several containers per function, one shared
PostgreSQL): no 500, nothing lost, no duplicate, usage totals exact."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

CLIENTS = {"count": 0}


@pytest.fixture
def http(local_api):
    url, statuses = local_api

    def call(method, path, **kw):
        with httpx.Client(base_url=url, timeout=60) as client:
            res = client.request(method, path, **kw)
        statuses[res.status_code] += 1
        assert res.status_code < 500, (method, path, res.status_code, res.text)
        assert isinstance(res.json().get("detail", ""), str)
        return res

    return call


def parallel(n, fn):
    CLIENTS["count"] += n
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()  # all clients fire together
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def _account(http, sql=None):
    email = f"par-{uuid.uuid4().hex[:10]}@example.com"
    assert http("POST", "/auth/register", json={"name": "P", "email": email, "password": "parallel-pass"}).status_code == 201
    token = http("POST", "/auth/login", json={"email": email, "password": "parallel-pass"}).json()["access_token"]
    return {"authorization": f"Bearer {token}"}


def test_parallel_registrations_of_one_email_exactly_one_wins(http, sql):
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    variants = [email, email.upper(), email.title()]
    results = parallel(12, lambda i: http("POST", "/auth/register",
                                          json={"name": f"R{i}", "email": variants[i % 3], "password": "race-password"}))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 11, codes
    assert sql("SELECT count(*) FROM users WHERE email = %s", (email,))[0][0] == 1


def test_parallel_sends_to_one_chat_lose_nothing_and_count_usage_exactly(http, sql, ai_stub):
    auth = _account(http)
    chat = http("POST", "/chats", json={"title": "busy"}, headers=auth).json()
    results = parallel(10, lambda i: http("POST", f"/chats/{chat['id']}/messages",
                                          json={"content": f"message {i}"}, headers=auth))
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    rows = sql("SELECT type, content FROM messages WHERE chat_id = %s", (chat["id"],))
    users = sorted(c for t, c in rows if t == "user")
    assert users == sorted(f"message {i}" for i in range(10))  # each once, none lost
    bots = [c for t, c in rows if t == "bot"]
    assert len(bots) == 10
    user_id = sql("SELECT user_id FROM chats WHERE id = %s", (chat["id"],))[0][0]
    usage = sql("SELECT operation, count(*), sum(total_tokens) FROM ai_usage WHERE user_id = %s GROUP BY operation",
                (user_id,))
    by_op = {op: (n, total) for op, n, total in usage}
    assert by_op["reply"][0] == len(bots)  # one usage row per stored reply
    assert sum(n for n, _ in by_op.values()) == len(ai_stub.requests)  # every AI call counted, once
    metadata_tokens = sql("SELECT sum((metadata->>'total_tokens')::int) FROM messages WHERE chat_id = %s AND type = 'bot'",
                          (chat["id"],))[0][0]
    assert by_op["reply"][1] == metadata_tokens


def test_parallel_deletes_of_one_chat(http, sql):
    auth = _account(http)
    chat = http("POST", "/chats", json={"title": "doomed"}, headers=auth).json()
    codes = sorted(r.status_code for r in parallel(8, lambda i: http("DELETE", f"/chats/{chat['id']}", headers=auth)))
    assert codes == [200] + [404] * 7, codes
    assert sql("SELECT count(*) FROM chats WHERE id = %s", (chat["id"],))[0][0] == 0


def test_a_delete_racing_a_send(http, sql, ai_stub):
    auth = _account(http)
    chats = [http("POST", "/chats", json={"title": f"race {i}"}, headers=auth).json() for i in range(4)]
    ai_stub.script(*[{"delay": 0.3}] * 8)

    def act(i):
        chat = chats[i // 2]
        if i % 2 == 0:
            return http("POST", f"/chats/{chat['id']}/messages", json={"content": "racing"}, headers=auth)
        threading.Event().wait(0.1)  # the send is in flight, waiting for the AI
        return http("DELETE", f"/chats/{chat['id']}", headers=auth)

    results = parallel(8, act)
    sends, deletes = results[0::2], results[1::2]
    assert all(r.status_code == 200 for r in deletes)
    assert all(r.status_code in (200, 404) for r in sends)
    ids = [c["id"] for c in chats]
    assert sql("SELECT count(*) FROM messages WHERE chat_id = ANY(%s::uuid[])", (ids,))[0][0] == 0
    assert sql("SELECT count(*) FROM chats WHERE id = ANY(%s::uuid[])", (ids,))[0][0] == 0
    # the AI calls that were made are all accounted for, though their chats are gone
    user_id = http("GET", "/users/me", headers=auth).json()["id"]
    assert sql("SELECT count(*) FROM ai_usage WHERE user_id = %s", (user_id,))[0][0] == len(ai_stub.requests)


def test_parallel_brute_force_is_counted_attempt_by_attempt(http, sql, local_api):
    from shared.settings import get_settings

    email = f"bf-{uuid.uuid4().hex[:8]}@example.com"
    results = parallel(12, lambda i: http("POST", "/auth/login", json={"email": email, "password": f"guess-{i}"}))
    codes = [r.status_code for r in results]
    assert set(codes) <= {401, 429} and codes.count(429) >= 1
    # the lock makes parallel attempts queue: only the free ones (and any whose back-off ran out) got through
    assert codes.count(401) <= get_settings().login_account_free_failures + 2
    assert all(r.headers.get("retry-after") for r in results if r.status_code == 429)


def test_concurrency_count(capsys):
    with capsys.disabled():
        print(f"\nconcurrent clients: {CLIENTS['count']}")


def test_the_runners_containers_use_a_local_s3_never_aws(http):
    """The worker processes cannot see this process's moto mock; they must get their own S3."""
    body = http("GET", "/health").json()
    assert body["s3"] == "healthy" and body["database"] == "healthy"
