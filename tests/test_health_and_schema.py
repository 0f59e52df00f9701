"""GET /health and init_db."""
from __future__ import annotations

import init_db


def test_health_reports_the_database(api):
    res = api.request("GET", "/health")
    assert res.status == 200
    body = res.json()
    assert body["status"] in ("healthy", "degraded") and body["database"] == "healthy"
    assert set(body) >= {"status", "database", "s3", "ai_service", "timestamp"}


def test_init_db_twice_changes_nothing(database_url, sql, capsys):
    assert init_db.init_db(database_url) == []
    assert "nothing to do" in capsys.readouterr().out
    versions = [r[0] for r in sql("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in init_db.migrations()]


def test_schema_has_the_six_tables_and_list_indexes(sql):
    tables = {r[0] for r in sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"users", "chats", "messages", "files", "chat_sessions", "ai_usage"} <= tables
    indexes = {r[0] for r in sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"chats_user_activity_idx", "messages_chat_seq_idx", "files_user_created_idx"} <= indexes
