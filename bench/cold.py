"""One cold start: run as a fresh `python -S -I bench/cold.py <code_dir> <layer_dir> <repo_root>`
with a payload-2.0 event on stdin. sys.path is laid out as Lambda lays it out (/var/task = the
function's folder, then the layers' /opt/python = the dependency layer and the repository root
for `shared`), without the developer's site-packages. Prints the milliseconds from before the
import of `app` to the end of the first request, and the response's status code."""
import time

started = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

code_dir, layer_dir, repo_root = sys.argv[1:4]
sys.path[:0] = [code_dir, layer_dir, repo_root]
event = json.loads(sys.stdin.read())
started = time.perf_counter()
from app import handler  # noqa: E402

imported = time.perf_counter()
result = handler(event, None)
done = time.perf_counter()
print(json.dumps({"total_ms": (done - started) * 1000, "import_ms": (imported - started) * 1000,
                  "status": result["statusCode"]}))
