"""Median login time, unknown vs known email (wrong password), production bcrypt cost, through the
auth function's Lambda handler on a throwaway database. Usage (repo root): python bench/login_timing.py [N]"""
import os, statistics, sys, time, uuid
import psycopg2
sys.path.insert(0, os.getcwd())
server = "postgresql://postgres@127.0.0.1:5432/postgres"
name = f"iflychat_timing_{uuid.uuid4().hex[:8]}"
admin = psycopg2.connect(server); admin.autocommit = True
admin.cursor().execute(f'CREATE DATABASE "{name}"')
url = f"postgresql://postgres@127.0.0.1:5432/{name}"
os.environ.update(DATABASE_URL=url, JWT_SECRET="t" * 40, BCRYPT_ROUNDS="12", LOGIN_ACCOUNT_FREE_FAILURES="100000",
                  LOGIN_CLIENT_FREE_FAILURES="100000")
import init_db; init_db.init_db(url, quiet=True)
from tests.lambda_client import LambdaClient
from pathlib import Path
api = LambdaClient(Path.cwd())
n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
email = "known@example.com"
assert api.request("POST", "/auth/register", json={"name": "K", "email": email, "password": "right-password"}).status == 201
times = {"known": [], "unknown": []}
for i in range(n):  # interleaved, so drift hits both alike
    for kind in ("known", "unknown"):
        e = email if kind == "known" else f"nobody-{i}@example.com"
        t = time.perf_counter()
        r = api.request("POST", "/auth/login", json={"email": e, "password": "wrong-password"})
        times[kind].append((time.perf_counter() - t) * 1000)
        assert r.status == 401, r.text
for kind, v in times.items():
    q = statistics.quantiles(v, n=4)
    print(f"{kind:8} median {statistics.median(v):7.1f} ms  p25 {q[0]:7.1f}  p75 {q[2]:7.1f}  (n={len(v)})")
from shared import db; db.reset()
admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
