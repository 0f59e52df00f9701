"""The S3 side of files: object keys, the lazily created client, presigned URLs.

boto3 is imported on first use only, so a function that never touches S3 (or a health check
with no bucket configured) does not pay for it at cold start, and tests' moto mocks apply to
the client because it is created after they start. Keys are `{S3_PREFIX}{user_id}/{file_id}`:
never the user's file name, and everything of one user under one prefix.
"""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import ServiceUnavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)
_client: Any = None
_lock = threading.Lock()


def client() -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                import boto3
                from botocore.config import Config

                s = get_settings()
                _client = boto3.client(
                    "s3",
                    region_name=s.aws_region,
                    endpoint_url=s.s3_endpoint_url or None,
                    config=Config(signature_version="s3v4", connect_timeout=5, read_timeout=20,
                                  retries={"max_attempts": 3, "mode": "standard"}),
                )
    return _client


def reset() -> None:
    """Forget the client (tests that start a fresh mock use it)."""
    global _client
    _client = None


def bucket() -> str:
    name = get_settings().s3_bucket
    if not name:
        raise ServiceUnavailable("File storage is not configured (S3_BUCKET is empty)")
    return name


def user_prefix(user_id: uuid.UUID | str) -> str:
    return f"{get_settings().s3_prefix}{user_id}/"


def key_for(user_id: uuid.UUID | str, file_id: uuid.UUID | str) -> str:
    return f"{user_prefix(user_id)}{file_id}"


def file_id_from_key(key: str) -> uuid.UUID | None:
    """The file id a key names, or None for a key this application did not make."""
    prefix = get_settings().s3_prefix
    parts = key[len(prefix):].split("/") if key.startswith(prefix) else []
    try:
        return uuid.UUID(parts[1]) if len(parts) == 2 else None
    except ValueError:
        return None


def _unavailable(action: str, exc: Exception) -> ServiceUnavailable:
    log.warning("s3 %s failed: %s", action, exc)
    return ServiceUnavailable(f"File storage is unavailable ({action} failed); please try again")


def _call(action: str, fn, /, **kw) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(Bucket=bucket(), **kw)
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(action, exc) from exc


# Objects the upload call stores carry this metadata; a presigned POST cannot add it (S3 refuses
# form fields its policy does not name), so the processor can tell the two kinds apart.
DIRECT_UPLOAD = {"origin": "direct-upload"}


def put(key: str, data: bytes, content_type: str) -> None:
    """Store a directly uploaded file (marked as such: the S3 event processor leaves it alone)."""
    _call("upload", client().put_object, Key=key, Body=data, ContentType=content_type, Metadata=DIRECT_UPLOAD)


def get(key: str) -> bytes:
    return _call("download", client().get_object, Key=key)["Body"].read()


@dataclass(frozen=True)
class Head:
    size: int
    direct_upload: bool


def head(key: str) -> Head | None:
    """The object's size and whether the upload call stored it, or None when it does not exist."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = client().head_object(Bucket=bucket(), Key=key)
        return Head(int(found["ContentLength"]), found.get("Metadata") == DIRECT_UPLOAD)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise _unavailable("head", exc) from exc
    except BotoCoreError as exc:
        raise _unavailable("head", exc) from exc


def delete(*keys: str) -> None:
    """Delete objects; deleting one that is already gone is not an error (a retry is safe)."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start:start + 1000]]
        result = _call("delete", client().delete_objects, Delete={"Objects": batch, "Quiet": True})
        if result.get("Errors"):
            raise ServiceUnavailable("File storage refused to delete some objects; please try again")


def delete_prefix(prefix: str) -> int:
    """Delete every object under `prefix`; returns how many there were."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix)
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable("list", exc) from exc
    delete(*keys)
    return len(keys)


def download_url(key: str, file_name: str, content_type: str) -> str:
    """A short-lived presigned GET (SigV4) that downloads the object under its original name."""
    ascii_name = file_name.encode("ascii", "replace").decode("ascii").replace('"', "'")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name)}"
    return client().generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket(), "Key": key, "ResponseContentDisposition": disposition,
                "ResponseContentType": content_type},
        ExpiresIn=get_settings().presigned_url_ttl_seconds,
    )


def upload_form(key: str, content_type: str, max_bytes: int) -> dict[str, Any]:
    """A presigned POST for the browser: this key only, this content type only, at most
    `max_bytes`, valid for a few minutes. Returns {url, fields}."""
    return client().generate_presigned_post(
        Bucket=bucket(), Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
        ExpiresIn=get_settings().presigned_url_ttl_seconds,
    )


def check() -> str:
    """'healthy' when the bucket answers, else 'unhealthy' (health uses it)."""
    try:
        _call("head bucket", client().head_bucket)
        return "healthy"
    except ServiceUnavailable:
        return "unhealthy"
