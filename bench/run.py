"""`make bench`: warm latency (product vs floor vs peer), round trips, cold start, scale and size,
in one run. Prints a table, writes bench/results.json and bench/results.png.

    python -m bench.run                 # embedded PostgreSQL under bench/.data (kept between runs)
    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.run
    python -m bench.run --quick         # fewer invocations, for a smoke run

The database `iflychat_bench` is created on that server and kept with its data for later runs.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
DATA = HERE / ".data"

ENDPOINTS = ["GET /users/me", "GET /chats", "GET /chats/{id}/messages", "POST /chats", "POST /chats/{id}/messages"]
FUNCTIONS = {"health": ("GET", "/health"), "auth": ("POST", "/auth/login"), "users": ("GET", "/users/me"),
             "chats": ("GET", "/chats"), "messages": ("GET", "/chats/{id}/messages")}
NEEDS_AI_OR_S3 = {"chats", "messages"}  # name a chat / answer a message with the AI (openai imported lazily)


_terminal = sys.stdout  # the run's own lines; sys.stdout takes the request log's lines (see main)


def say(msg: str) -> None:
    print(msg, file=_terminal, flush=True)


# --------------------------------------------------------------------------- setup


def database() -> str:
    from local import embedded_pg

    server = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if not server:
        server = embedded_pg.start(DATA / "pg").url
    from bench import data

    url = embedded_pg.create_database(server, data.DB_NAME)
    if data.stale_schema(url):
        say("  the kept benchmark database has another checkout's migrations: loading it afresh")
        embedded_pg.drop_database(server, data.DB_NAME)
        url = embedded_pg.create_database(server, data.DB_NAME)
    return url


def start_ai_stub() -> tuple[subprocess.Popen, str]:
    """The AI stub in its own process, so it takes no CPU from the process being measured."""
    proc = subprocess.Popen([sys.executable, "-m", "local.ai_stub", "--port", "0", "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, line.split("OPENAI_BASE_URL=", 1)[1].split()[0]


def environment(database_url: str, ai_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "JWT_SECRET": "bench-secret-0123456789abcdef0123456789abcdef",
            "BCRYPT_ROUNDS": "4", "OPENAI_API_KEY": "bench-key", "OPENAI_BASE_URL": ai_url,
            "OPENAI_MAX_RETRIES": "0", "STAGE": "bench", "FRONTEND_ORIGIN": "http://localhost:5173",
            # quotas high enough never to refuse the writer's sends, but still reserved and settled
            "QUOTA_DAILY_TOKENS": "1000000000000", "QUOTA_CALLS_PER_MINUTE": "1000000000"}


def cookie(name: str) -> str:
    import time as _t

    from bench import data
    from shared.security import create_token

    return "iflychat_session=" + create_token(data.uid(name), data.sid(name), _t.time() + 3600)


class Requests:
    """Payload-2.0 events for the benchmark's calls, made as API Gateway makes them, and the
    functions' real handlers (imported once each: warm containers)."""

    def __init__(self):
        from local.apigw import InProcess

        self.functions = InProcess(ROOT / "template.yaml")

    def event(self, method: str, path: str, who: str, body: dict | None = None, query: str = "") -> dict:
        from local.apigw import build_event

        route, params, _ = self.functions.match(method, path)
        headers = [("cookie", cookie(who))] + ([("content-type", "application/json")] if body is not None else [])
        return build_event(method, f"{path}?{query}" if query else path, headers,
                           json.dumps(body).encode() if body is not None else b"", route=route, path_parameters=params)

    def handler(self, method: str, path: str) -> Callable:
        return self.functions.handler(self.functions.match(method, path)[0].function)


def calls(req: Requests) -> dict[str, Callable[[], tuple[str, str, dict]]]:
    """For each endpoint: a maker of (method, path, event) for one more invocation."""
    from bench import data

    main_chat, writer_chat = data.chat_id("main"), data.chat_id("writer")
    n = iter(range(10**9))

    def make(method, path, who, body=None, query=""):
        return lambda: (method, path, req.event(method, path, who, body() if callable(body) else body, query))

    return {
        "GET /users/me": make("GET", "/users/me", "main"),
        "GET /chats": make("GET", "/chats", "main", query="limit=20&offset=0"),
        "GET /chats/{id}/messages": make("GET", f"/chats/{main_chat}/messages", "main", query="limit=100&offset=0"),
        "POST /chats": make("POST", "/chats", "writer", lambda: {"title": f"Benchmark chat {next(n)}"}),
        "POST /chats/{id}/messages": make("POST", f"/chats/{writer_chat}/messages", "writer",
                                          lambda: {"content": f"Benchmark question number {next(n)}?"}),
    }


# --------------------------------------------------------------------------- warm latency


def timings(handler: Callable, make: Callable, n: int, counter: Callable[[], int] | None = None) -> tuple[list[float], int | None]:
    """Invoke `n` times; return the latencies in ms and the round trips of one invocation."""
    out, trips = [], None
    gc.collect()
    for i in range(n):
        _, _, event = make()
        before = counter() if counter and i == 0 else 0
        t0 = time.perf_counter()
        res = handler(event, None)
        out.append((time.perf_counter() - t0) * 1000)
        if res["statusCode"] >= 300:
            raise SystemExit(f"bench: {event['routeKey']} answered {res['statusCode']}: {res.get('body')}")
        if counter and i == 0:
            trips = counter() - before
    return out, trips


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def warm(req: Requests, n: int, rounds: int) -> list[dict[str, Any]]:
    from bench import floor, peer
    from shared import db

    variants = {
        "product": (lambda m, p: req.handler(m, p), lambda: db.statements_sent),
        "floor": (lambda m, p: floor.handler, lambda: floor.statements_sent),
        "peer": (lambda m, p: peer.handler, lambda: peer.round_trips),
    }
    rows = []
    for endpoint, make in calls(req).items():
        method, path, _ = make()
        floor.capture(endpoint, lambda: timings(req.handler(method, path), make, 1))
        samples: dict[str, list[float]] = {v: [] for v in variants}
        trips: dict[str, int] = {}
        for name, (get, counter) in variants.items():  # warm every container first
            timings(get(method, path), make, 30)
        for r in range(rounds):  # interleaved, so drift on a shared machine hits all three alike
            for name, (get, counter) in variants.items():
                got, t = timings(get(method, path), make, n // rounds, counter if r == 0 else None)
                samples[name] += got
                if t is not None:
                    trips[name] = t
        row = {"endpoint": endpoint, "p50_ms": statistics.median(samples["product"]),
               "p95_ms": pct(samples["product"], 95), "floor_p50_ms": statistics.median(samples["floor"]),
               "peer_p50_ms": statistics.median(samples["peer"]), "round_trips": trips["product"],
               "floor_p95_ms": pct(samples["floor"], 95), "peer_p95_ms": pct(samples["peer"], 95),
               "floor_round_trips": trips["floor"], "peer_round_trips": trips["peer"]}
        rows.append(row)
        say(f"  {endpoint:28} p50 {row['p50_ms']:6.2f} ms  floor {row['floor_p50_ms']:6.2f}  "
            f"peer {row['peer_p50_ms']:6.2f}  round trips {row['round_trips']}")
    return rows


def scale(req: Requests, n: int) -> list[dict[str, Any]]:
    from bench import data

    rows = []
    for endpoint, (method, path, query) in {
        "GET /chats": ("GET", "/chats", "limit=10&offset=0"),  # the same page size at both scales
        "GET /chats/{id}/messages": ("GET", "/chats/{chat}/messages", "limit=10&offset=0"),
    }.items():
        samples: dict[str, list[float]] = {"small": [], "large": []}
        for r in range(7):  # interleaved, so drift on a shared machine hits both alike
            for who in ("small", "large"):
                p = path.replace("{chat}", str(data.chat_id(who)))
                handler = req.handler(method, p)
                make = lambda p=p, who=who: (method, p, req.event(method, p, who, query=query))  # noqa: E731
                if r == 0:
                    timings(handler, make, 30)
                else:
                    samples[who] += timings(handler, make, n // 6)[0]
        p50 = {who: statistics.median(v) for who, v in samples.items()}
        rows.append({"endpoint": endpoint, "p50_small_ms": p50["small"], "p50_large_ms": p50["large"]})
        say(f"  {endpoint:28} 10 rows {p50['small']:6.2f} ms   10,000 rows {p50['large']:6.2f} ms")
    return rows


# --------------------------------------------------------------------------- cold start


def local_layer() -> Path:
    """The dependency layer installed for this machine's Python, as Lambda would see /opt/python:
    without the developer's extra packages (e.g. `cryptography`, which moto brings and PyJWT then imports)."""
    reqs = (ROOT / "layers/deps/requirements.txt").read_text()
    target = DATA / f"layer-local-py{sys.version_info.major}{sys.version_info.minor}"
    stamp = target / ".requirements"
    if not (stamp.exists() and stamp.read_text() == reqs):
        say(f"  installing the dependency layer for cold starts into {target.relative_to(ROOT)} ...")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade",
                        "--target", str(target), "-r", str(ROOT / "layers/deps/requirements.txt")], check=True)
        stamp.write_text(reqs)
    return target


def cold(req: Requests, runs: int, env: dict[str, str]) -> list[dict[str, Any]]:
    from bench import data

    layer = local_layer()
    child_env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **env}

    def once(code_dir: Path, event: dict) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-S", "-I", str(HERE / "cold.py"), str(code_dir), str(layer), str(ROOT)],
                             input=json.dumps(event), capture_output=True, text=True, env=child_env, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if result["status"] >= 500:
            raise SystemExit(f"bench: cold start of {code_dir.name} answered {result['status']}: {out.stderr[-2000:]}")
        return result["total_ms"], result["import_ms"]

    from local.apigw import build_event

    bare_event = build_event("GET", "/hello", [])
    events = {}
    for fn, (method, path) in FUNCTIONS.items():
        path = path.replace("{id}", str(data.chat_id("main")))
        body = {"email": "nobody@example.com", "password": "wrong password"} if fn == "auth" else None
        events[fn] = req.event(method, path, "main", body)
    samples: dict[str, list[tuple[float, float]]] = {fn: [] for fn in ["bare", *FUNCTIONS]}
    for _ in range(runs):  # interleaved, like the warm runs
        samples["bare"].append(once(HERE / "bare", bare_event))
        for fn in FUNCTIONS:
            samples[fn].append(once(ROOT / "functions" / fn, events[fn]))
    bare = statistics.median(t for t, _ in samples["bare"])
    bare_import = statistics.median(i for _, i in samples["bare"])
    rows = []
    for fn in FUNCTIONS:
        rows.append({"function": fn, "p50_ms": statistics.median(t for t, _ in samples[fn]), "bare_p50_ms": bare,
                     "import_p50_ms": statistics.median(i for _, i in samples[fn]), "bare_import_p50_ms": bare_import,
                     "needs_ai_or_s3": fn in NEEDS_AI_OR_S3})
        say(f"  {fn:10} {rows[-1]['p50_ms']:7.1f} ms (import {rows[-1]['import_p50_ms']:.1f})   "
            f"bare FastAPI+Mangum {bare:7.1f} ms (import {bare_import:.1f})")
    return rows


# --------------------------------------------------------------------------- size


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def lambda_install(requirements: Path, target: Path) -> Path:
    """`requirements` installed as `sam build` would for Lambda (arm64, Python 3.12), cached."""
    reqs = requirements.read_text()
    stamp = target / ".requirements"
    if not (stamp.exists() and stamp.read_text() == reqs):
        say(f"  sam is not installed: installing {requirements.relative_to(ROOT)} for Lambda (arm64, py3.12) with pip ...")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade",
                        "--target", str(target), "--platform", "manylinux2014_aarch64", "--platform",
                        "manylinux_2_28_aarch64", "--implementation", "cp", "--python-version", "3.12",
                        "--only-binary=:all:", "-r", str(requirements)], check=True)
        stamp.write_text(reqs)
    return target


def size() -> dict[str, Any]:
    """`sam build` when sam is installed; otherwise what it does for the layer: pip install of its
    requirements for Lambda's platform (arm64, Python 3.12 on Amazon Linux 2023, wheels only)."""
    candidates = [os.environ.get("SAM", ""), ROOT / ".venv-sam/bin/sam", Path(sys.executable).parent / "sam",
                  "/usr/local/bin/sam"]
    sam = next((Path(p) for p in candidates if p and Path(p).exists()), None)
    py312 = Path("/root/.pyenv/versions/3.12.1/bin")
    if sam is not None and (py312 / "python3.12").exists():
        build = DATA / "sam-build"
        env = {**os.environ, "PATH": f"{py312}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
        subprocess.run([str(sam), "build", "--build-dir", str(build), "--cache-dir", str(DATA / "sam-cache"), "--cached"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        layer, how = build / "DependenciesLayer", "sam build"
        functions = {p.name.removesuffix("Function").lower(): tree_bytes(p) / 1024
                     for p in build.iterdir() if p.name.endswith("Function")}
    else:
        layer = lambda_install(ROOT / "layers/deps/requirements.txt", DATA / "layer-lambda-arm64-py312" / "python")
        how = "pip install --target, Lambda's platform: manylinux2014/_2_28 aarch64, cp312, wheels only"
        functions = {}
        for fn in sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()):
            code, reqs = ROOT / "functions" / fn, ROOT / "functions" / fn / "requirements.txt"
            extra = tree_bytes(lambda_install(reqs, DATA / f"fn-lambda-{fn}")) if reqs.exists() else 0
            functions[fn] = (tree_bytes(code) + extra) / 1024
    mb = tree_bytes(layer) / 1024 / 1024
    say(f"  dependency layer {mb:.1f} MB unzipped ({how}); functions " +
        ", ".join(f"{k} {v:.1f} KB" for k, v in functions.items()))
    return {"layer_unzipped_mb": mb, "functions_kb": functions, "how": how}


# --------------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    lines = ["| endpoint | p50 ms | p95 ms | floor p50 | peer p50 | vs floor | vs peer | round trips (floor / peer) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["warm"]:
        lines.append(f"| {r['endpoint']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['floor_p50_ms']:.2f} | "
                     f"{r['peer_p50_ms']:.2f} | {r['p50_ms'] / r['floor_p50_ms']:.2f}x | {r['p50_ms'] / r['peer_p50_ms']:.2f}x | "
                     f"{r['round_trips']} ({r['floor_round_trips']} / {r['peer_round_trips']}) |")
    lines += ["", "| function | cold start p50 ms (import part) | bare FastAPI+Mangum | ratio | uses AI/S3 |",
              "|---|---:|---:|---:|---|"]
    for r in results["cold"]:
        lines.append(f"| {r['function']} | {r['p50_ms']:.1f} ({r['import_p50_ms']:.1f}) | {r['bare_p50_ms']:.1f} "
                     f"({r['bare_import_p50_ms']:.1f}) | {r['p50_ms'] / r['bare_p50_ms']:.2f}x | "
                     f"{'yes' if r['needs_ai_or_s3'] else 'no'} |")
    lines += ["", "| endpoint | p50, 10 rows | p50, 10,000 rows | ratio |", "|---|---:|---:|---:|"]
    for r in results["scale"]:
        lines.append(f"| {r['endpoint']} | {r['p50_small_ms']:.2f} ms | {r['p50_large_ms']:.2f} ms | "
                     f"{r['p50_large_ms'] / r['p50_small_ms']:.2f}x |")
    s = results["size"]
    lines += ["", f"Dependency layer: {s['layer_unzipped_mb']:.1f} MB unzipped ({s['how']}). Functions: " +
              ", ".join(f"{k} {v:.1f} KB" for k, v in s["functions_kb"].items()) + "."]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["warm"]
    names = [r["endpoint"] for r in rows]
    width, xs = 0.27, range(len(rows))
    fig, ax = plt.subplots(figsize=(11, 5))
    for i, (key, label, color) in enumerate([("floor", "floor: bare route, raw psycopg2", "#9e9e9e"),
                                             ("", "IFlyChat (Lambda handler)", "#1565c0"),
                                             ("peer", "peer: SQLAlchemy async ORM + asyncpg", "#ef6c00")]):
        p50 = [r[f"{key}_p50_ms" if key else "p50_ms"] for r in rows]
        p95 = [r[f"{key}_p95_ms" if key else "p95_ms"] for r in rows]
        pos = [x + (i - 1) * width for x in xs]
        ax.bar(pos, p50, width, label=label, color=color)
        ax.errorbar(pos, p50, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p95)]], fmt="none", ecolor="black",
                    capsize=3, linewidth=0.8)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("warm latency, ms (bar p50, whisker p95)")
    ax.set_title(f"IFlyChat warm latency per request - {results['machine']['cpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer invocations (a smoke run)")
    parser.add_argument("--only", choices=["warm", "scale", "cold", "size"], action="append")
    args = parser.parse_args(argv)
    n, rounds, cold_runs = (60, 2, 3) if args.quick else (600, 6, 11)
    only = set(args.only or ["warm", "scale", "cold", "size"])
    started = time.perf_counter()
    DATA.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))

    url = database()
    from bench import data

    if data.prepare(url, say=say):
        say(f"  loaded in {time.perf_counter() - started:.0f} s")
    data.reset_writer(url)
    stub, ai_url = start_ai_stub()
    env = environment(url, ai_url)
    os.environ.update(env)
    os.environ.pop("API_BASE_PATH", None)
    results: dict[str, Any] = {"warm": [], "cold": [], "scale": [], "size": {}, "machine": machine()}
    # Every request writes its JSON log line to stdout, as in Lambda: the cost is measured, the
    # lines go nowhere.
    sys.stdout = open(os.environ.get("BENCH_LOG", os.devnull), "w")
    try:
        req = Requests()
        if "warm" in only:
            say(f"warm latency ({n} invocations per endpoint and variant):")
            results["warm"] = warm(req, n, rounds)
        if "scale" in only:
            say("scale (1,000,000 other messages in the database):")
            results["scale"] = scale(req, n // 2)
        if "cold" in only:
            say(f"cold start (fresh process, import + first request, median of {cold_runs}):")
            results["cold"] = cold(req, cold_runs, env)
        if "size" in only:
            say("size:")
            results["size"] = size()
    finally:
        sys.stdout.close()
        sys.stdout = _terminal
        stub.terminate()
        stub.wait(5)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if only == {"warm", "scale", "cold", "size"}:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        chart(results, HERE / "results.png")
        say("")
        say(table(results))
        say(f"\nwrote bench/results.json and bench/results.png in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
