"""One warm "Lambda container" for local.run: imports a function's handler once and runs invocations.

Started by local.run as `python -m local.lambda_worker <code_dir> <handler> <function_name> <memory_mb>`
with the function's directory as the working directory and first on sys.path (like /var/task),
the repository root second (like the layers in /opt/python). Stdlib only, so it adds nothing to
the function's cold start beyond the interpreter.

Protocol: one JSON object per line. The worker writes {"type": "ready", "init_ms"} or
{"type": "init_error", ...} once, then for each request line {"event", "request_id",
"deadline_ms"} on stdin answers {"type": "result", "result"} or {"type": "error", ...} on the
original stdout. The function's own prints go to stderr (the runner prefixes them), as
Lambda sends them to CloudWatch. EOF on stdin (the runner is gone) ends the worker.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
import traceback


class LambdaContext:
    """The attributes of the Lambda Python context object that code commonly reads."""

    def __init__(self, function_name: str, memory_mb: int, request_id: str, deadline_ms: int):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _error(kind: str, exc: BaseException) -> dict:
    return {"type": kind, "errorType": type(exc).__name__, "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)}


def main() -> None:
    code_dir, handler_spec, function_name, memory_mb = sys.argv[1:5]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # the function's prints go to stderr

    def send(msg: dict) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    started = time.perf_counter()
    try:
        module_path, _, attr = handler_spec.rpartition(".")
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        file = os.path.join(code_dir, *module_path.split(".")) + ".py"
        unique = f"lambda_{function_name}_{module_path.replace('.', '_')}"
        spec = importlib.util.spec_from_file_location(unique, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"Unable to import module '{module_path}': no file {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
        handler = getattr(module, attr)
    except BaseException as exc:  # Runtime.ImportModuleError / HandlerNotFound
        traceback.print_exc()
        send(_error("init_error", exc))
        return
    send({"type": "ready", "init_ms": round((time.perf_counter() - started) * 1000, 1)})

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        ctx = LambdaContext(function_name, int(memory_mb), request["request_id"], request["deadline_ms"])
        try:
            result = handler(request["event"], ctx)
            send({"type": "result", "result": result})
        except Exception as exc:
            traceback.print_exc()
            send(_error("error", exc))


if __name__ == "__main__":
    main()
