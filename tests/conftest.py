"""Test fixtures: a fresh throwaway PostgreSQL database per run, the local AI stub, and a client
that calls each function's real Lambda handler with API Gateway HTTP API (payload 2.0) events."""
from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.ai_stub import AIStub  # noqa: E402
from tests.lambda_client import LambdaClient  # noqa: E402

_stub = AIStub()
_embedded = None
_aws = None
TEST_BUCKET = "iflychat-test-files"


def _server_url() -> str:
    global _embedded
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        return url
    from local import embedded_pg

    _embedded = embedded_pg.start(Path(tempfile.mkdtemp(prefix="iflychat-test-pg-")))
    return _embedded.url


def _with_db(url: str, name: str) -> str:
    from psycopg2.extensions import make_dsn, parse_dsn

    return make_dsn(**{**parse_dsn(url), "dbname": name})


def pytest_configure(config):
    """Everything the functions read at import time is set here, before any of them loads."""
    config.addinivalue_line("markers", "expects_500: the test provokes a 500 on purpose (the error path itself)")
    server = _server_url()
    name = f"iflychat_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    config._iflychat_db = (server, name)
    database_url = _with_db(server, name)

    import init_db

    init_db.init_db(database_url, quiet=True)
    base_url = _stub.start()
    os.environ.update({
        "DATABASE_URL": database_url,
        "JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
        "BCRYPT_ROUNDS": "4",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_MAX_RETRIES": "0",
        "OPENAI_TIMEOUT_SECONDS": "3",
        "QUOTA_CALLS_PER_MINUTE": "0",  # the quota tests set their own limits
        "QUOTA_DAILY_TOKENS": "0",
        "FRONTEND_ORIGIN": "http://localhost:5173",
        "COOKIE_SECURE": "false",
        "STAGE": "test",
        # S3 is moto's in-process mock for the whole run: nothing can reach real AWS.
        "S3_BUCKET": TEST_BUCKET,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    for name in ("API_BASE_PATH", "S3_ENDPOINT_URL", "AWS_PROFILE", "S3_PREFIX"):
        os.environ.pop(name, None)
    global _aws
    import boto3
    from moto import mock_aws

    _aws = mock_aws()
    _aws.start()
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=TEST_BUCKET)


def pytest_unconfigure(config):
    _stub.stop()
    if _aws is not None:
        _aws.stop()
    from shared import db

    db.reset()
    server, name = getattr(config, "_iflychat_db", (None, None))
    if server:
        admin = psycopg2.connect(server)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    if _embedded is not None:
        _embedded.stop()


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["DATABASE_URL"]


@pytest.fixture
def sql(database_url):
    """A separate connection for looking at (or tampering with) the database from outside."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True

    def run(query, params=None):
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    yield run
    conn.close()


@pytest.fixture
def ai_stub():
    _stub.reset()
    yield _stub
    _stub.reset()


@pytest.fixture
def s3():
    """A boto3 client on the mocked S3 (the functions' own client is shared.storage.client())."""
    import boto3

    return boto3.client("s3", region_name="us-east-1")


_client: LambdaClient | None = None


@pytest.fixture(scope="session")
def api() -> LambdaClient:
    global _client
    _client = _client or LambdaClient(ROOT)
    return _client


@pytest.fixture(autouse=True)
def no_internal_server_errors(request):
    """A 500 is always a bug: any test during which a handler answered 500 fails."""
    before = _client.statuses[500] if _client else 0
    yield
    after = _client.statuses[500] if _client else 0
    if request.node.get_closest_marker("expects_500") is None:
        assert after == before, f"{after - before} answer(s) with status 500 during this test"
    # Every test is a fresh client: login back-off counted in one test must not leak into the next
    # (most tests share the address 127.0.0.1).
    from shared import db

    db.run_sync(lambda cur: cur.execute("DELETE FROM login_attempts"))


class Containers:
    """Several warm containers of one function, as Lambda scales out under parallel load: each
    invocation takes a free one (the local runner alone keeps one per function)."""

    def __init__(self, workers):
        import queue

        self.workers, self.free = workers, queue.Queue()
        for w in workers:
            self.free.put(w)

    def invoke(self, event, request_id):
        worker = self.free.get()
        try:
            return worker.invoke(event, request_id)
        finally:
            self.free.put(worker)

    def kill(self):
        for w in self.workers:
            w.kill()


@pytest.fixture(scope="session")
def local_api():
    """The local runner (python -m local.run) on a free port, on this run's throwaway database and
    AI stub, with three containers per function: (base URL, http status counter)."""
    from collections import Counter

    from local import s3 as local_s3
    from local.run import FunctionWorker, LocalRunner

    # The workers are separate processes, out of reach of this process's moto mock: they get a
    # local S3 server of their own, so nothing they do can reach AWS.
    s3 = local_s3.start(TEST_BUCKET)
    runner = LocalRunner(port=0, log=lambda msg: None, warm=False)
    url = runner.start()
    runner.workers = {name: Containers([FunctionWorker(fn, ROOT, runner.log, env=s3.env()) for _ in range(3)])
                      for name, fn in runner.template.functions.items()}
    statuses: Counter[int] = Counter()
    yield url, statuses
    runner.stop()
    s3.stop()
    global _runner_statuses
    _runner_statuses = statuses


_runner_statuses = None


def pytest_terminal_summary(terminalreporter):
    if _runner_statuses:
        s = _runner_statuses
        terminalreporter.write_line(f"Local runner answers: {sum(s.values())}, 5xx: {sum(n for k, n in s.items() if k >= 500)}")
    if _client is not None:
        s = _client.statuses
        terminalreporter.write_line(
            f"Lambda handler answers: {sum(s.values())} in all, "
            f"{sum(n for k, n in s.items() if 400 <= k < 500)} 4xx, "
            f"{sum(n for k, n in s.items() if k >= 500)} 5xx ({dict(sorted((k, n) for k, n in s.items() if k >= 500))})")


@pytest.fixture
def user(api):
    """A registered, logged-in user: (client, email, password, user_id)."""
    return api.new_user()


@pytest.fixture
def other_user(api):
    return api.new_user()


@pytest.fixture
def setting(monkeypatch):
    """Change settings for one test: `setting(QUOTA_DAILY_TOKENS=100)`; undone afterwards."""
    from shared.settings import reset_settings

    def change(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        reset_settings()

    yield change
    monkeypatch.undo()
    reset_settings()
