"""Faults a second new user found by driving `make dev` with curl (streams under AI failure,
presigned uploads, account deletion, odd ranges, the docs): each kept from coming back."""
from __future__ import annotations

import requests

from local.openapi import merged
from tests.conftest import TEST_BUCKET
from tests.test_files import process


def test_presigned_object_bigger_than_announced_fails(user, api, s3):
    """S3 enforces the form's content-length-range; moto (`make dev`) does not, and a file ten
    times the announced size used to be `processed` (its size silently rewritten)."""
    out = user.post("/files/presign", json={"file_name": "small.txt", "file_size": 10}).json()
    form, f = out["upload"], out["file"]
    posted = requests.post(form["url"], data=form["fields"], files={"file": ("small.txt", b"a" * 100)}, timeout=10)
    if posted.status_code in (200, 201, 204):  # the store did not check the policy
        assert process(api, form["fields"]["key"])["outcomes"] == ["failed"]
    else:  # it did: put the object behind its back, as an edited form would on a lax store
        s3.put_object(Bucket=TEST_BUCKET, Key=form["fields"]["key"], Body=b"a" * 100, ContentType="text/plain")
        process(api, form["fields"]["key"])
    detail = user.get(f"/files/{f['id']}").json()
    assert detail["status"] == "failed" and detail["processed"] is False
    assert "10 bytes announced" in detail["error"] and detail["extracted_text"] is None


def test_presigned_object_up_to_the_announced_size_is_processed(user, api, s3):
    f = user.post("/files/presign", json={"file_name": "fits.txt", "file_size": 100}).json()["file"]
    key = f"users/{user.id}/{f['id']}"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"exactly fits", ContentType="text/plain")
    assert process(api, key)["outcomes"] == ["processed"]
    assert user.get(f"/files/{f['id']}").json()["file_size"] == len(b"exactly fits")


def test_deleting_the_account_clears_the_cookie(user):
    """Logout cleared the cookie; deleting the account (which ends every session) did not."""
    res = user.request("DELETE", "/users/me", json={"password": user.password})
    assert res.status == 200, res.text
    jar = res.cookie("iflychat_session")
    assert jar is not None and jar["iflychat_session"].value == "" and jar["iflychat_session"]["httponly"]
    assert user.get("/users/me").status == 401


def test_usage_range_is_at_most_366_days_both_included(user):
    """README: at most 366 days; 2025-01-01..2026-01-02 (367 days) used to be answered."""
    assert user.get("/usage", query={"from": "2025-01-01", "to": "2026-01-01"}).status == 200  # 366 days
    res = user.get("/usage", query={"from": "2025-01-01", "to": "2026-01-02"})
    assert res.status == 422 and "366 days" in res.json()["detail"]


def test_openapi_documents_the_stream_and_the_upload_as_they_are(api):
    """The stream was documented as `application/json` with no schema, and the upload as having
    no request body at all, so Swagger UI at /docs could not send a file."""
    doc = merged(api.functions)  # the fixture's functions: a fresh InProcess would replace their modules
    stream = doc["paths"]["/chats/{chat_id}/messages/stream"]["post"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
    for kind in ("user_message", "ai_message_start", "content_delta", "ai_message_complete", "chat_name",
                 "stream_complete", "error"):
        assert f"`{kind}`" in stream["description"]
    body = doc["paths"]["/files/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
