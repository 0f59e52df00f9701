"""Usage and cost: an ai_usage row for every AI call, priced from the settings' table, and
GET /usage totals that add up to exactly those rows."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.settings import _prices


def test_cost_comes_from_the_price_table_and_dated_models_take_their_prefix(user, ai_stub, sql, setting):
    setting(OPENAI_MODEL="gpt-4o-mini-2024-07-18",
            AI_PRICES='{"gpt-4o-mini": {"input_per_1m": 2.0, "output_per_1m": 10.0}}')
    chat = user.new_chat("Priced")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "warm up"})
    ai_stub.script({"reply": "ok", "prompt_tokens": 1000, "completion_tokens": 500})
    bot = user.post(f"/chats/{chat['id']}/messages", json={"content": "price me"}).json()["ai_response"]
    assert bot["metadata"]["cost_usd"] == pytest.approx(0.007) and bot["metadata"]["cost_known"] is True
    row = sql("SELECT cost_usd, priced, model FROM ai_usage WHERE message_id = %s", (bot["id"],))
    assert row == [(Decimal("0.00700000"), True, "gpt-4o-mini-2024-07-18")]


def test_unknown_model_costs_nothing_and_is_flagged(user, ai_stub, sql, setting):
    setting(OPENAI_MODEL="mystery-model-9")
    chat = user.new_chat("Unpriced")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "warm up"})
    bot = user.post(f"/chats/{chat['id']}/messages", json={"content": "what do I cost?"}).json()["ai_response"]
    assert bot["metadata"]["cost_usd"] == 0 and bot["metadata"]["cost_known"] is False
    assert sql("SELECT cost_usd, priced FROM ai_usage WHERE message_id = %s", (bot["id"],)) == [(Decimal(0), False)]


@pytest.mark.parametrize("raw", ['{"m": {"input_per_1m": -1, "output_per_1m": 1}}', '{"m": {"input_per_1m": 1}}',
                                 '[1, 2]', 'not json', '{"m": {"input_per_1m": "NaN", "output_per_1m": 1}}'])
def test_a_bad_price_table_is_refused_never_a_negative_cost(raw):
    with pytest.raises(ValueError, match="AI_PRICES"):
        _prices(raw)


def _totals(sql, user_id, where="true", params=()):
    return sql(f"SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
               f"coalesce(sum(total_tokens), 0), coalesce(sum(cost_usd), 0) FROM ai_usage "
               f"WHERE user_id = %s AND {where}", (user_id, *params))[0]


def test_usage_report_adds_up_to_the_rows(user, other_user, ai_stub, sql):
    chat = user.new_chat("Usage")
    ai_stub.script({"reply": "a", "prompt_tokens": 100, "completion_tokens": 20}, {"reply": "Usage title"},
                   {"reply": "b", "prompt_tokens": 300, "completion_tokens": 40})
    user.post(f"/chats/{chat['id']}/messages", json={"content": "one"})
    user.post(f"/chats/{chat['id']}/messages", json={"content": "two"})
    assert user.post(f"/chats/{chat['id']}/messages/regenerate").status == 200
    other_chat = other_user.new_chat("Not mine")
    other_user.post(f"/chats/{other_chat['id']}/messages", json={"content": "someone else's tokens"})
    # Two older rows of another model, written directly: one three days ago, one forty days ago.
    now = datetime.now(timezone.utc)
    for days, tokens in ((3, 1000), (40, 7)):
        sql("INSERT INTO ai_usage (id, user_id, operation, provider, model, prompt_tokens, completion_tokens, "
            "total_tokens, cost_usd, priced, created_at) VALUES (%s, %s, 'reply', 'bedrock', 'old-model', %s, 0, %s, "
            "0.125, true, %s)", (uuid.uuid4(), user.id, tokens, tokens, now - timedelta(days=days)))

    report = user.get("/usage").json()  # the last 30 days
    assert report["to"] == now.date().isoformat()
    calls, prompt, completion, total, cost = _totals(sql, user.id, "created_at > now() - interval '30 days'")
    assert report["total"]["calls"] == calls == 5  # reply, title, reply, regenerate, the row 3 days ago
    assert (report["total"]["prompt_tokens"], report["total"]["completion_tokens"]) == (prompt, completion)
    assert report["total"]["total_tokens"] == total and report["total"]["cost_usd"] == float(cost)
    for part in ("by_day", "by_model"):
        for key in ("calls", "prompt_tokens", "completion_tokens", "total_tokens"):
            assert sum(row[key] for row in report[part]) == report["total"][key]
        assert sum(row["cost_usd"] for row in report[part]) == pytest.approx(report["total"]["cost_usd"])
    assert [d["day"] for d in report["by_day"]] == [(now - timedelta(days=3)).date().isoformat(), now.date().isoformat()]
    assert {(m["provider"], m["model"]) for m in report["by_model"]} == {("openai", "gpt-4o-mini"), ("bedrock", "old-model")}

    day = (now - timedelta(days=40)).date().isoformat()
    old = user.get("/usage", query={"from": day, "to": day}).json()
    assert old["total"]["calls"] == 1 and old["total"]["total_tokens"] == 7 and old["total"]["cost_usd"] == 0.125

    empty = other_user.get("/usage", query={"from": "2020-01-01", "to": "2020-01-31"}).json()
    assert empty["total"]["calls"] == 0 and empty["by_day"] == [] and empty["by_model"] == []


def test_usage_range_is_validated(user):
    assert user.get("/usage", query={"from": "2026-02-01", "to": "2026-01-01"}).status == 422
    assert user.get("/usage", query={"from": "2020-01-01", "to": "2026-01-01"}).status == 422
    assert user.get("/usage", query={"from": "yesterday"}).status == 422
    assert isinstance(user.get("/usage", query={"from": "x"}).json()["detail"], str)
