"""Files through the real Lambda handlers, S3 mocked by moto (see conftest): uploads, limits and
types, extraction, downloads, presigned uploads and their processing, cleanup, and ownership."""
from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.s3 import s3_event
from shared import extract, storage
from shared.errors import ServiceUnavailable
from shared.models import File
from tests import files_util as make
from tests.conftest import TEST_BUCKET
from tests.lambda_client import Context

MB = 1024 * 1024


def upload(user, name: str, data: bytes, content_type: str = "application/octet-stream", **fields):
    body, headers = make.multipart(name, data, content_type, **fields)
    return user.post("/files/upload", body=body, headers=headers)


def keys_of(s3, user) -> list[str]:
    found = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"users/{user.id}/")
    return [o["Key"] for o in found.get("Contents", [])]


def process(api, key: str) -> dict:
    """Deliver an S3 ObjectCreated event for `key` to the file processor's handler."""
    return api.functions.handler("FileProcessorFunction")(s3_event(TEST_BUCKET, key, 0), Context())


# --------------------------------------------------------------------------- the whole path


def test_upload_list_read_download_delete(user, api, s3, sql):
    original = make.pdf("Lease agreement for flat 3", "Rent is 900 per month")
    res = upload(user, "../../etc/Lease\x07 2024.pdf", original, "application/pdf")
    assert res.status == 201, res.text
    f = res.json()
    assert {"id", "original_name", "content_type", "file_url", "file_size", "processed", "created_at"} <= set(f)
    assert f["original_name"] == "Lease 2024.pdf"  # path parts and control characters dropped
    assert f["content_type"] == "application/pdf" and f["file_size"] == len(original)
    assert f["processed"] is True and f["status"] == "processed" and f["error"] is None
    assert f["file_url"] == f"/files/{f['id']}/download"

    # The bytes survived the base64 trip through API Gateway and Lambda exactly.
    key = f"users/{user.id}/{f['id']}"
    assert keys_of(s3, user) == [key]
    assert s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == original

    listed = user.get("/files")
    assert listed.status == 200 and isinstance(listed.json(), list)
    assert [x["id"] for x in listed.json()] == [f["id"]] and listed.headers["x-total-count"] == "1"

    detail = user.get(f"/files/{f['id']}").json()
    assert "Lease agreement for flat 3\nRent is 900 per month" in detail["extracted_text"]
    assert detail["text_truncated"] is False

    dl = user.get(f["file_url"])
    assert dl.status == 302
    url = dl.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["300"]
    assert f["id"] in urlsplit(url).path
    fetched = requests.get(url, timeout=10)  # moto answers the presigned GET
    assert fetched.status_code == 200 and fetched.content == original
    assert "Lease 2024.pdf" in fetched.headers["content-disposition"]
    as_json = user.get(f["file_url"], query={"redirect": "false"})
    assert as_json.status == 200 and as_json.json()["url"].startswith("https://")

    gone = user.delete(f"/files/{f['id']}")
    assert gone.status == 200 and gone.json()["data"]["file_id"] == f["id"]
    assert keys_of(s3, user) == []
    assert sql("SELECT count(*) FROM files WHERE id = %s", (f["id"],)) == [(0,)]
    assert user.get(f"/files/{f['id']}").status == 404
    assert user.delete(f"/files/{f['id']}").status == 404


def test_list_pages_with_total(user):
    ids = [upload(user, f"note{i}.txt", f"note {i}".encode()).json()["id"] for i in range(3)]
    page = user.get("/files", query={"limit": 2, "offset": 2})
    assert page.headers["x-total-count"] == "3"
    assert [x["id"] for x in page.json()] == [ids[0]]  # newest first
    assert user.get("/files", query={"offset": 50}).headers["x-total-count"] == "3"


def test_binary_bytes_survive_exactly(user, s3):
    every_byte = bytes(range(256)) * 64
    data = make.pdf("binary tail") + every_byte  # a PDF may carry any bytes after its header
    res = upload(user, "blob.pdf", data)
    assert res.status == 201, res.text
    key = f"users/{user.id}/{res.json()['id']}"
    assert s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == data


# --------------------------------------------------------------------------- extraction


def test_docx_paragraphs_and_table(user):
    data = make.docx("Quarterly report", "Revenue grew.", table=[["Region", "Sales"], ["North", "12"]])
    res = upload(user, "report.docx", data)
    assert res.status == 201, res.text
    assert res.json()["content_type"] == extract.DOCX and res.json()["processed"] is True
    text = user.get(f"/files/{res.json()['id']}").json()["extracted_text"]
    assert text == "Quarterly report\nRevenue grew.\nRegion\tSales\nNorth\t12"


@pytest.mark.parametrize("name,data,content_type,text", [
    ("notes.txt", "Line one\r\nLine two\n\nPara".encode(), "text/plain", "Line one\nLine two\n\nPara"),
    ("readme.md", b"# Title\n\n- item", "text/markdown", "# Title\n\n- item"),
    ("table.csv", b"a,b\n1,2\n", "text/csv", "a,b\n1,2"),
    ("data.json", b'{"k": [1, 2]}', "application/json", '{"k": [1, 2]}'),
    ("latin.txt", "Caf\u00e9 \u20ac5".encode("cp1252"), "text/plain", "Caf\u00e9 \u20ac5"),
    ("wide.txt", "\ufeffUTF-16 text".encode("utf-16"), "text/plain", "UTF-16 text"),
    ("bell.txt", b"ring\x07 the\x1b bell", "text/plain", "ring the bell"),
])
def test_text_types_decoded_and_cleaned(user, name, data, content_type, text):
    res = upload(user, name, data, "application/octet-stream")
    assert res.status == 201, res.text
    assert res.json()["content_type"] == content_type
    assert user.get(f"/files/{res.json()['id']}").json()["extracted_text"] == text


def test_pdf_control_characters_and_nul_removed(user):
    res = upload(user, "ctl.pdf", make.pdf(r"nul\000 and\001 soh"))
    assert res.status == 201, res.text
    text = user.get(f"/files/{res.json()['id']}").json()["extracted_text"]
    assert text == "nul and soh"


def test_clean_keeps_paragraphs_and_drops_control_characters():
    assert extract.clean("a\x00b\r\n\tc\x0b\n\n\n\n\nd\ud800 ") == "ab\n\tc\n\n\nd"


def test_encrypted_and_damaged_pdfs_are_stored_unprocessed(user, s3):
    enc = upload(user, "secret.pdf", make.encrypted_pdf("classified"))
    assert enc.status == 201, enc.text
    assert enc.json()["processed"] is False and enc.json()["status"] == "failed"
    assert "encrypted" in enc.json()["error"]
    bad = upload(user, "broken.pdf", b"%PDF-1.7\n this is not really a pdf")
    assert bad.status == 201 and bad.json()["processed"] is False and "could not be read" in bad.json()["error"]
    assert len(keys_of(s3, user)) == 2  # stored all the same: the user can still download them


def test_text_capped_and_cut_recorded(user):
    s = storage.get_settings()
    res = upload(user, "long.txt", b"x" * (s.extract_max_chars + 10))
    detail = user.get(f"/files/{res.json()['id']}").json()
    assert detail["text_truncated"] is True and len(detail["extracted_text"]) == s.extract_max_chars


# --------------------------------------------------------------------------- limits and types


def test_empty_file_is_422(user, s3):
    res = upload(user, "empty.txt", b"")
    assert res.status == 422 and "empty" in res.json()["detail"]
    assert keys_of(s3, user) == []


def test_too_large_is_413_before_anything_is_stored(user, s3, sql):
    limit = storage.get_settings().max_upload_bytes
    assert limit == 4 * MB
    res = upload(user, "big.txt", b"a" * (limit + 1))
    assert res.status == 413 and "presign" in res.json()["detail"]
    res = upload(user, "big.txt", b"a" * (limit + 64 * 1024))  # over the limit with the multipart overhead too
    assert res.status == 413
    assert keys_of(s3, user) == []
    assert sql("SELECT count(*) FROM files WHERE user_id = %s", (user.id,)) == [(0,)]


def test_largest_allowed_file_fits(user):
    limit = storage.get_settings().max_upload_bytes
    res = upload(user, "max.txt", b"b" * limit)
    assert res.status == 201, res.text
    assert res.json()["file_size"] == limit


@pytest.mark.parametrize("name,data", [
    ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512),   # OLE Word 97
    ("image.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
    ("tool.exe", b"MZ\x90\x00" + b"\x00" * 64),
    ("fake.pdf", b"just some text pretending to be a pdf"),
    ("fake.docx", b"PK\x03\x04 not a zip at all"),
    ("binary.txt", b"\x00\x01\x02\x03" * 100),
    ("broken.json", b"{not json"),
    ("noextension", b"plain words"),
])
def test_unsupported_types_are_415_listing_allowed(user, s3, name, data):
    res = upload(user, name, data)
    assert res.status == 415, res.text
    assert "Allowed types" in res.json()["detail"] and ".docx" in res.json()["detail"]
    assert keys_of(s3, user) == []


def test_content_decides_over_extension(user):
    res = upload(user, "actually-a-pdf.txt", make.pdf("Surprise"))
    assert res.status == 201 and res.json()["content_type"] == "application/pdf"


def test_upload_request_shape_errors(user):
    assert user.post("/files/upload", json={"file": "x"}).status == 415
    body, headers = make.multipart("a.txt", b"hi")
    wrong_part = body.replace(b'name="file"', b'name="document"')
    res = user.post("/files/upload", body=wrong_part, headers=headers)
    assert res.status == 422 and "'file'" in res.json()["detail"]
    res = upload(user, "a.txt", b"hi", chat_id="not-a-uuid")
    assert res.status == 422


def test_upload_needs_a_session(api):
    body, headers = make.multipart("a.txt", b"hi")
    assert api.request("POST", "/files/upload", body=body, headers=headers).status == 401


# --------------------------------------------------------------------------- presigned uploads


def test_presign_upload_event_processed(user, api, s3):
    data = make.pdf("A very large annual report")
    res = user.post("/files/presign", json={"file_name": "annual report.pdf", "file_size": len(data)})
    assert res.status == 201, res.text
    out = res.json()
    f, form = out["file"], out["upload"]
    assert f["status"] == "pending" and f["processed"] is False and f["content_type"] == "application/pdf"
    assert form["expires_in"] == 300 and form["max_bytes"] == len(data)
    assert form["fields"]["key"] == f"users/{user.id}/{f['id']}"
    assert form["fields"]["Content-Type"] == "application/pdf"
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert ["content-length-range", 1, len(data)] in policy["conditions"]
    assert {"Content-Type": "application/pdf"} in policy["conditions"]
    assert user.get(f["file_url"]).status == 409  # nothing to download yet

    posted = requests.post(form["url"], data=form["fields"], files={"file": ("x.pdf", data)}, timeout=10)
    assert posted.status_code in (200, 201, 204), posted.text
    result = process(api, form["fields"]["key"])
    assert result["outcomes"] == ["processed"]

    detail = user.get(f"/files/{f['id']}").json()
    assert detail["status"] == "processed" and detail["processed"] is True
    assert detail["extracted_text"] == "A very large annual report" and detail["file_size"] == len(data)
    assert process(api, form["fields"]["key"])["outcomes"] == ["skipped: already processed"]  # a duplicate event
    assert user.get(f["file_url"]).status == 302


def test_presigned_object_with_wrong_content_fails_with_reason(user, api, s3):
    f = user.post("/files/presign", json={"file_name": "scan.pdf", "file_size": 100}).json()["file"]
    key = f"users/{user.id}/{f['id']}"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"MZ\x90\x00 an executable", ContentType="application/pdf")
    process(api, key)
    detail = user.get(f"/files/{f['id']}").json()
    assert detail["status"] == "failed" and detail["processed"] is False and "not a valid PDF" in detail["error"]


def test_object_nobody_owns_is_deleted_by_the_processor(api, s3, user):
    for key in (f"users/{user.id}/{uuid.uuid4()}", "users/not-ours.txt"):
        s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"late upload")
        assert process(api, key)["outcomes"] == ["deleted: no file record owns this object"]
        assert s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=key).get("KeyCount") == 0
    assert process(api, f"users/{user.id}/{uuid.uuid4()}")["outcomes"] == ["skipped: the object is gone"]


def test_processor_leaves_direct_uploads_alone(api, s3, user):
    # S3 reports a direct upload too, maybe before the upload call has inserted its row.
    key = storage.key_for(user.id, uuid.uuid4())
    storage.put(key, b"just stored", "text/plain")
    assert process(api, key)["outcomes"] == ["skipped: a direct upload"]
    assert s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == b"just stored"
    f = upload(user, "done.txt", b"recorded").json()
    assert process(api, f"users/{user.id}/{f['id']}")["outcomes"] == ["skipped: already processed"]


@pytest.mark.parametrize("body,status", [
    ({"file_name": "big.pdf", "file_size": 0}, 422),
    ({"file_name": "big.pdf", "file_size": 51 * MB}, 413),
    ({"file_name": "old.doc", "file_size": 100}, 415),
    ({"file_name": "noext", "file_size": 100}, 415),
    ({"file_name": "a.pdf"}, 422),
])
def test_presign_limits(user, body, status):
    res = user.post("/files/presign", json=body)
    assert res.status == status, res.text
    assert isinstance(res.json()["detail"], str)


# --------------------------------------------------------------------------- ownership


def test_another_users_file_is_404_everywhere(user, other_user, s3):
    mine = upload(user, "mine.txt", b"private words").json()
    chat = user.new_chat()
    for method, path in [("GET", f"/files/{mine['id']}"), ("GET", f"/files/{mine['id']}/download"),
                         ("DELETE", f"/files/{mine['id']}")]:
        res = other_user.request(method, path)
        assert res.status == 404 and res.json()["detail"] == "File not found", (method, path)
    assert other_user.get("/files").json() == []
    assert upload(other_user, "x.txt", b"x", chat_id=chat["id"]).status == 404
    assert other_user.post("/files/presign", json={"file_name": "x.pdf", "file_size": 9,
                                                   "chat_id": chat["id"]}).status == 404
    assert keys_of(s3, user) == [f"users/{user.id}/{mine['id']}"] and keys_of(s3, other_user) == []
    assert user.get(f"/files/{mine['id']}").status == 200


# --------------------------------------------------------------------------- cleanup


def test_deleting_a_chat_deletes_its_files(user, s3, sql):
    chat = user.new_chat()
    inside = upload(user, "in.txt", b"in the chat", chat_id=chat["id"]).json()
    assert inside["chat_id"] == chat["id"]
    pending = user.post("/files/presign", json={"file_name": "p.txt", "file_size": 5, "chat_id": chat["id"]}).json()
    s3.put_object(Bucket=TEST_BUCKET, Key=f"users/{user.id}/{pending['file']['id']}", Body=b"hello")
    outside = upload(user, "out.txt", b"not in a chat").json()
    assert user.delete(f"/chats/{chat['id']}").status == 200
    assert keys_of(s3, user) == [f"users/{user.id}/{outside['id']}"]
    assert [x["id"] for x in user.get("/files").json()] == [outside["id"]]


def test_failed_delete_can_be_retried(user, s3, sql, monkeypatch):
    f = upload(user, "keep.txt", b"important").json()

    def s3_down(*keys):
        raise ServiceUnavailable("File storage is unavailable (delete failed); please try again")

    with monkeypatch.context() as m:  # S3 fails: nothing changes
        m.setattr(storage, "delete", s3_down)
        assert user.delete(f"/files/{f['id']}").status == 503
    assert len(keys_of(s3, user)) == 1 and user.get(f"/files/{f['id']}").status == 200

    async def db_down(self):
        raise ServiceUnavailable("The database connection was lost; please try again")

    with monkeypatch.context() as m:  # the database fails after S3: the row remains, the retry finishes
        m.setattr(File, "delete", db_down)
        assert user.delete(f"/files/{f['id']}").status == 503
    assert keys_of(s3, user) == [] and user.get(f"/files/{f['id']}").status == 200
    assert user.delete(f"/files/{f['id']}").status == 200
    assert sql("SELECT count(*) FROM files WHERE user_id = %s", (user.id,)) == [(0,)]


def test_delete_account_removes_everything(api, s3, sql):
    user = api.new_user()
    upload(user, "a.txt", b"one")
    chat = user.new_chat()
    upload(user, "b.txt", b"two", chat_id=chat["id"])
    s3.put_object(Bucket=TEST_BUCKET, Key=f"users/{user.id}/{uuid.uuid4()}", Body=b"stray")  # no row at all
    bystander = api.new_user()
    theirs = upload(bystander, "c.txt", b"three").json()

    wrong = user.delete("/users/me", json={"password": "not the password"})
    assert wrong.status == 400 and len(keys_of(s3, user)) == 3
    assert user.delete("/users/me", json={}).status == 422

    res = user.delete("/users/me", json={"password": user.password})
    assert res.status == 200, res.text
    assert keys_of(s3, user) == []
    for table in ("users", "files", "chats", "chat_sessions"):
        column = "id" if table == "users" else "user_id"
        assert sql(f"SELECT count(*) FROM {table} WHERE {column} = %s", (user.id,)) == [(0,)]
    assert user.get("/users/me").status == 401
    assert bystander.get(f"/files/{theirs['id']}").status == 200 and len(keys_of(s3, bystander)) == 1


def test_health_reports_s3(api):
    body = api.request("GET", "/health").json()
    assert body["s3"] == "healthy"


def test_a_delete_that_lost_a_race_is_a_404_not_a_second_success(user, s3):
    """Two deletes that both passed the ownership check: only the one that removes the row
    succeeds (the other answers 404), for files and chats alike."""
    import asyncio

    from shared import file_service
    from shared.errors import NotFound
    from shared.models import Chat

    run = asyncio.new_event_loop().run_until_complete  # asyncio.run would unset the loop Mangum uses
    file_id = upload(user, "race.txt", b"racing", "text/plain").json()["id"]
    found = run(File.get_by_id(uuid.UUID(file_id), uuid.UUID(user.id)))
    run(file_service.delete_file(found))
    with pytest.raises(NotFound):
        run(file_service.delete_file(found))
    chat = run(Chat.get_by_id(uuid.UUID(user.new_chat("race")["id"]), uuid.UUID(user.id)))
    run(file_service.delete_chat(chat))
    with pytest.raises(NotFound):
        run(file_service.delete_chat(chat))
    assert keys_of(s3, user) == []


def test_no_upload_lands_in_a_chat_while_it_is_being_deleted(user, s3, sql):
    """The chat row is locked from reading its files' keys until it is gone: an upload's insert
    in between waits (here: times out) instead of leaving a row - or an object - behind."""
    import asyncio

    import psycopg2

    from shared import file_service
    from shared.models import Chat

    chat_id = user.new_chat("doomed")["id"]
    assert upload(user, "a.txt", b"first", "text/plain", chat_id=chat_id).status == 201
    chat = asyncio.new_event_loop().run_until_complete(Chat.get_by_id(uuid.UUID(chat_id)))
    blocked = []

    def remove_objects(keys):
        try:
            sql("SET lock_timeout = '200ms'; INSERT INTO files (id, user_id, chat_id, original_name, content_type, "
                "s3_key, file_size) VALUES (%s, %s, %s, 'late.txt', 'text/plain', %s, 4)",
                (str(uuid.uuid4()), user.id, chat_id, f"users/{user.id}/{uuid.uuid4()}"))
        except psycopg2.errors.LockNotAvailable:
            blocked.append(True)
        storage.delete(*keys)

    assert asyncio.new_event_loop().run_until_complete(chat.delete_with_files(remove_objects)) is True
    assert blocked == [True]
    assert sql("SELECT count(*) FROM files WHERE chat_id = %s", (chat_id,))[0][0] == 0
    assert keys_of(s3, user) == []
