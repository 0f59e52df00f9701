"""Provider failures: 502/503/504 with the user's message kept, a time budget no timeout or retry
can overrun, content-filter refusals as normal flagged replies."""
from __future__ import annotations

import socket

import pytest

from shared import ai
from shared.errors import GatewayTimeout


def listed(user, chat) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in user.get(f"/chats/{chat['id']}/messages").json()]


@pytest.mark.parametrize("behaviour, status, words", [
    ({"status": 500}, 502, "HTTP 500"),
    ({"status": 502}, 502, "HTTP 502"),
    ({"status": 503}, 503, "overloaded"),
    ({"status": 429}, 503, "rate limited"),
    ({"status": 401, "message": "bad key"}, 502, "HTTP 401"),
    ({"disconnect": True}, 502, "could not be reached"),
    ({"delay": 5}, 504, "in time"),
])
def test_provider_failures_map_to_gateway_errors_and_keep_the_message(user, ai_stub, behaviour, status, words):
    chat = user.new_chat("Failing")
    ai_stub.script(behaviour)
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "still here?"})
    assert res.status == status, res.text
    assert words in res.json()["detail"] and "your message was saved" in res.json()["detail"]
    assert listed(user, chat) == [("user", "still here?")]


def test_refused_connection_is_a_502(user, ai_stub, setting, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    setting(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    monkeypatch.setattr(ai, "_client", None)
    chat = user.new_chat("Refused")
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "hello?"})
    assert res.status == 502 and "could not be reached" in res.json()["detail"]
    assert listed(user, chat) == [("user", "hello?")]
    monkeypatch.setattr(ai, "_client", None)


def test_retries_are_used_when_time_allows(user, ai_stub, setting):
    setting(OPENAI_MAX_RETRIES=1)
    chat = user.new_chat("Retry")
    ai_stub.script({"status": 500}, {"reply": "second time lucky"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "try twice"})
    assert res.status == 200 and res.json()["ai_response"]["content"] == "second time lucky"


def test_the_time_budget_caps_timeouts_and_retries(user, ai_stub, setting):
    """A 5 s timeout with 3 retries would take 20 s; the request's budget is 1.5 s, so the one
    attempt gets 1.5 s and no retry is made."""
    setting(AI_TIME_BUDGET_SECONDS=1.5, OPENAI_TIMEOUT_SECONDS=5, OPENAI_MAX_RETRIES=3)
    chat = user.new_chat("Budget")
    ai_stub.script({"delay": 4, "reply": "late", "repeat": 4})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "quick please"})
    assert res.status == 504
    assert len(ai_stub.requests) == 1
    assert listed(user, chat) == [("user", "quick please")]


def test_deadline_limits(setting):
    setting(AI_TIME_BUDGET_SECONDS=10)
    timeout, retries = ai.Deadline().call_limits(4, 3)
    assert timeout == 4 and retries == 1  # two 4 s attempts fit in 10 s, four do not
    timeout, retries = ai.Deadline(2.5).call_limits(20, 2)
    assert timeout <= 2.5 and retries == 0
    with pytest.raises(GatewayTimeout):
        ai.Deadline(0.5).call_limits(20, 2)

    class Invocation:  # a Lambda context with 5 s left: the budget keeps a 3 s margin
        def get_remaining_time_in_millis(self):
            return 5000

    assert ai.Deadline(lambda_context=Invocation()).left() <= 2


def test_content_filter_is_a_normal_flagged_reply(user, ai_stub):
    chat = user.new_chat("Filtered")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    ai_stub.script({"reply": "", "finish_reason": "content_filter"})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "something forbidden"})
    assert res.status == 200
    bot = res.json()["ai_response"]
    assert bot["content"] == ai.FILTERED_REPLY and bot["metadata"]["content_filtered"] is True
    ai_stub.script({"reply": "Partly answered", "finish_reason": "content_filter"})
    bot = user.post(f"/chats/{chat['id']}/messages", json={"content": "again"}).json()["ai_response"]
    assert bot["content"] == "Partly answered" and bot["metadata"]["content_filtered"] is True


def test_empty_answer_is_a_502_with_its_usage_recorded(user, ai_stub, sql):
    chat = user.new_chat("Empty")
    user.post(f"/chats/{chat['id']}/messages", json={"content": "first"})
    ai_stub.script({"reply": "", "prompt_tokens": 4321, "completion_tokens": 0})
    res = user.post(f"/chats/{chat['id']}/messages", json={"content": "say nothing"})
    assert res.status == 502 and "empty" in res.json()["detail"]
    assert listed(user, chat)[-1] == ("user", "say nothing")
    assert sql("SELECT prompt_tokens, message_id FROM ai_usage WHERE chat_id = %s AND prompt_tokens = 4321",
               (chat["id"],)) == [(4321, None)]
