"""The module-level connection: reused while warm, healed when dropped, clean after errors."""
from __future__ import annotations

import pytest

from shared import db


def _backend_pid() -> int:
    def work(cur):
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]

    return db.run_sync(work)


def test_warm_invocations_reuse_one_connection(user):
    assert user.get("/users/me").status == 200
    pid = _backend_pid()
    assert user.get("/chats").status == 200
    assert user.get("/users/me").status == 200
    assert _backend_pid() == pid


def test_connection_heals_after_the_server_drops_it(user, sql):
    assert user.get("/users/me").status == 200
    pid = _backend_pid()
    sql("SELECT pg_terminate_backend(%s)", (pid,))
    res = user.get("/users/me")  # the first statement fails, the connection is replaced, retried once
    assert res.status == 200, res.text
    assert _backend_pid() != pid


def test_a_failed_statement_does_not_poison_the_next_invocation(user):
    def broken(cur):
        cur.execute("SELECT 1")
        cur.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception):
        db.run_sync(broken, transaction=True)
    assert user.get("/users/me").status == 200
    status = db.connection().get_transaction_status()
    assert status == 0  # TRANSACTION_STATUS_IDLE: nothing left open


def test_a_transaction_that_fails_is_rolled_back(user, sql):
    def half(cur):
        cur.execute("UPDATE users SET name = 'half-done' WHERE id = %s", (user.id,))
        cur.execute("SELECT 1/0")

    with pytest.raises(Exception):
        db.run_sync(half, transaction=True)
    assert sql("SELECT name FROM users WHERE id = %s", (user.id,))[0][0] != "half-done"


def test_database_down_is_a_503_json_error(user, monkeypatch):
    from shared import settings

    db.reset()
    broken = settings.get_settings().__class__(**{**settings.get_settings().__dict__,
                                                   "database_url": "postgresql://postgres@127.0.0.1:1/none",
                                                   "db_connect_timeout": 1})
    monkeypatch.setattr(db, "get_settings", lambda: broken)
    res = user.get("/users/me")
    assert res.status == 503 and "database" in res.json()["detail"].lower()
    monkeypatch.undo()
    db.reset()
    assert user.get("/users/me").status == 200
