"""Attachments: upload into a conversation; download, for its members only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Path, UploadFile
from fastapi.responses import StreamingResponse

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import ATTACHMENT_ID_PATTERN, AttachmentOut
from parley.core.models import Attachment

router = APIRouter(prefix="/v1", tags=["attachments"])

UPLOAD_PATH_PATTERN = r"/v1/conversations/[^/]+/attachments"
_CHUNK = 64 * 1024


class AttachmentUploaded(AttachmentOut):
    sha256: str


@router.post(
    "/conversations/{conversation_id}/attachments",
    status_code=201,
    response_model=AttachmentUploaded,
)
async def upload_attachment(
    conversation_id: ConversationId,
    file: Annotated[UploadFile, File(description="The file; its type is sniffed from bytes.")],
    user: CurrentUser,
    services: ServicesDep,
) -> AttachmentUploaded:
    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await file.read(_CHUNK):
            yield chunk

    attachment = await services.attachments.do_upload(
        user, conversation_id, file.filename or "file", chunks(), size_hint=file.size
    )
    return AttachmentUploaded(
        **AttachmentOut.of(attachment.ref()).model_dump(), sha256=attachment.sha256
    )


@router.get(
    "/attachments/{attachment_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_attachment(
    attachment_id: Annotated[str, Path(max_length=40, pattern=ATTACHMENT_ID_PATTERN)],
    user: CurrentUser,
    services: ServicesDep,
) -> StreamingResponse:
    download = await services.attachments.access_download(user, attachment_id)
    attachment = download.attachment
    return StreamingResponse(
        download.chunks,
        media_type=attachment.content_type if download.inline else "application/octet-stream",
        headers={
            "Content-Disposition": content_disposition(attachment, inline=download.inline),
            "Content-Length": str(attachment.size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def content_disposition(attachment: Attachment, *, inline: bool) -> str:
    """RFC 6266 with an ASCII fallback and the exact name in `filename*` (RFC 5987).

    The fallback drops `%` too: some browsers percent-decode a plain `filename`.
    """
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\;%' else "_"
        for c in attachment.file_name
    )
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(attachment.file_name)}"
