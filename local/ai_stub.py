"""A local OpenAI-compatible server for `make dev` and the tests (stdlib only).

    stub = AIStub()                  # or: with AIStub() as stub: ...
    base_url = stub.start()          # "http://127.0.0.1:<ephemeral port>/v1"
    client = openai.OpenAI(base_url=base_url, api_key="anything")
    stub.script({"reply": "hi"}, {"status": 429})   # FIFO: one behaviour per chat request
    stub.requests                    # JSON bodies of /chat/completions calls, in order
    stub.reset()                     # forget scripts and recorded requests
    stub.stop()

    python -m local.ai_stub --port 8081      # the same, as a process

Endpoints: `POST /v1/chat/completions` (plain and `stream=True`) and `GET /v1/models`.

Behaviours (dicts; keys combine; each applies to the next chat request, then the default resumes):

    {"reply": "text"}                        answer this text
      "usage": False                         ... without a `usage` object
      "prompt_tokens": n, "completion_tokens": n   ... with these counts
      "finish_reason": "content_filter"      ... with this finish reason (default "stop")
      "chunks": ["a", "b"]                   streaming: exactly these deltas (reply = their join)
    {"status": 429, "message": "..."}        an OpenAI-shaped error {"error": {message, type, code}};
      "type": ..., "code": ..., "retry_after": 1    (429 carries a `retry-after` header)
    {"delay": 2.5}                           wait before answering (client timeouts)
    {"disconnect": True}                     close the socket without answering
    {"stream_error_after": n}                streaming: send n content deltas, then abort the
                                             connection (the client sees a broken stream)
    "repeat": n                              apply this behaviour to the next n requests
                                             (the openai client retries 429/5xx/timeouts
                                             `max_retries` times, so script the error repeat=1+retries)

Default, deterministic: if a system/developer message contains the word "title", the reply is a
short title made of the first words of the last user message; otherwise it is
"Stub reply to: <last user message, first 200 chars>". Token counts are len(text)/4 (min 1),
returned in the usage object; a stream sends `chat.completion.chunk` SSE lines, a final usage
chunk only when `stream_options.include_usage` is true, then `data: [DONE]`.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["AIStub", "default_reply", "estimate_tokens"]

DEFAULT_MODEL = "gpt-4o-mini"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text"))
    return ""


def _title_from(text: str) -> str:
    words = re.findall(r"[\w'-]+", text)[:5]
    title = " ".join(words)[:60].strip()
    return title[:1].upper() + title[1:] if title else "New chat"


def default_reply(body: dict) -> str:
    """The deterministic answer to a chat-completions request body."""
    messages = body.get("messages") or []
    system = " ".join(_text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    users = [m for m in messages if m.get("role") == "user"]
    last_user = _text_of(users[-1].get("content")) if users else ""
    if re.search(r"\btitle\b", system, re.IGNORECASE):
        return _title_from(last_user)
    reply = f"Stub reply to: {last_user[:200]}"
    context = [_text_of(m.get("content")) for m in messages[1:] if m.get("role") in ("system", "developer")]
    if context:  # say what else the AI was shown (attached documents), so a demo can see it
        reply += f" (with {sum(len(c) for c in context)} characters of context: {' '.join(context)[:120]!r})"
    return reply


def _split_deltas(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [""]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: "AIStub"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections end eventually

    def log_message(self, fmt, *args):  # quiet; the stub's own `verbose` flag prints requests
        if self.server.stub.verbose:
            super().log_message(fmt, *args)

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.stub._connections.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.stub._connections.discard(self.connection)

    # ---- plumbing -------------------------------------------------------------------------
    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, type_: str | None = None, code: str | None = None, headers=None):
        default_type, default_code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        self._json(status, {"error": {"message": message, "type": type_ or default_type, "param": None,
                                      "code": code if code is not None else default_code}}, headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- routes ---------------------------------------------------------------------------
    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            stub = self.server.stub
            models = [stub.model] + sorted({r.get("model") for r in stub.requests if r.get("model")} - {stub.model})
            self._json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "iflychat-local-stub"} for m in models]})
        else:
            self._error(404, f"Unknown request URL: GET {self.path}", code="unknown_url")

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"Unknown request URL: POST {self.path}", code="unknown_url")
            return
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            self._error(400, "We could not parse the JSON body of your request.")
            return
        stub = self.server.stub
        behaviour = stub._record_and_next(body)
        try:
            self._answer(body, behaviour)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _answer(self, body: dict, b: dict) -> None:
        stub = self.server.stub
        if b.get("delay"):
            if stub._stopping.wait(float(b["delay"])):
                self._drop()
                return
        if b.get("disconnect"):
            self._drop()
            return
        if b.get("status") and int(b["status"]) >= 400:
            status = int(b["status"])
            headers = {"retry-after": str(b.get("retry_after", 1))} if status == 429 else None
            message = b.get("message") or {429: "Rate limit reached (local stub)", 500: "The server had an error while processing your request (local stub)", 503: "The engine is currently overloaded (local stub)"}.get(status, f"Error {status} (local stub)")
            self._error(status, message, b.get("type"), b.get("code"), headers)
            return
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            self._error(400, "'model' and 'messages' are required properties.")
            return

        if "chunks" in b:
            chunks = [str(c) for c in b["chunks"]]
            reply = "".join(chunks)
        else:
            reply = str(b["reply"]) if "reply" in b else default_reply(body)
            chunks = _split_deltas(reply)
        prompt = "\n".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
        usage = {
            "prompt_tokens": int(b.get("prompt_tokens", estimate_tokens(prompt))),
            "completion_tokens": int(b.get("completion_tokens", estimate_tokens(reply))),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = b.get("finish_reason", "stop")
        completion_id = f"chatcmpl-stub{uuid.uuid4().hex[:20]}"
        created = int(time.time())
        model = body["model"]

        if not body.get("stream"):
            payload = {
                "id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_local_stub",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": None},
                             "logprobs": None, "finish_reason": finish}],
            }
            if b.get("usage", True):
                payload["usage"] = usage
            self._json(200, payload)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and b.get("usage", True)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj) -> None:
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def chunk(delta: dict, finish_reason=None, choices=True) -> dict:
            c = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_local_stub",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else []}
            if include_usage:
                c["usage"] = None
            return c

        error_after = b.get("stream_error_after")
        send(chunk({"role": "assistant", "content": "", "refusal": None}))
        for i, piece in enumerate(chunks):
            if error_after is not None and i >= int(error_after):
                self._drop()  # no terminating chunk: the client sees an incomplete body
                return
            if b.get("chunk_delay"):
                time.sleep(float(b["chunk_delay"]))
            send(chunk({"content": piece}))
        if error_after is not None:
            self._drop()
            return
        send(chunk({}, finish_reason=finish))
        if include_usage:
            final = chunk({}, choices=False)
            final["usage"] = usage
            send(final)
        send(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class AIStub:
    """An OpenAI-compatible server on 127.0.0.1 in a daemon thread. See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, model: str = DEFAULT_MODEL, verbose: bool = False):
        self.host, self.port, self.model, self.verbose = host, port, model, verbose
        self.requests: list[dict] = []
        self._script: deque[dict] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    # ---- scripting ------------------------------------------------------------------------
    def script(self, *behaviours: dict) -> "AIStub":
        """Queue behaviours; each applies to the next chat request (FIFO)."""
        with self._lock:
            for b in behaviours:
                if not isinstance(b, dict):
                    raise TypeError(f"a behaviour is a dict, not {type(b).__name__}")
                self._script.append(dict(b))
        return self

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        """How many scripted behaviours have not been used yet."""
        with self._lock:
            return sum(int(b.get("repeat", 1)) for b in self._script)

    def _record_and_next(self, body: dict) -> dict:
        with self._lock:
            self.requests.append(body)
            if not self._script:
                return {}
            b = self._script[0]
            left = int(b.get("repeat", 1)) - 1
            if left > 0:
                b["repeat"] = left
            else:
                self._script.popleft()
            return b

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving; return the base URL (ends in /v1)."""
        if self._server is not None:
            return self.base_url  # type: ignore[return-value]
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.stub = self
        self._server = server
        self.port = server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ai-stub", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> "AIStub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible stub server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    stub = AIStub(args.host, args.port, model=args.model, verbose=not args.quiet)
    url = stub.start()
    print(f"AI stub listening: OPENAI_BASE_URL={url} (any OPENAI_API_KEY works)", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
