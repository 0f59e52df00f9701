"""Files function: upload (direct, or presigned for big files), list, read, download, delete."""
from __future__ import annotations

import uuid

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from shared import storage
from shared.app import CurrentCaller, CurrentUser, Limit, Offset, create_app, lambda_handler
from shared.errors import Conflict
from shared.file_service import delete_file, read_upload, start_presigned_upload, store_upload
from shared.models import File
from shared.schemas import Envelope, FileDetailOut, FileOut, PresignIn, PresignOut
from shared.settings import get_settings

app = create_app("files")


async def owned_file(file_id: uuid.UUID, caller: CurrentCaller) -> File:
    return await File.get_for(caller, file_id)


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the file (at most MAX_UPLOAD_BYTES)"},
                   "chat_id": {"type": "string", "format": "uuid", "description": "the chat it belongs to (optional)"}},
}}}}}


@app.post("/files/upload", response_model=FileOut, status_code=201, openapi_extra=_UPLOAD_BODY)
async def upload(request: Request, user: CurrentUser):
    name, data, chat_id = await read_upload(request)
    file = await store_upload(user.id, name, data, chat_id)
    return file.public()


@app.post("/files/presign", response_model=PresignOut, status_code=201)
async def presign(body: PresignIn, user: CurrentUser):
    return await start_presigned_upload(user.id, body.file_name, body.file_size, body.chat_id)


@app.get("/files", response_model=list[FileOut])
async def list_files(response: Response, caller: CurrentCaller, limit: Limit = 50, offset: Offset = 0):
    files, total = await File.page_for(caller, limit, offset)
    response.headers["X-Total-Count"] = str(total)
    return [f.public() for f in files]


@app.get("/files/{file_id}", response_model=FileDetailOut)
async def get_file(file_id: uuid.UUID, caller: CurrentCaller):
    return (await owned_file(file_id, caller)).public(with_text=True)


@app.get("/files/{file_id}/download")
async def download(file_id: uuid.UUID, caller: CurrentCaller, redirect: bool = True):
    """302 to a presigned S3 GET valid for a few minutes; `?redirect=false` returns it as JSON."""
    file = await owned_file(file_id, caller)
    if file.status == "pending":
        raise Conflict("The file has not finished uploading yet")
    url = storage.download_url(file.s3_key, file.original_name, file.content_type)
    if not redirect:
        return {"url": url, "expires_in": get_settings().presigned_url_ttl_seconds}
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@app.delete("/files/{file_id}", response_model=Envelope)
async def delete(file_id: uuid.UUID, caller: CurrentCaller):
    file = await owned_file(file_id, caller)
    await delete_file(file)
    return Envelope(message="File deleted", data={"file_id": str(file.id)})


handler = lambda_handler(app)
