"""File processor: S3 calls it when a presigned upload lands; it extracts the text and marks the
file processed (or failed, with the reason). A plain Lambda handler: no HTTP, no FastAPI."""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote_plus

from shared.file_service import process_object

log = logging.getLogger("iflychat.file_processor")
logging.getLogger().setLevel(logging.INFO)
# One loop per warm container, like Mangum's; asyncio.run() would close it and unset the
# thread's current loop after every event.
_loop = asyncio.new_event_loop()


async def _process(keys: list[str]) -> list[str]:
    return [await process_object(key) for key in keys]


def handler(event, context):
    """An S3 ObjectCreated notification; each record's key is URL-encoded. An exception (the
    database is down) makes Lambda retry the event; processing the same object twice is safe."""
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in event.get("Records", []) if "s3" in r]
    outcomes = _loop.run_until_complete(_process(keys))
    for key, outcome in zip(keys, outcomes):
        log.info("%s: %s", key, outcome)
    return {"processed": len(keys), "outcomes": outcomes}
