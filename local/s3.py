"""A local S3 for `make dev`: moto's server in a thread of this process, with the bucket made.

    s3 = local.s3.start("iflychat-local-files")      # LocalS3(endpoint_url, bucket, stop, watch)
    os.environ.update(s3.env())                     # before any function is loaded
    s3.watch(on_upload)                             # optional: S3 events for the file processor
    ...
    s3.stop()

moto's server keeps objects in memory (they are gone when the runner stops) and answers
presigned GET and POST like S3, CORS included, so the front end can upload straight to it. It
does not send S3 event notifications to Lambda functions, so `watch` polls the bucket and calls
back with an S3 ObjectCreated event (the shape `s3_event` builds) for each new object.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("iflychat.local.s3")

# moto accepts any credentials; these keep boto3 from looking for real ones (or finding them).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}


def s3_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    """An S3 ObjectCreated notification as Lambda receives it (the key URL-encoded, as S3 does)."""
    from urllib.parse import quote_plus

    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Post",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size}},
    }]}


@dataclass
class LocalS3:
    endpoint_url: str
    bucket: str
    region: str
    _server: Any
    _watchers: list[threading.Event] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What the functions need in their environment to use this S3."""
        return {"S3_BUCKET": self.bucket, "S3_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region,
                **CREDENTIALS}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def watch(self, on_event: Callable[[dict[str, Any]], None], interval: float = 1.0) -> None:
        """Call on_event(s3_event) for every object that appears in the bucket from now on."""
        stop = threading.Event()
        self._watchers.append(stop)
        client = self.client()

        def listing() -> dict[str, tuple[str, int]]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            return {o["Key"]: (o["ETag"], o["Size"]) for page in pages for o in page.get("Contents", [])}

        seen = listing()  # before returning: what is there now is not new

        def loop() -> None:
            nonlocal seen
            while not stop.wait(interval):
                try:
                    now = listing()
                except Exception as exc:  # noqa: BLE001 - a poll that fails is tried again
                    log.warning("local s3 watch: %s", exc)
                    continue
                for key, (etag, size) in now.items():
                    if seen.get(key, (None,))[0] != etag:
                        try:
                            on_event(s3_event(self.bucket, key, size))
                        except Exception:  # noqa: BLE001 - one bad object must not stop the watch
                            log.exception("local s3 watch: processing %s failed", key)
                seen = now

        threading.Thread(target=loop, name="local-s3-watch", daemon=True).start()

    def stop(self) -> None:
        for event in self._watchers:
            event.set()
        self._server.stop()


def start(bucket: str = "iflychat-local-files", region: str = "us-east-1") -> LocalS3:
    """Start moto's S3 on 127.0.0.1 at a free port and create the bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request (the watch polls)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = LocalS3(f"http://{host}:{port}", bucket, region, server)
    try:
        s3.client().create_bucket(Bucket=bucket)
    except Exception:
        server.stop()
        raise
    return s3
