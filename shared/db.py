"""The one way to reach PostgreSQL.

One psycopg2 connection per process (per warm Lambda container), opened lazily on first use and
reused by every later invocation. It runs in autocommit mode, so a single statement is its own
transaction and costs exactly one round trip; a unit of work that needs several statements to be
atomic asks for `transaction=True` and gets BEGIN ... COMMIT around them.

After any error the connection is clean: autocommit statements leave no transaction open, and a
failed transaction is rolled back (or the connection dropped when even that fails). A connection
the server or a proxy dropped while the container slept is noticed on the first statement that
fails, replaced, and the unit of work retried once: a transaction when the failure came before
its COMMIT, a single autocommit statement when none of the unit's statements had answered. One
case stays ambiguous - a statement the server committed whose answer was lost on the way - so
every insert carries an id the model made once, before its unit of work: a replay meets its own
row and fails (a 4xx), it never writes a second one (tests/test_faults.py replays every unit).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extras

from shared.errors import ServiceUnavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Cursor = psycopg2.extensions.cursor

_conn: psycopg2.extensions.connection | None = None
# Statements this process has sent to the server, each one round trip (BEGIN and COMMIT count).
# Read by the round-trip tests and the benchmark; never reset.
statements_sent = 0
# Lambda runs one invocation at a time per container, so this lock is never contended there;
# it makes the same connection safe for the local runner and tests, which use threads.
_lock = threading.RLock()

psycopg2.extras.register_uuid()


def _connect() -> psycopg2.extensions.connection:
    s = get_settings()
    conn = psycopg2.connect(
        s.database_url,
        connect_timeout=s.db_connect_timeout,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        application_name=f"iflychat-{s.stage}",
        options=f"-c statement_timeout={s.db_statement_timeout_ms} -c idle_in_transaction_session_timeout=60000",
    )
    conn.autocommit = True
    return conn


def connection() -> psycopg2.extensions.connection:
    """The process's connection, opened if there is none."""
    global _conn
    if _conn is None or _conn.closed:
        try:
            _conn = _connect()
        except psycopg2.OperationalError as exc:
            _conn = None
            log.warning("database connection failed: %s", str(exc).strip())
            raise ServiceUnavailable("The database is unavailable; please try again shortly") from exc
    return _conn


def reset() -> None:
    """Close and forget the connection (tests and the shutdown path use it)."""
    global _conn
    with _lock:
        if _conn is not None:
            try:
                _conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may raise anything
                pass
        _conn = None


def _lost(conn: psycopg2.extensions.connection, exc: BaseException) -> bool:
    """Did this error cost us the connection (as opposed to a statement error on a live one)?"""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and conn.closed != 0


class _CountingCursor(psycopg2.extensions.cursor):
    """Counts statements that completed, so a retry can know whether anything was committed."""

    completed = 0

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own signature
        global statements_sent
        statements_sent += 1
        result = super().execute(query, vars)
        self.completed += 1
        return result


def run_sync(work: Callable[..., T], *args: Any, transaction: bool = False) -> T:
    """Run `work(cursor, *args)` as one unit of work and return what it returns."""
    with _lock:
        for attempt in (1, 2):
            conn = connection()
            cur = conn.cursor(cursor_factory=_CountingCursor)
            committing = False
            try:
                if transaction:
                    cur.execute("BEGIN")
                    result = work(cur, *args)
                    committing = True
                    cur.execute("COMMIT")
                else:
                    result = work(cur, *args)
                return result
            except Exception as exc:
                if not _lost(conn, exc):
                    if transaction and not conn.closed:
                        try:
                            conn.cursor(cursor_factory=_CountingCursor).execute("ROLLBACK")
                        except Exception:  # noqa: BLE001 - a rollback that fails drops the connection
                            reset()
                    raise
                reset()
                # Safe to repeat only if nothing of this unit can have been committed.
                nothing_committed = (transaction and not committing) or (not transaction and cur.completed == 0)
                log.warning("database connection lost (attempt %d): %s", attempt, str(exc).strip())
                if attempt == 1 and nothing_committed:
                    continue
                raise ServiceUnavailable("The database connection was lost; please try again") from exc
            finally:
                if not cur.closed:
                    cur.close()
    raise AssertionError("unreachable")


async def run(work: Callable[..., T], *args: Any, transaction: bool = False) -> T:
    """The async face of `run_sync` used by the models.

    DB_OFFLOAD=inline (the default) runs it right here, blocking the event loop for the length of
    the query; DB_OFFLOAD=thread runs it in a worker thread. Lambda gives each container one
    request at a time, and so do the local runner's workers and the tests' handler client: while
    the query runs, the loop has nothing else to serve, and the thread hop would cost more than a
    typical query (measured in bench/). An app served to concurrent requests on one event loop
    (uvicorn, say) sets DB_OFFLOAD=thread so that one request's query does not stall the others.
    """
    if get_settings().db_offload == "inline":
        return run_sync(work, *args, transaction=transaction)
    return await asyncio.to_thread(run_sync, work, *args, transaction=transaction)
