"""local/s3.py: the in-process moto S3 server the local runner uses, with its upload watch."""
from __future__ import annotations

import queue

import boto3
import requests

from local import s3 as local_s3


def test_local_s3_serves_presigned_uploads_and_reports_them():
    s3 = local_s3.start("iflychat-local-test")
    try:
        env = s3.env()
        assert env["S3_ENDPOINT_URL"].startswith("http://127.0.0.1:") and env["S3_BUCKET"] == "iflychat-local-test"
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        events: queue.Queue = queue.Queue()
        s3.watch(events.put, interval=0.05)
        form = client.generate_presigned_post("iflychat-local-test", "users/u/f", ExpiresIn=60)
        posted = requests.post(form["url"], data=form["fields"], files={"file": ("f.txt", b"hello")}, timeout=10)
        assert posted.status_code in (200, 201, 204), posted.text
        event = events.get(timeout=10)
        assert event["Records"][0]["s3"]["object"] == {"key": "users/u/f", "size": 5}
        assert client.get_object(Bucket="iflychat-local-test", Key="users/u/f")["Body"].read() == b"hello"
    finally:
        s3.stop()
