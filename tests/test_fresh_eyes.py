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


BOUNDARY = "fresh-eyes"


def _part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: text/plain\r\n\r\n".encode() \
        + value + b"\r\n"


UNREADABLE_JSON = [
    ("not UTF-8", b'{"title": "a\xff\xfeb"}'),
    ("nested beyond the parser", b"[" * 5000 + b"]" * 5000),
    ("a number beyond the parser", b'{"title": 1' + b"0" * 5000 + b"}"),
]
UNREADABLE_MULTIPART = [
    ("no boundary", "multipart/form-data", b"hello"),
    ("another boundary", "multipart/form-data; boundary=other", _part("file", b"hi", "a.txt") + f"--{BOUNDARY}--\r\n".encode()),
    ("two file parts", f"multipart/form-data; boundary={BOUNDARY}",
     _part("file", b"first", "a.txt") + _part("file", b"second", "b.txt") + f"--{BOUNDARY}--\r\n".encode()),
    ("too many fields", f"multipart/form-data; boundary={BOUNDARY}",
     b"".join(_part(f"f{i}", b"v") for i in range(20)) + _part("file", b"hi", "a.txt") + f"--{BOUNDARY}--\r\n".encode()),
]


@pytest.mark.parametrize("label,body", UNREADABLE_JSON, ids=[c[0] for c in UNREADABLE_JSON])
def test_a_json_body_the_parser_cannot_read_is_a_422_like_malformed_json(user, sql, label, body):
    """These used to be 400 "There was an error parsing the body" while `{"title": ` was a 422;
    the contract's answer for a body that fails validation is 422, whatever the parser tripped on."""
    before = sql("SELECT count(*) FROM chats WHERE user_id = %s", (user.id,))[0][0]
    res = user.post("/chats", body=body, headers={"content-type": "application/json"})
    assert res.status == 422, (label, res.status, res.text)
    assert res.json()["detail"].startswith("Invalid input - body:"), res.text
    assert res.json()["errors"][0]["field"] == "body"
    assert sql("SELECT count(*) FROM chats WHERE user_id = %s", (user.id,))[0][0] == before


@pytest.mark.parametrize("label,content_type,body", UNREADABLE_MULTIPART, ids=[c[0] for c in UNREADABLE_MULTIPART])
def test_a_multipart_body_the_parser_cannot_read_is_a_422(user, sql, label, content_type, body):
    res = user.post("/files/upload", body=body, headers={"content-type": content_type})
    assert res.status == 422, (label, res.status, res.text)
    detail = res.json()["detail"]
    assert detail.startswith("Invalid input - body:") and len(detail) > len("Invalid input - body: "), detail
    assert sql("SELECT count(*) FROM files WHERE user_id = %s", (user.id,))[0][0] == 0


def test_a_well_formed_upload_still_works_after_those(user):
    body, headers = files_util.multipart("ok.txt", b"fine words", "text/plain")
    assert user.post("/files/upload", body=body, headers=headers).status == 201


def test_unhealthy_health_carries_a_detail_like_every_other_error(api, monkeypatch):
    """/health's 503 was the one error without `detail` (the front end shows `detail`)."""
    from dataclasses import replace

    from shared import db, settings

    db.reset()
    patched = replace(settings.get_settings(), database_url="postgresql://postgres@127.0.0.1:1/none",
                      db_connect_timeout=1)
    monkeypatch.setattr(db, "get_settings", lambda: patched)
    try:
        res = api.request("GET", "/health")
        assert res.status == 503
        body = res.json()
        assert body["status"] == "unhealthy" and body["database"] == "unhealthy"
        assert isinstance(body["detail"], str) and body["detail"]
    finally:
        monkeypatch.undo()
        db.reset()
    res = api.request("GET", "/health")
    assert res.status == 200 and "detail" not in res.json()


def test_embedded_postgres_stops_a_postmaster_restarted_behind_its_back():
    """`make dev`'s embedded PostgreSQL, stopped and started again by hand (pg_ctl) while the
    runner ran, was left running when the runner stopped: stop() only knew the first pid."""
    import psutil
    from pgserver._commands import pg_ctl

    from local import embedded_pg

    data = Path(tempfile.mkdtemp(prefix="iflychat-restart-pg-"))
    pg = embedded_pg.start(data)
    user = pg._server.system_user
    first = pg.pid
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=40)
        socket_dir = Path(pg.url.split("host=")[1].split("&")[0].replace("%2F", "/"))
        pg_ctl(["-w", "-o", f'-h "" -k {socket_dir}', "-l", str(data / "restart.log"), "start"],
               pgdata=data, user=user, timeout=40)
        assert pg.running and pg.pid != first  # the handle sees the new postmaster
        second = pg.pid
    finally:
        pg.stop()
        stray = (data / "postmaster.pid").exists()
        if stray:  # the fault itself: never leave the test's own server behind
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, user=user, timeout=40)
    assert not stray, "stop() left the restarted postmaster running"
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
