"""An embedded PostgreSQL for local runs and tests, built on the `pgserver` package.

API (stable; tests/conftest.py relies on it):

    server = start(data_dir)          # -> EmbeddedPostgres; initdb on first use, data persists
    server.url                        # postgresql:// URL of the maintenance database "postgres"
    server.url_for("iflychat")        # the same server, another database
    server.stop()                     # really stops the postmaster (also a context manager)

    create_database(server_url, name, *, exist_ok=True) -> str   # URL of the created database
    drop_database(server_url, name) -> None                      # forceful; fine if missing
    database_url(server_url, name) -> str                        # `server_url` with another dbname

`server_url` may be any PostgreSQL URL (embedded or not, e.g. postgresql://postgres@127.0.0.1:5432/postgres).

The server listens on a unix socket only (what pgserver does; no port to collide with the
machine's PostgreSQL), so `url` looks like `postgresql://postgres@/postgres?host=%2Fpath%2Fto%2Fsocketdir`.
libpq/psycopg2 accept it as any URL. Authentication is `trust`, user `postgres`. When run as root,
pgserver runs postgres as the system user `pgserver` (created on first use), as postgres refuses root.

Stopping: `stop()` runs `pg_ctl stop -m fast` and, should that fail, terminates the postmaster.
It is also registered with atexit, so a normal interpreter exit (including KeyboardInterrupt and a
SIGTERM that the caller turns into SystemExit, as local.run does) stops the server. A SIGKILLed
owner leaves postgres running; the next `start()` on the same directory simply adopts it.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import threading
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
from psycopg2 import errors, sql

log = logging.getLogger(__name__)
# pgserver logs every pg_ctl command line at INFO; only its warnings are worth showing.
logging.getLogger("pgserver").setLevel(logging.WARNING)

__all__ = ["EmbeddedPostgres", "start", "create_database", "drop_database", "database_url"]


class EmbeddedPostgres:
    """A running embedded server; create it with `start()`."""

    def __init__(self, server, data_dir: Path):
        self._server = server  # pgserver.PostgresServer
        self._lock = threading.Lock()
        self._stopped = False
        self.data_dir = data_dir
        info = server.get_postmaster_info()
        self.pid: int = info.pid
        if info.socket_dir is not None:
            self.url = f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir), safe='')}"
            if info.port and info.port != 5432:
                self.url += f"&port={info.port}"
        else:  # Windows: pgserver listens on TCP there
            self.url = f"postgresql://postgres@{info.hostname}:{info.port}/postgres"
        atexit.register(self.stop)

    def url_for(self, dbname: str) -> str:
        return database_url(self.url, dbname)

    def _current_pid(self) -> int:
        """The postmaster serving the directory now: someone may have stopped and restarted it
        since `start()` (pg_ctl by hand, a fault test), and that one must be stopped too."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0].strip()
            if first.isdigit():
                self.pid = int(first)
        except OSError:
            pass  # no pid file: stopped (or never started by pg_ctl); keep the last pid we knew
        return self.pid

    @property
    def running(self) -> bool:
        import psutil

        pid = self._current_pid()
        try:
            return psutil.Process(pid).is_running() and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def stop(self) -> None:
        """Stop the postmaster (fast shutdown: open sessions are disconnected). Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        from pgserver import PostgresServer
        from pgserver._commands import pg_ctl

        server = self._server
        # Undo pgserver's own bookkeeping so that its atexit hook is a no-op and a later
        # start() on the same directory in this process builds a fresh handle.
        atexit.unregister(server._cleanup)
        try:
            server.global_process_id_list.get_and_remove(os.getpid())
        except Exception:  # pragma: no cover - bookkeeping only
            pass
        PostgresServer._instances.pop(server.pgdata, None)

        if not self.running:
            return
        try:
            pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=40)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed (%s); terminating postgres %s", exc, self.pid)
        if self.running:
            import psutil

            try:
                proc = psutil.Process(self.pid)
                proc.terminate()
                try:
                    proc.wait(5)
                except psutil.TimeoutExpired:
                    proc.kill()
            except psutil.NoSuchProcess:
                pass

    def __enter__(self) -> "EmbeddedPostgres":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, pid={self.pid}, url={self.url!r})"


def start(data_dir: Path | str) -> EmbeddedPostgres:
    """Start (or adopt an already running) PostgreSQL whose cluster lives in `data_dir`.

    The directory (and its parents) is created if missing; a new cluster is initialised in it;
    an existing one is reused with its data. Returns once the server accepts connections.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver import PostgresServer

        PostgresServer._instances.pop(data_dir, None)  # never hand back a stopped handle
        server = pgserver.get_server(data_dir, cleanup_mode=None)
    return EmbeddedPostgres(server, data_dir)


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name` instead (URL or key=value DSN)."""
    if server_url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(server_url)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    from psycopg2.extensions import make_dsn

    return make_dsn(server_url, dbname=name)


def _admin(server_url: str):
    conn = psycopg2.connect(server_url, connect_timeout=10, application_name="iflychat-local-admin")
    conn.autocommit = True
    return conn


def create_database(server_url: str, name: str, *, exist_ok: bool = True) -> str:
    """Create database `name` on the server behind `server_url`; return its URL."""
    conn = _admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except errors.DuplicateDatabase:
                    if not exist_ok:
                        raise
            elif not exist_ok:
                raise errors.DuplicateDatabase(f"database {name!r} already exists")
    finally:
        conn.close()
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name`, disconnecting its sessions; no error if it does not exist."""
    conn = _admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()
