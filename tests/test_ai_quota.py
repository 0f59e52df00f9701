"""Quotas: a daily token budget and AI requests a minute per user; over either a 429 with
Retry-After naming the limit and nothing stored; and no overdraft under concurrency."""
from __future__ import annotations

import asyncio
import threading
import time

import psycopg2
import pytest

from shared.models import reserve_work
from tests.test_ai_context import make_file

SMALL = {"AI_CONTEXT_TOKENS": 1000, "AI_MAX_TOKENS": 100}  # a first message then reserves about 1,700


def count_messages(sql, chat_id) -> int:
    return sql("SELECT count(*) FROM messages WHERE chat_id = %s", (chat_id,))[0][0]


def test_daily_token_budget_refuses_with_429_and_stores_nothing(user, ai_stub, sql, setting):
    setting(QUOTA_DAILY_TOKENS=2500, **SMALL)
    chat = user.new_chat("Budget")
    ai_stub.script({"reply": "big answer", "prompt_tokens": 1500, "completion_tokens": 200})
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "first"}).status == 200
    used = sql("SELECT day_tokens FROM ai_quota WHERE user_id = %s", (user.id,))[0][0]
    spent = sql("SELECT sum(total_tokens) FROM ai_usage WHERE user_id = %s", (user.id,))[0][0]
    assert used == spent  # the reservation was settled to the real usage
    requests, stored = len(ai_stub.requests), count_messages(sql, chat["id"])

    for path in ("messages", "messages/stream", "messages/regenerate"):
        res = user.post(f"/chats/{chat['id']}/{path}", json={"content": "one more"})
        assert res.status == 429, (path, res.text)
        assert "Daily AI token budget" in res.json()["detail"] and "2500" in res.json()["detail"]
        assert 0 < int(res.headers["retry-after"]) <= 86_401
    res = user.post(f"/chats/{chat['id']}/name", json={"message": "name it"})
    assert res.status == 200 or "Daily" in res.json()["detail"]  # a title reserves little; it may fit
    assert count_messages(sql, chat["id"]) == stored
    assert len(ai_stub.requests) <= requests + 1


def test_calls_per_minute_refuses_with_429(user, ai_stub, sql, setting):
    setting(QUOTA_CALLS_PER_MINUTE=2)
    chat = user.new_chat("Chatty")
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "one"}).status == 200
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "two"}).status == 200
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "three"})
    assert res.status == 429 and "2 AI requests a minute" in res.json()["detail"]
    assert 1 <= int(res.headers["retry-after"]) <= 61
    assert user.post(f"/chats/{chat['id']}/messages/stream", json={"content": "four"}).status == 429
    assert count_messages(sql, chat["id"]) == 4
    # The window passes: move it a minute back instead of waiting.
    sql("UPDATE ai_quota SET window_start = window_start - interval '61 seconds' WHERE user_id = %s", (user.id,))
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "five"}).status == 200


def test_unknown_chat_reserves_nothing(user, sql, setting):
    setting(QUOTA_CALLS_PER_MINUTE=1)
    import uuid

    assert user.post(f"/chats/{uuid.uuid4()}/messages", json={"content": "x"}).status == 404
    chat = user.new_chat("Still allowed")
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "y"}).status == 200


def test_concurrent_sends_through_the_handler_cannot_overdraw(api, user, ai_stub, sql, setting):
    """Four sends at once, each in its own thread and event loop, with a budget that holds one
    reservation: the AI answers slowly, so every send is inside the window between its quota check
    and the recording of its usage at the same time. Exactly one may pass."""
    setting(QUOTA_DAILY_TOKENS=2500, **SMALL)
    chats = [user.new_chat(f"Race {i}") for i in range(4)]
    ai_stub.script({"delay": 0.3, "reply": "slow", "repeat": 8})
    results: list[int] = []
    start = threading.Barrier(len(chats))

    def send(chat):
        asyncio.set_event_loop(asyncio.new_event_loop())
        start.wait()
        results.append(user.post(f"/chats/{chat['id']}/messages", json={"content": "race"}).status)

    threads = [threading.Thread(target=send, args=(c,)) for c in chats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 429, 429, 429]
    spent = sql("SELECT sum(total_tokens) FROM ai_usage WHERE user_id = %s", (user.id,))[0][0]
    assert spent <= 2500
    assert sql("SELECT day_tokens FROM ai_quota WHERE user_id = %s", (user.id,))[0][0] == spent


@pytest.mark.parametrize("first_ever", [True, False])
def test_reservation_is_atomic_across_connections(user, database_url, setting, first_ever):
    """Two database connections reserve at once: A holds its reservation in an open transaction, B
    must wait for A's row lock and then see A's reservation. Budget 1,000, each asks 600: had B
    read a snapshot from before A committed, both would pass."""
    setting(QUOTA_DAILY_TOKENS=1000, QUOTA_CALLS_PER_MINUTE=0)
    chat = user.new_chat("Atomic")
    a, b, watch = (psycopg2.connect(database_url) for _ in range(3))
    b.autocommit = watch.autocommit = True
    try:
        if not first_ever:  # an existing quota row, as for any user after their first request
            with watch.cursor() as cur:
                assert reserve_work(cur, chat["id"], user.id, 0)[0] is not None
        with a.cursor() as cur:  # a transaction: BEGIN implied, not committed yet
            assert reserve_work(cur, chat["id"], user.id, 600)[0] is not None
        outcome = {}
        t = threading.Thread(target=lambda: outcome.update(b=reserve_work(b.cursor(), chat["id"], user.id, 600)))
        t.start()
        for _ in range(500):  # wait until B is blocked on A's lock (a sync point, not a timing claim)
            with watch.cursor() as cur:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (b.get_backend_pid(),))
                if cur.fetchone()[0] == "Lock":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("B never waited for A's lock")
        a.commit()
        t.join()
        assert outcome["b"][0] is None  # refused: A's 600 + B's 600 > 1,000
        with watch.cursor() as cur:
            cur.execute("SELECT day_tokens FROM ai_quota WHERE user_id = %s", (user.id,))
            assert cur.fetchone()[0] == 600
    finally:
        for conn in (a, b, watch):
            conn.close()


def test_send_path_stays_within_four_database_round_trips(user, ai_stub, monkeypatch):
    """Quota, history, files and usage are folded into the send's statements: the session check,
    (the files when a message names some,) the user's message, the reply."""
    from shared import db

    chat = user.new_chat("Counted")
    statements = []
    original = db._CountingCursor.execute

    def counting(self, query, vars=None):
        statements.append(query)
        return original(self, query, vars)

    monkeypatch.setattr(db._CountingCursor, "execute", counting)
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "first, with a title"}).status == 200
    assert len(statements) == 3
    f = make_file(user.id, "some text")
    statements.clear()
    assert user.post(f"/chats/{chat['id']}/messages", json={"content": "second",
                                                            "file_url": f"/files/{f.id}/download"}).status == 200
    assert len(statements) == 4
