#!/usr/bin/env python3
"""Create or upgrade the IFlyChat schema on the PostgreSQL that DATABASE_URL names.

    DATABASE_URL=postgresql://user@host/db python init_db.py
    python init_db.py --secret-arn arn:aws:secretsmanager:eu-west-1:123456789012:secret:iflychat/prod/db-AbCdEf

With --secret-arn (or $DATABASE_URL_SECRET_ARN) it reads the URL from the same Secrets Manager
secret or SSM parameter the deployed functions read (AWS credentials from the usual places:
the environment, ~/.aws, an assumed role in CI), so nobody copies the password around.

Migrations are the numbered files in shared/migrations (0001_init.sql, 0002_...). Each one that
the database has not seen yet runs in its own transaction, in order, and is recorded in
schema_migrations. The whole run holds an advisory lock, so two deploys cannot race; running it
again changes nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).resolve().parent / "shared" / "migrations"
LOCK_KEY = 0x1F1C_4A7  # any constant bigint; names this project's migration lock
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise SystemExit(f"init_db: {path.name} is not named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise SystemExit("init_db: two migrations share a number")
    return found


def init_db(database_url: str, *, quiet: bool = False) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    say = (lambda *_: None) if quiet else (lambda msg: print(f"init_db: {msg}", flush=True))
    conn = psycopg2.connect(database_url, connect_timeout=10, application_name="iflychat-init-db")
    conn.autocommit = True
    applied_now: list[int] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
                for version, name, path in migrations():
                    if version in done:
                        continue
                    say(f"applying {path.name}")
                    cur.execute("BEGIN")
                    try:
                        cur.execute(path.read_text(encoding="utf-8"))
                        cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                        cur.execute("COMMIT")
                    except Exception:
                        cur.execute("ROLLBACK")
                        raise
                    applied_now.append(version)
                cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                current = cur.fetchone()[0]
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    finally:
        conn.close()
    if applied_now:
        say(f"applied {len(applied_now)} migration(s); schema is at version {current}")
    else:
        say(f"schema is up to date at version {current}; nothing to do")
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--secret-arn", default=os.environ.get("DATABASE_URL_SECRET_ARN", ""),
                        help="read the URL from this Secrets Manager secret or SSM parameter "
                             "(default: $DATABASE_URL_SECRET_ARN); wins over --database-url")
    args = parser.parse_args(argv)
    url = args.database_url
    if args.secret_arn:
        from shared.settings import ConfigurationError, read_secret

        try:
            url = read_secret(args.secret_arn, database=True)
        except ConfigurationError as exc:
            print(f"init_db: {exc}", file=sys.stderr)
            return 2
    if not url:
        print("init_db: set DATABASE_URL or pass --database-url or --secret-arn", file=sys.stderr)
        return 2
    init_db(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
