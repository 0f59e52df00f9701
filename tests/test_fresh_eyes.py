"""What a new user found by following the README and driving the API with curl: the faults of
that session, each kept from coming back."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests import files_util


@pytest.mark.parametrize("query", [
    {"to": "0001-01-01"}, {"to": "0001-01-29"}, {"to": "0001-01-30"}, {"from": "0001-01-01", "to": "0001-01-01"},
    {"from": "9999-12-31", "to": "9999-12-31"}, {"from": "9999-12-30"}, {"from": "0001-01-01"},
])
def test_usage_at_the_ends_of_the_calendar_is_an_answer_not_a_500(user, query):
    """`/usage?to=0001-01-01` used to be a 500: the default `from` (29 days earlier) overflowed."""
    res = user.get("/usage", query=query)
    assert res.status in (200, 422), res.text
    if res.status == 200:
        body = res.json()
        assert body["from"] <= body["to"] and body["total"]["calls"] == 0
    else:
        assert isinstance(res.json()["detail"], str)
