"""The web app's media API: ``GET /api/v1/whatsapp/media/{media_id}`` streams a stored file.

Organization-scoped like every ``/api/v1`` route (the SaaS's bearer JWT, :mod:`wa_webhook.deps`):
a media id of another organization answers 404, exactly like an unknown one. ``media_id`` is
Meta's id, as the CRM sees it in the message (``raw.<type>.id``). A known file not stored
(yet) answers 409 with its state (``pending``, ``failed``, ``expired``) and error kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse

from wa_core.db.schema_media import whatsapp_media
from wa_core.media.storage import MediaStorage
from wa_webhook.deps import CallerDep

router = APIRouter(prefix="/api/v1/whatsapp", tags=["media"])

#: bytes read from storage and sent at a time
CHUNK_BYTES = 256 * 1024


def _storage(request: Request) -> MediaStorage:
    storage = getattr(request.app.state, "media_storage", None)
    if storage is None:
        storage = request.app.state.media_storage = MediaStorage.from_settings(request.app.state.settings)
    return storage


@router.get("/media/{media_id}", response_model=None)
async def get_media(
    request: Request, caller: CallerDep, media_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
) -> StreamingResponse | JSONResponse:
    """The stored file of ``media_id`` in the caller's organization: its bytes with
    ``Content-Type`` (the MIME type Meta gave), ``Content-Length`` and ``ETag`` (its hex
    SHA-256). 404 unknown or another organization's; 409 not stored, with ``state``."""
    engine = request.app.state.api_engine()
    m = whatsapp_media.c

    def lookup() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(whatsapp_media)
                .where(m.organization_id == caller.organization_id, m.media_id == media_id)
                .order_by(sa.case((m.state == "stored", 0), else_=1), m.id)
                .limit(1)
            ).first()

    row = await anyio.to_thread.run_sync(lookup)
    if row is None:
        raise HTTPException(404, "no such media")
    if row.state != "stored" or not row.storage_key:
        return JSONResponse({"media_id": media_id, "state": row.state, "error_kind": row.error_kind}, status_code=409)
    storage = _storage(request)
    try:
        handle = await anyio.to_thread.run_sync(storage.open, row.storage_key)
    except FileNotFoundError:
        raise HTTPException(404, "the stored file is missing") from None

    def chunks() -> Iterator[bytes]:  # iterated in a worker thread by Starlette
        with handle:
            while data := handle.read(CHUNK_BYTES):
                yield data

    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if row.file_size is not None:
        headers["Content-Length"] = str(row.file_size)
    if row.sha256:
        headers["ETag"] = f'"{row.sha256}"'
    if row.filename:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(row.filename, safe='')}"
    return StreamingResponse(chunks(), media_type=row.mime_type or "application/octet-stream", headers=headers)
