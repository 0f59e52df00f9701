"""The local runner behind `make dev`: every function of template.yaml behind one HTTP server.

    python -m local.run [--port 3000] [--host 127.0.0.1]      (PORT env var is the default port)

What it does, in order:
  1. DATABASE_URL unset/empty: start the embedded PostgreSQL (data in <repo>/.local/pgdata,
     kept across runs), create the database `iflychat` if missing, export DATABASE_URL.
     Otherwise use DATABASE_URL as given.
  2. Apply the schema with init_db.init_db(DATABASE_URL).
  3. OPENAI_API_KEY unset/empty: start local.ai_stub in-process, export OPENAI_BASE_URL and a dummy
     OPENAI_API_KEY, and say loudly that answers come from the stub.
  4. JWT_SECRET unset: a dev secret. COOKIE_SECURE defaults to false (plain http).
     S3_BUCKET unset: start local.s3 (moto's S3 server in-process, bucket created, objects in
     memory), export S3_BUCKET/S3_ENDPOINT_URL and dummy credentials, and hand every new object
     to the S3-triggered functions (the file processor) as an S3 event, as the bucket would.
  5. Read template.yaml: every AWS::Serverless::Function with HttpApi events gives routes
     (method + path, e.g. POST /chats/{chat_id}/messages) and the HttpApi's CorsConfiguration
     gives CORS. Nothing is hard-coded.
  6. Serve HTTP on 127.0.0.1:PORT until Ctrl-C/SIGTERM, then stop everything it started
     (workers, HTTP server, AI stub, embedded PostgreSQL) and exit 0.

Each request becomes an API Gateway HTTP API payload-2.0 event (build_event), is handed to the
function's Mangum handler, and the payload-2.0 response is turned back into HTTP (to_http).

Why a worker *process* per function (local/lambda_worker.py) and not threads in this process:
a Lambda container is a process of its own. Separate processes give each function its own
module-level state (shared.db's connection, settings read once from the environment, imports),
so the runner shows the real cold start, the real "one connection per container" behaviour and
catches a function importing what it should not - none of which threads sharing one interpreter
would show (two functions would share `shared.db._conn` and sys.modules). The price is small:
a subprocess speaking line-delimited JSON over its stdin/stdout. Each worker is a warm
container: state persists between invocations, a lock per function admits ONE invocation at a
time (others queue, as if the function's reserved concurrency were 1), different functions run
concurrently. A worker that crashes, times out or fails to import is replaced by a fresh one
on the next request ("a new container"), and one whose code (its CodeUri or shared/) changed on
disk is replaced too, so edits take effect without restarting `make dev`.

Where API Gateway differs from this runner: an unknown route answers 404 {"detail": "Not Found"}
(API Gateway says {"message": "Not Found"}), a known path with another method 405 (API Gateway
says 404); errors of the runner itself carry both "message" (API Gateway's field) and "detail"
(what the front end reads). A function error gives 500, a timeout 503 (API Gateway's 30 s
integration limit applies). Streaming responses are buffered by Mangum, as on Lambda.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit


REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 3000
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway
MAX_LAMBDA_PAYLOAD = 6 * 1024 * 1024  # synchronous invoke, request and response
INTEGRATION_TIMEOUT = 30.0  # API Gateway HTTP API
DEV_JWT_SECRET = "local-dev-jwt-secret-do-not-use-in-production-0123456789"

__all__ = [
    "Route", "Function", "CorsConfig", "Template", "load_template", "match_route", "build_event",
    "to_http", "LocalRunner", "serve", "main",
]


from local.apigw import (  # noqa: E402 - re-exported for the runner's users
    CorsConfig, Function, Route, Template, build_event, load_template, match_route, to_http,
)


def _json_error(status: int, detail: str, message: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    payload: dict[str, str] = {"detail": detail}
    if message:
        payload = {"message": message, "detail": detail}
    return status, [("Content-Type", "application/json")], json.dumps(payload).encode()


# ---------------------------------------------------------------------------------------------
# workers: one process per function ("a warm container")
# ---------------------------------------------------------------------------------------------
class FunctionError(Exception):
    def __init__(self, status: int, message: str, detail: str):
        super().__init__(detail)
        self.status, self.message, self.detail = status, message, detail


def _code_signature(dirs: Iterable[Path]) -> float:
    newest = 0.0
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = [s for s in subdirs if s != "__pycache__" and not s.startswith(".")]
            for f in files:
                if f.endswith(".py"):
                    try:
                        newest = max(newest, os.stat(os.path.join(root, f)).st_mtime)
                    except OSError:
                        pass
    return newest


class FunctionWorker:
    """A function's warm container: a subprocess running local.lambda_worker."""

    def __init__(self, fn: Function, repo_root: Path, log=print, env: dict[str, str] | None = None):
        self.fn = fn
        self.repo_root = repo_root
        self.extra_env = dict(env or {})  # laid over os.environ for this container
        self.lock = threading.Lock()  # one invocation at a time, as in one Lambda container
        self.log = log
        self._proc: subprocess.Popen | None = None
        self._out: queue.Queue = queue.Queue()
        self._ready = False
        self._signature = 0.0
        self._watch = [fn.code_dir, repo_root / "shared"]

    # -- process management -------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join([str(self.repo_root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["AWS_LAMBDA_FUNCTION_NAME"] = self.fn.name
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.fn.memory_mb)
        env["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST"
        env["LAMBDA_TASK_ROOT"] = str(self.fn.code_dir)
        env.setdefault("AWS_REGION", "us-east-1")
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        return env

    def spawn(self) -> None:
        """Start a fresh container (does not wait for its init)."""
        self.kill()
        self._signature = _code_signature(self._watch)
        self._out = queue.Queue()
        self._ready = False
        if not self.fn.code_dir.is_dir():
            self._out.put({"type": "init_error", "errorType": "FileNotFoundError",
                           "errorMessage": f"CodeUri {self.fn.code_dir} does not exist"})
            return
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.lambda_worker", str(self.fn.code_dir), self.fn.handler, self.fn.name,
             str(self.fn.memory_mb)],
            cwd=self.fn.code_dir, env=self._env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
            start_new_session=True,  # Ctrl-C in the terminal reaches the runner only; it stops us
        )
        self._proc = proc
        out = self._out
        threading.Thread(target=self._pump_stdout, args=(proc, out), daemon=True, name=f"{self.fn.name}-out").start()
        threading.Thread(target=self._pump_stderr, args=(proc,), daemon=True, name=f"{self.fn.name}-err").start()

    @staticmethod
    def _pump_stdout(proc: subprocess.Popen, out: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                out.put(json.loads(line))
            except ValueError:
                sys.stderr.write(line)
        out.put(None)  # EOF: the process is gone

    def _pump_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(f"  [{self.fn.name}] {line}")
            sys.stderr.flush()

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        self._ready = False
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # EOF: an idle worker exits by itself
        except OSError:
            pass
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3.0)

    def _wait_ready(self, timeout: float) -> None:
        if self._ready:
            return
        try:
            msg = self._out.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise FunctionError(503, "Service Unavailable", f"{self.fn.name} did not finish its init within {timeout:.0f} s")
        if msg and msg.get("type") == "ready":
            self._ready = True
            self.log(f"  {self.fn.name}: cold start, init {msg.get('init_ms')} ms")
            return
        self.kill()
        if msg is None:
            raise FunctionError(500, "Internal Server Error", f"{self.fn.name} crashed during init (see its log above)")
        raise FunctionError(500, "Internal Server Error",
                            f"{self.fn.name} failed to initialise: {msg.get('errorType')}: {msg.get('errorMessage')}")

    def warm(self, timeout: float = 30.0) -> str | None:
        """Start the container and wait for its init; the error text, or None when ready."""
        with self.lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self.spawn()
                self._wait_ready(timeout)
                return None
            except FunctionError as exc:
                return exc.detail

    # -- invocation ---------------------------------------------------------------------------
    def invoke(self, event: dict, request_id: str) -> Any:
        with self.lock:
            if self._proc is None or self._proc.poll() is not None:
                self.spawn()
            elif _code_signature(self._watch) != self._signature:
                self.log(f"  {self.fn.name}: code changed on disk, starting a new container")
                self.spawn()
            self._wait_ready(max(10.0, self.fn.timeout))
            timeout = min(self.fn.timeout, INTEGRATION_TIMEOUT)
            request = {"event": event, "request_id": request_id,
                       "deadline_ms": int((time.time() + self.fn.timeout) * 1000)}
            try:
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
            except (OSError, AssertionError):
                self.kill()
                raise FunctionError(500, "Internal Server Error", f"{self.fn.name}'s container died; retry")
            try:
                msg = self._out.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise FunctionError(503, "Service Unavailable",
                                    f"{self.fn.name} did not answer within {timeout:.0f} s "
                                    f"(Lambda Timeout {self.fn.timeout:.0f} s, API Gateway limit {INTEGRATION_TIMEOUT:.0f} s)")
            if msg is None:
                self.kill()
                raise FunctionError(500, "Internal Server Error", f"{self.fn.name} crashed (see its log above)")
            if msg.get("type") == "error":
                raise FunctionError(500, "Internal Server Error",
                                    f"{self.fn.name} raised {msg.get('errorType')}: {msg.get('errorMessage')}")
            return msg.get("result")


# ---------------------------------------------------------------------------------------------
# the HTTP front door (what API Gateway does)
# ---------------------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    runner: "LocalRunner"

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up on a kept-alive connection (curl after a stream) is no error;
        # socketserver would print a traceback for it. Anything else still gets one.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 120

    def log_message(self, fmt, *args):  # one line per request is printed by _handle
        pass

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        started = time.perf_counter()
        runner = self.server.runner
        function = "-"
        try:
            body = self._read_body()
            if body is None:
                self.close_connection = True
                status, headers, data = _json_error(413, "Request body larger than API Gateway's 10 MB", "Request Entity Too Large")
            else:
                status, headers, data, function = runner.dispatch(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0],
                    self.request_version)
            self._send(status, headers, data)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
            self.close_connection = True
        except Exception as exc:  # a bug in the runner itself
            status = 502
            import traceback

            traceback.print_exc()
            try:
                self._send(*_json_error(502, f"local runner error: {exc}", "Bad Gateway"))
            except OSError:
                pass
        ms = (time.perf_counter() - started) * 1000
        runner.log(f"{self.command} {self.path.split('?', 1)[0]} {status} {ms:.1f}ms {function}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

    def __getattr__(self, name: str):
        # Any other method (TRACE, PROPFIND, ...) is routed too, so it gets API Gateway's JSON
        # 404/405 instead of http.server's HTML 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, headers too long) as JSON too."""
        self.close_connection = True
        try:
            self._send(*_json_error(code, message or explain or "Bad request", message or "Bad request"))
        except OSError:
            pass


class LocalRunner:
    """Everything `make dev` runs. `start()` returns the base URL; `stop()` undoes it all."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", repo_root: Path = REPO_ROOT,
                 *, log=None, warm: bool = True):
        self.port = DEFAULT_PORT if port is None else port
        self.host = host
        self.repo_root = Path(repo_root)
        self.warm = warm
        self._print_lock = threading.Lock()
        self.log = log or self._log
        self.template: Template | None = None
        self.workers: dict[str, FunctionWorker] = {}
        self.pg = None  # local.embedded_pg.EmbeddedPostgres when we started one
        self.stub = None  # local.ai_stub.AIStub when we started one
        self.s3 = None  # local.s3.LocalS3 when we started one
        self._http: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.url: str | None = None

    def _log(self, msg: str) -> None:
        with self._print_lock:
            print(msg, flush=True)

    # -- startup ------------------------------------------------------------------------------
    def start(self) -> str:
        try:
            self._prepare_environment()
            self.template = load_template(self.repo_root / "template.yaml")
            self.workers = {name: FunctionWorker(fn, self.repo_root, self.log) for name, fn in self.template.functions.items()}
            self._http = _HTTPServer((self.host, self.port), _Handler)
            self._http.runner = self
            self.port = self._http.server_address[1]
            self.url = f"http://{self.host}:{self.port}"
            if self.s3 is not None:
                self.s3.watch(self._on_s3_event)
            if self.warm:
                self._warm_all()
            self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                                                 name="local-http", daemon=True)
            self._http_thread.start()
            self._print_routes()
            return self.url
        except BaseException:
            self.stop()
            raise

    def _prepare_environment(self) -> None:
        env = os.environ
        if not env.get("DATABASE_URL"):
            from local import embedded_pg

            data_dir = self.repo_root / ".local" / "pgdata"
            self.log(f"Starting the embedded PostgreSQL (data in {data_dir}) ...")
            self.pg = embedded_pg.start(data_dir)
            env["DATABASE_URL"] = embedded_pg.create_database(self.pg.url, "iflychat")
            self.log(f"  DATABASE_URL={env['DATABASE_URL']}")
        else:
            self.log("Using DATABASE_URL from the environment.")
        spec = importlib.util.spec_from_file_location("iflychat_init_db", self.repo_root / "init_db.py")
        assert spec and spec.loader
        init_db = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(init_db)
        init_db.init_db(env["DATABASE_URL"])

        if not env.get("OPENAI_API_KEY"):
            from local.ai_stub import AIStub

            self.stub = AIStub(model=env.get("OPENAI_MODEL") or "gpt-4o-mini")
            env["OPENAI_BASE_URL"] = self.stub.start()
            env["OPENAI_API_KEY"] = "sk-local-stub-not-a-real-key"
            bar = "!" * 78
            self.log(f"{bar}\n!!  OPENAI_API_KEY is not set: AI answers come from the LOCAL STUB at\n"
                     f"!!  {env['OPENAI_BASE_URL']} (\"Stub reply to: ...\"), not from OpenAI.\n"
                     f"!!  Set OPENAI_API_KEY to use the real service.\n{bar}")
        if not env.get("JWT_SECRET"):
            env["JWT_SECRET"] = DEV_JWT_SECRET
            self.log("JWT_SECRET is not set: using a fixed DEV secret (never use it in production).")
        env.setdefault("COOKIE_SECURE", "false")
        if not env.get("S3_BUCKET"):
            from local import s3 as local_s3

            self.s3 = local_s3.start()
            env.update(self.s3.env())
            self.log(f"S3_BUCKET is not set: files go to a LOCAL in-memory S3 (moto) at {self.s3.endpoint_url}, "
                     f"bucket {self.s3.bucket}; they are gone when the runner stops.")
        else:
            self.log(f"Using S3_BUCKET={env['S3_BUCKET']} from the environment.")

    def _on_s3_event(self, event: dict) -> None:
        """An object landed in the local bucket: invoke the S3-triggered functions, as S3 would."""
        key = event["Records"][0]["s3"]["object"]["key"]
        for worker in self.workers.values():
            if worker.fn.s3_triggered:
                started = time.perf_counter()
                result = worker.invoke(event, str(uuid.uuid4()))
                ms = (time.perf_counter() - started) * 1000
                self.log(f"S3 ObjectCreated {key} {ms:.1f}ms {worker.fn.name}: {json.dumps(result)[:200]}")

    def _warm_all(self) -> None:
        results: dict[str, str | None] = {}

        def go(name: str, worker: FunctionWorker) -> None:
            results[name] = worker.warm()

        threads = [threading.Thread(target=go, args=item, daemon=True) for item in self.workers.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, err in sorted(results.items()):
            if err:
                self.log(f"  WARNING {name} does not start: {err} (its routes answer 500 until it is fixed)")

    def _print_routes(self) -> None:
        assert self.template is not None
        lines = [f"IFlyChat API running on {self.url}  (Ctrl-C stops everything)", "Routes (from template.yaml):"]
        width = max((len(r.path) for r in self.template.routes), default=10)
        for r in sorted(self.template.routes, key=lambda r: (r.path, r.method)):
            lines.append(f"  {r.method:<7} {r.path:<{width}}  -> {r.function}")
        if self.template.cors:
            lines.append(f"CORS: origins {', '.join(self.template.cors.allow_origins) or '-'}"
                         f"{' with credentials' if self.template.cors.allow_credentials else ''}")
        self.log("\n".join(lines))

    # -- per request --------------------------------------------------------------------------
    def dispatch(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                 source_ip: str = "127.0.0.1", protocol: str = "HTTP/1.1"):
        """Handle one request: (status, header pairs, body, function name or '-')."""
        assert self.template is not None
        cors = self.template.cors
        origin = next((v for k, v in headers if k.lower() == "origin"), None)
        path = urlsplit(target).path or "/"

        if method == "OPTIONS" and cors is not None and origin and any(k.lower() == "access-control-request-method" for k, _ in headers):
            return (204, self._preflight_headers(origin), b"", "-")

        if method == "GET" and path in ("/openapi.json", "/docs"):
            return (*self._api_docs(path), "-")

        route, params, allowed = match_route(self.template.routes, method, path)
        if route is None:
            if allowed:
                status, hdrs, data = _json_error(405, f"Method {method} not allowed on {path}; allowed: {', '.join(allowed)}")
                hdrs.append(("Allow", ", ".join(allowed)))
            else:
                status, hdrs, data = _json_error(404, "Not Found")
            return (status, self._cors_headers(hdrs, origin), data, "-")

        request_id = str(uuid.uuid4())
        event = build_event(method, target, headers, body, route=route, path_parameters=params,
                            source_ip=source_ip, protocol=protocol, request_id=request_id)
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD:
            status, hdrs, data = _json_error(413, "Request too large for a synchronous Lambda invocation (6 MB payload)",
                                             "Request Entity Too Large")
            return (status, self._cors_headers(hdrs, origin), data, route.function)
        try:
            result = self.workers[route.function].invoke(event, request_id)
            if len(json.dumps(result)) > MAX_LAMBDA_PAYLOAD:
                raise FunctionError(500, "Internal Server Error", f"{route.function} returned more than Lambda's 6 MB payload")
            status, hdrs, data = to_http(result)
        except FunctionError as exc:
            self.log(f"  {exc.detail}")
            status, hdrs, data = _json_error(exc.status, exc.detail, exc.message)
        hdrs.append(("Apigw-Requestid", request_id))
        return (status, self._cors_headers(hdrs, origin), data, route.function)

    def _api_docs(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """GET /openapi.json: the merged document, made fresh by a subprocess (this process
        imports no function code); GET /docs: Swagger UI on it."""
        if path == "/docs":
            from local.openapi import docs_html

            return 200, [("Content-Type", "text/html; charset=utf-8")], docs_html().encode()
        made = subprocess.run([sys.executable, "-m", "local.openapi"], cwd=self.repo_root,
                              capture_output=True, timeout=60)
        if made.returncode != 0:
            self.log(f"  openapi: {made.stderr.decode(errors='replace')[-2000:]}")
            return _json_error(500, "Could not build the OpenAPI document; see the runner's log")
        return 200, [("Content-Type", "application/json")], made.stdout

    def _preflight_headers(self, origin: str) -> list[tuple[str, str]]:
        cors = self.template.cors if self.template else None
        if cors is None or not cors.origin_allowed(origin):
            return []
        out = [("Access-Control-Allow-Origin", origin if "*" not in cors.allow_origins or cors.allow_credentials else "*")]
        if cors.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        if cors.allow_methods:
            out.append(("Access-Control-Allow-Methods", ",".join(cors.allow_methods)))
        if cors.allow_headers:
            out.append(("Access-Control-Allow-Headers", ",".join(h.lower() for h in cors.allow_headers)))
        if cors.max_age is not None:
            out.append(("Access-Control-Max-Age", str(cors.max_age)))
        out.append(("Vary", "Origin"))
        return out

    def _cors_headers(self, headers: list[tuple[str, str]], origin: str | None) -> list[tuple[str, str]]:
        """With a CorsConfiguration, API Gateway ignores the integration's CORS headers and sets its own."""
        cors = self.template.cors if self.template else None
        if cors is None:
            return headers
        out = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        if cors.origin_allowed(origin):
            out.append(("Access-Control-Allow-Origin", origin if "*" not in cors.allow_origins or cors.allow_credentials else "*"))
            if cors.allow_credentials:
                out.append(("Access-Control-Allow-Credentials", "true"))
            if cors.expose_headers:
                out.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
            if not any(k.lower() == "vary" for k, _ in out):
                out.append(("Vary", "Origin"))
        return out

    # -- shutdown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this runner started; safe to call twice or after a failed start."""
        http, self._http = self._http, None
        if http is not None:
            if self._http_thread is not None:
                http.shutdown()
            http.server_close()
        for worker in self.workers.values():
            try:
                worker.kill()
            except Exception as exc:  # keep going: postgres must stop too
                self.log(f"  could not stop {worker.fn.name}: {exc}")
        stub, self.stub = self.stub, None
        if stub is not None:
            stub.stop()
        s3, self.s3 = self.s3, None
        if s3 is not None:
            s3.stop()
        pg, self.pg = self.pg, None
        if pg is not None:
            self.log("Stopping the embedded PostgreSQL ...")
            pg.stop()


def serve(port: int | None = None, host: str = "127.0.0.1", *, ready_event: threading.Event | None = None,
          stop_event: threading.Event | None = None, repo_root: Path = REPO_ROOT) -> int:
    """Run until `stop_event` is set (or KeyboardInterrupt); `ready_event` is set once serving.

    Usable from a thread (signals are main()'s business). port=0 picks a free port; the chosen
    one is in os.environ["LOCAL_RUNNER_URL"] once `ready_event` is set.
    """
    stop_event = stop_event or threading.Event()
    runner = LocalRunner(port, host, repo_root)
    try:
        url = runner.start()
        os.environ["LOCAL_RUNNER_URL"] = url
        if ready_event is not None:
            ready_event.set()
        while not stop_event.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the shutdown finish
        try:
            runner.log("Shutting down ...")
            runner.stop()
            runner.log("Stopped.")
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every function of template.yaml behind a local HTTP API.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    stop_event = threading.Event()
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still stop us.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop_event.set())
    try:
        return serve(args.port, args.host, stop_event=stop_event)
    except OSError as exc:
        print(f"local.run: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
