"""Dead connections while requests run: a killed backend, a statement failing mid-transaction, a
statement that runs too long, an unreachable database, a database stopped and restarted. During
an outage the answer is a 503 JSON error, never a hang; afterwards the same warm container (no
re-import) serves again; a retry never applies a write twice."""
from __future__ import annotations

import asyncio
import tempfile
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest

from shared import db, settings
from shared.errors import ServiceUnavailable

FAULTS = {"injected": 0}


def _use(monkeypatch, **changes):
    """Point the process's database settings elsewhere (a fresh connection is opened)."""
    db.reset()
    patched = replace(settings.get_settings(), **changes)
    monkeypatch.setattr(db, "get_settings", lambda: patched)
    return patched


@pytest.fixture
def restore_db():
    yield
    db.reset()


def _bounded(api, call, *, seconds: float | None = None):
    """Run a request in a thread; fail (instead of hanging the suite) if it outlives the
    function's Lambda timeout."""
    limit = seconds or max(f.timeout for f in api.functions.template.functions.values())
    box = {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())  # Mangum wants one in its thread
        box["res"] = call()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"request still running after the function's {limit:.0f} s timeout"
    return box["res"]


def _handlers(api):
    """Every function's handler, imported once: the same objects later mean no cold start."""
    return {name: api.functions.handler(name) for name in api.functions.template.functions}


def test_backend_killed_between_requests_and_during_one(api, user, sql, ai_stub):
    chat = user.new_chat()
    warm = _handlers(api)
    for _ in range(3):
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"iflychat-{settings.get_settings().stage}",))
        FAULTS["injected"] += 1
        assert user.get(f"/chats/{chat['id']}").status == 200
    # killed while the AI is being asked: the reply is still stored on a fresh connection
    ai_stub.script({"reply": "after the kill", "delay": 0.3})
    killer = threading.Timer(0.1, lambda: sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"iflychat-{settings.get_settings().stage}",)))
    killer.start()
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "survive this"})
    killer.join()
    FAULTS["injected"] += 1
    assert res.status == 200 and res.json()["ai_response"]["content"] == "after the kill"
    assert sql("SELECT count(*) FROM messages WHERE chat_id = %s", (chat["id"],))[0][0] == 2
    assert _handlers(api) == warm  # no cold start: the same imported handlers served throughout


def test_a_statement_failing_mid_transaction_leaves_nothing_and_no_poison(user, sql):
    marker = f"half-{uuid.uuid4().hex[:6]}"

    def half(cur):
        cur.execute("UPDATE users SET name = %s WHERE id = %s", (marker, user.id))
        cur.execute("INSERT INTO chats (id, user_id, title) VALUES (%s, %s, '')", (uuid.uuid4(), user.id))

    with pytest.raises(psycopg2.IntegrityError):
        db.run_sync(half, transaction=True)
    FAULTS["injected"] += 1
    assert sql("SELECT count(*) FROM users WHERE name = %s", (marker,))[0][0] == 0
    assert user.get("/users/me").status == 200 and user.get("/chats").status == 200


def test_a_write_is_never_applied_twice_by_a_retry(user, sql):
    # autocommit: the insert completed (and committed) before the connection died -> no retry, 503
    chat_id = uuid.uuid4()

    def insert_then_die(cur):
        cur.execute("INSERT INTO chats (id, user_id, title) VALUES (%s, %s, 'once')", (uuid.uuid4(), user.id))
        sql("SELECT pg_terminate_backend(%s)", (cur.connection.get_backend_pid(),))
        cur.execute("SELECT 1")

    with pytest.raises(ServiceUnavailable):
        db.run_sync(insert_then_die)
    FAULTS["injected"] += 1
    assert sql("SELECT count(*) FROM chats WHERE user_id = %s AND title = 'once'", (user.id,))[0][0] == 1

    # a transaction that died before COMMIT is retried once: the row exists once, not twice
    calls = []

    def transactional(cur):
        calls.append(1)
        cur.execute("INSERT INTO chats (id, user_id, title) VALUES (%s, %s, 'tx')", (chat_id, user.id))
        if len(calls) == 1:
            sql("SELECT pg_terminate_backend(%s)", (cur.connection.get_backend_pid(),))
            cur.execute("SELECT 1")

    db.run_sync(transactional, transaction=True)
    FAULTS["injected"] += 1
    assert len(calls) == 2
    assert sql("SELECT count(*) FROM chats WHERE id = %s", (chat_id,))[0][0] == 1

    # the connection lost during COMMIT itself is ambiguous: never retried, an error instead
    commits = []

    def die_at_commit(cur):
        commits.append(1)
        cur.execute("INSERT INTO chats (id, user_id, title) VALUES (%s, %s, 'commit')", (uuid.uuid4(), user.id))
        sql("SELECT pg_terminate_backend(%s)", (cur.connection.get_backend_pid(),))

    with pytest.raises(ServiceUnavailable):
        db.run_sync(die_at_commit, transaction=True)
    FAULTS["injected"] += 1
    assert len(commits) == 1
    assert sql("SELECT count(*) FROM chats WHERE user_id = %s AND title = 'commit'", (user.id,))[0][0] <= 1


def test_a_statement_that_runs_too_long_is_cut_off_as_503(api, user, monkeypatch, restore_db, database_url):
    chat = user.new_chat("locked")
    _use(monkeypatch, db_statement_timeout_ms=300)
    blocker = psycopg2.connect(database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT 1 FROM chats WHERE id = %s FOR UPDATE", (chat["id"],))  # holds the row
            res = _bounded(api, lambda: user.patch(f"/chats/{chat['id']}", json={"title": "waits"}))
            FAULTS["injected"] += 1
            assert res.status == 503 and isinstance(res.json()["detail"], str), res.text
        blocker.rollback()
    finally:
        blocker.close()
    assert user.patch(f"/chats/{chat['id']}", json={"title": "free again"}).status == 200


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:1/none",  # closed port: refused at once
                                 "postgresql://postgres@10.255.255.1:5432/none"])  # unroutable: connect_timeout
def test_an_unreachable_database_is_a_quick_503_then_heals(api, user, monkeypatch, restore_db, url):
    warm = _handlers(api)
    _use(monkeypatch, database_url=url, db_connect_timeout=1)
    for path in ("/users/me", "/chats", "/health"):
        res = _bounded(api, lambda: user.get(path))
        FAULTS["injected"] += 1
        assert res.status == 503, (path, res.text)
        assert isinstance(res.json()["detail"], str)  # /health too: every error carries `detail`
    monkeypatch.undo()
    db.reset()
    assert user.get("/users/me").status == 200
    assert _handlers(api) == warm


def test_embedded_database_stopped_and_restarted(api, monkeypatch, restore_db):
    """A dedicated embedded PostgreSQL: serve, stop it (503 quickly), start it again (served again
    by the same warm handlers, the connection healed by itself)."""
    from local import embedded_pg

    import init_db

    data = Path(tempfile.mkdtemp(prefix="iflychat-fault-pg-"))
    pg = embedded_pg.start(data)
    try:
        url = embedded_pg.create_database(pg.url, "faults")
        init_db.init_db(url, quiet=True)
        _use(monkeypatch, database_url=url, db_connect_timeout=2)
        warm = _handlers(api)
        user = api.new_user()
        chat = user.new_chat("before the restart")
        pg.stop()
        FAULTS["injected"] += 1
        for _ in range(2):
            res = _bounded(api, lambda: user.get(f"/chats/{chat['id']}"))
            assert res.status == 503 and isinstance(res.json()["detail"], str), res.text
        pg = embedded_pg.start(data)
        FAULTS["injected"] += 1
        assert user.get(f"/chats/{chat['id']}").json()["title"] == "before the restart"
        assert user.post("/chats", json={"title": "after"}).status == 201
        assert _handlers(api) == warm
    finally:
        db.reset()
        pg.stop()


def test_fault_count(capsys):
    with capsys.disabled():
        print(f"\nfaults injected: {FAULTS['injected']}")


def test_a_replayed_unit_of_work_cannot_store_a_row_twice(user, sql, ai_stub, monkeypatch):
    """The one case a retry cannot rule out: a statement committed and its answer was lost.
    Replaying every unit of work of a send must still leave one user message (the ids are made
    before the unit of work, so the replay meets its own row) and answer a 4xx, not a 500."""
    from shared import db

    chat = user.new_chat("Replay")
    real = db.run_sync

    def twice(work, *args, **kw):
        real(work, *args, **kw)  # committed; pretend the answer never arrived
        return real(work, *args, **kw)

    monkeypatch.setattr(db, "run_sync", twice)
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "only once"})
    monkeypatch.undo()
    assert 400 <= res.status < 500, res.text
    assert sql("SELECT count(*) FROM messages WHERE chat_id = %s AND content = 'only once'", (chat["id"],))[0][0] == 1
