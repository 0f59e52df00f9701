"""The benchmark's database: created once, kept between runs (it takes a while to fill).

Who is in it (all generated in SQL with generate_series, so loading is quick):

- `main`: 200 chats; chat `main_chat` holds 1,000 messages (GET /chats, GET .../messages);
- `writer`: the user whose writes are measured (POST /chats, POST .../messages); its chats are
  reset at the start of every run so runs stay comparable;
- `small` / `large`: 10 and 10,000 chats, and one chat with 10 and 10,000 messages (scale);
- 1,000 other users with 10 chats of 100 messages each: 1,000,000 messages that are not ours.

Every user has one live session; tokens are minted at run time with the product's own signer.
"""
from __future__ import annotations

import uuid

import psycopg2
import psycopg2.extras

psycopg2.extras.register_uuid()

DATASET_VERSION = 1
DB_NAME = "iflychat_bench"
NS = uuid.UUID("5b1c0c9e-7f35-4f0e-9d8e-2d6f1f0e4a11")  # fixed ids: the dataset is reproducible

USERS = {"main": (200, 1000), "writer": (1, 30), "small": (10, 10), "large": (10_000, 10_000)}
OTHER_USERS, OTHER_CHATS, OTHER_MESSAGES = 1000, 10, 100


def uid(name: str) -> uuid.UUID:
    return uuid.uuid5(NS, f"user:{name}")


def sid(name: str) -> uuid.UUID:
    return uuid.uuid5(NS, f"session:{name}")


def chat_id(name: str) -> uuid.UUID:
    """The user's chat that holds the messages (the newest of its chats)."""
    return uuid.uuid5(NS, f"chat:{name}")


def _has_dataset(cur) -> bool:
    cur.execute("SELECT to_regclass('bench_dataset') IS NOT NULL")
    if not cur.fetchone()[0]:
        return False
    cur.execute("SELECT version FROM bench_dataset")
    row = cur.fetchone()
    return row is not None and row[0] == DATASET_VERSION


def _load_user(cur, name: str, chats: int, messages: int) -> None:
    user = uid(name)
    cur.execute("INSERT INTO users (id, name, email, password_hash) VALUES (%s, %s, %s, %s)",
                (user, f"Bench {name}", f"bench-{name}@example.com", "$2b$04$" + "x" * 53))
    cur.execute("INSERT INTO chat_sessions (id, user_id, expires_at) VALUES (%s, %s, now() + interval '10 years')",
                (sid(name), user))
    # Chat number 1 is the newest and is the one with the messages.
    cur.execute(
        "INSERT INTO chats (id, user_id, title, created_at, updated_at) "
        "SELECT CASE WHEN g = 1 THEN %s ELSE gen_random_uuid() END, %s, 'Chat number ' || g, "
        "       now() - g * interval '1 minute', now() - g * interval '1 minute' "
        "FROM generate_series(1, %s) g",
        (chat_id(name), user, chats),
    )
    cur.execute(
        "INSERT INTO messages (id, chat_id, type, content, metadata, created_at) "
        "SELECT gen_random_uuid(), %s, CASE WHEN g %% 2 = 0 THEN 'bot' ELSE 'user' END, "
        "       'Message ' || g || ': ' || repeat('lorem ipsum ', 8), "
        "       CASE WHEN g %% 2 = 0 THEN '{\"model\": \"gpt-4o-mini\", \"total_tokens\": 42}'::jsonb "
        "            ELSE '{}'::jsonb END, now() - (%s - g) * interval '1 second' "
        "FROM generate_series(1, %s) g",
        (chat_id(name), messages, messages),
    )


def _load_others(cur) -> None:
    cur.execute(
        "INSERT INTO users (id, name, email, password_hash) "
        "SELECT gen_random_uuid(), 'Other ' || g, 'other-' || g || '@example.com', 'x' "
        "FROM generate_series(1, %s) g", (OTHER_USERS,))
    cur.execute(
        "INSERT INTO chats (id, user_id, title) SELECT gen_random_uuid(), u.id, 'Other chat ' || g "
        "FROM users u CROSS JOIN generate_series(1, %s) g WHERE u.email LIKE 'other-%%'", (OTHER_CHATS,))
    cur.execute(
        "INSERT INTO messages (id, chat_id, type, content) "
        "SELECT gen_random_uuid(), c.id, CASE WHEN g %% 2 = 0 THEN 'bot' ELSE 'user' END, "
        "       'Someone else''s message ' || g || ' ' || repeat('dolor sit amet ', 6) "
        "FROM chats c JOIN users u ON u.id = c.user_id CROSS JOIN generate_series(1, %s) g "
        "WHERE u.email LIKE 'other-%%'", (OTHER_MESSAGES,))


def stale_schema(database_url: str) -> bool:
    """Was the kept database migrated by another checkout (a migration number with another name)?"""
    import init_db

    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return False
            cur.execute("SELECT version, name FROM schema_migrations")
            applied = dict(cur.fetchall())
    finally:
        conn.close()
    here = {version: name for version, name, _ in init_db.migrations()}
    return any(here.get(version) != name for version, name in applied.items())


def prepare(database_url: str, *, say=print) -> bool:
    """Make sure the dataset is in the database; return True when it had to be loaded now."""
    import init_db

    init_db.init_db(database_url, quiet=True)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if _has_dataset(cur):
                return False
            say("loading the benchmark dataset (once; kept for later runs)...")
            cur.execute("BEGIN")
            cur.execute("TRUNCATE users, chat_sessions, chats, messages, files, ai_usage CASCADE")
            for name, (chats, messages) in USERS.items():
                _load_user(cur, name, chats, messages)
            _load_others(cur)
            cur.execute("DROP TABLE IF EXISTS bench_dataset")
            cur.execute("CREATE TABLE bench_dataset (version int NOT NULL)")
            cur.execute("INSERT INTO bench_dataset VALUES (%s)", (DATASET_VERSION,))
            cur.execute("COMMIT")
            cur.execute("VACUUM ANALYZE")
            return True
    finally:
        conn.close()


def reset_writer(database_url: str) -> None:
    """Put the writer back to one chat of 30 messages, so every run writes into the same state."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM chats WHERE user_id = %s AND id <> %s", (uid("writer"), chat_id("writer")))
            cur.execute("DELETE FROM messages WHERE chat_id = %s AND seq > (SELECT min(seq) + 29 FROM messages "
                        "WHERE chat_id = %s)", (chat_id("writer"), chat_id("writer")))
            cur.execute("DELETE FROM ai_usage WHERE user_id = %s", (uid("writer"),))
            cur.execute("DELETE FROM ai_quota WHERE user_id = %s", (uid("writer"),))
    finally:
        conn.close()
