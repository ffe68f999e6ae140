"""`/api/widget/...` past bootstrap: history, receipts, typing, attachments, SSE and WebSocket.

Each endpoint passes the defences of the others (edge.access_visit: global switch, inbox switch,
origin) and a per-session rate; the streams are receive-only, so every write goes through a
rate-limited REST endpoint.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from parley.api.deps import ServicesDep
from parley.api.routes.attachments import AttachmentUploaded, content_disposition
from parley.api.schemas import (
    ATTACHMENT_ID_PATTERN,
    AttachmentOut,
    Input,
    MessageOut,
    MessagesOut,
    Seq,
)
from parley.assembly import Services
from parley.core import limits
from parley.core.errors import BadInput, ErrorCode, ParleyError
from parley.features.widget.edge import SessionQuery, access_visit, cors_headers, ip_of
from parley.transports import sse, ws

router = APIRouter(prefix="/api/widget", tags=["widget"])

_SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_CHUNK = 64 * 1024
SeqQuery = Annotated[int | None, Query(ge=0, le=limits.SEQ_MAX)]


class SessionIn(Input):
    session: Annotated[str, Field(min_length=8, max_length=64, pattern=_SESSION.pattern)]


class ReadIn(SessionIn):
    delivered_seq: Seq | None = None
    read_seq: Seq | None = None


class StaffPersonOut(BaseModel):
    id: int
    name: str = Field(description="Display name only: the login name stays with staff.")


class WidgetStaffOut(BaseModel):
    staff: list[StaffPersonOut]


@router.get("/staff", response_model=WidgetStaffOut)
async def staff(
    request: Request, response: Response, services: ServicesDep, session: SessionQuery
) -> WidgetStaffOut:
    """Who answers in the visitor's conversation (its members but them): names for replies."""
    visit = await access_visit(request, services, session)
    response.headers.update(cors_headers(request))
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    members = await services.timeline.conversations.list_members(visit.session.conversation_id)
    ids = [m.user_id for m in members if m.user_id != visit.visitor.id]
    people = await services.identity.users.find_users_by_id(ids) if ids else []
    return WidgetStaffOut(
        staff=[StaffPersonOut(id=u.id, name=u.display_name or u.name) for u in people]
    )


class ReadOut(BaseModel):
    conversation_id: int
    user_id: int
    delivered_seq: int
    read_seq: int


class StaffReceiptOut(BaseModel):
    conversation_id: int
    user_id: int
    delivered_seq: int
    read_seq: int


class VisitorMessagesOut(MessagesOut):
    # How far each operator of the conversation has got, so marks show right after a reload.
    receipts: list[StaffReceiptOut]


@router.get("/messages", response_model=VisitorMessagesOut)
async def history(
    request: Request,
    response: Response,
    services: ServicesDep,
    session: SessionQuery,
    before_seq: SeqQuery = None,
    after_seq: SeqQuery = None,
    limit: Annotated[int, Query(ge=1, le=limits.PAGE_LIMIT_MAX)] = limits.PAGE_LIMIT_DEFAULT,
) -> VisitorMessagesOut:
    """The visitor's conversation, as `GET /v1/conversations/{id}/messages` (restore on reload).

    Without cursors it is the newest page (a reload shows the latest messages, not the first).
    `receipts` are the other members' delivered/read cursors.
    """
    visit = await access_visit(request, services, session)
    response.headers.update(cors_headers(request))
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    if before_seq is None and after_seq is None:
        before_seq = limits.SEQ_MAX
    conversation, found = await services.timeline.list_messages(
        visit.visitor,
        visit.session.conversation_id,
        after=after_seq,
        before=before_seq,
        limit=limit,
    )
    members = await services.timeline.conversations.list_members(visit.session.conversation_id)
    return VisitorMessagesOut(
        messages=[MessageOut.of(message) for message in found],
        last_seq=max([conversation.last_seq, *(m.seq for m in found)]),
        receipts=[
            StaffReceiptOut(
                conversation_id=m.conversation_id,
                user_id=m.user_id,
                delivered_seq=m.delivered_seq,
                read_seq=m.read_seq,
            )
            for m in members
            if m.user_id != visit.visitor.id
        ],
    )


@router.post("/read", response_model=ReadOut)
async def read(
    body: ReadIn, request: Request, response: Response, services: ServicesDep
) -> ReadOut:
    """Move the visitor's delivered/read cursors forward (lower values are ignored)."""
    visit = await access_visit(request, services, body.session)
    response.headers.update(cors_headers(request))
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    outcome = await services.timeline.do_receipt(
        visit.visitor,
        visit.session.conversation_id,
        delivered_seq=body.delivered_seq,
        read_seq=body.read_seq,
    )
    return ReadOut(
        conversation_id=visit.session.conversation_id,
        user_id=visit.visitor.id,
        delivered_seq=outcome.delivered_seq,
        read_seq=outcome.read_seq,
    )


@router.post("/typing", status_code=204)
async def typing(body: SessionIn, request: Request, services: ServicesDep) -> Response:
    """Tell the operators the visitor is typing (shown for 5 s)."""
    visit = await access_visit(request, services, body.session)
    await services.widget_limits.hit("typing_session", str(visit.session.id))
    await services.stream.do_typing(visit.visitor, visit.session.conversation_id)
    return Response(status_code=204, headers=cors_headers(request))


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentUploaded,
    openapi_extra={
        "requestBody": {
            "content": {"multipart/form-data": {"schema": {"properties": {"file": {}}}}}
        }
    },
)
async def upload(request: Request, services: ServicesDep, session: SessionQuery) -> Response:
    """A file into the visitor's conversation (multipart field `file`); send its id next.

    The body is read only after the session, origin, inbox setting and rate have passed.
    """
    visit = await access_visit(request, services, session)
    services.widget.check_attachments(visit.inbox)
    await services.widget_limits.hit("upload_session", str(visit.session.id))
    async with request.form(max_files=1, max_fields=1) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise BadInput("send the file as the multipart field 'file'", ErrorCode.VALIDATION)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await file.read(_CHUNK):
                yield chunk

        attachment = await services.attachments.do_upload(
            visit.visitor,
            visit.session.conversation_id,
            file.filename or "file",
            chunks(),
            size_hint=file.size,
        )
    uploaded = AttachmentUploaded(
        **AttachmentOut.of(attachment.ref()).model_dump(), sha256=attachment.sha256
    )
    return Response(
        uploaded.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers=cors_headers(request),
    )


@router.get(
    "/attachments/{attachment_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(
    attachment_id: Annotated[str, Path(max_length=40, pattern=ATTACHMENT_ID_PATTERN)],
    request: Request,
    services: ServicesDep,
    session: SessionQuery,
) -> StreamingResponse:
    """A file of the visitor's own conversation; any other id is 404, as if it did not exist."""
    visit = await access_visit(request, services, session)
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    found = await services.attachments.access_download(visit.visitor, attachment_id)
    attachment = found.attachment
    return StreamingResponse(
        found.chunks,
        media_type=attachment.content_type if found.inline else "application/octet-stream",
        headers={
            **cors_headers(request),
            "Content-Disposition": content_disposition(attachment, inline=found.inline),
            "Content-Length": str(attachment.size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@router.get(
    "/sse",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def widget_sse(
    request: Request,
    services: ServicesDep,
    session: SessionQuery,
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
) -> StreamingResponse:
    """Server-Sent Events for the visitor, as `/v1/stream/sse` (`Last-Event-ID` wins)."""
    visit = await access_visit(request, services, session)
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    response = await sse.open_sse_as(
        visit.visitor, request, services.stream, client_ip=ip_of(request, services)
    )
    response.headers.update(cors_headers(request))
    return response


@router.websocket("/ws")
async def widget_ws(websocket: WebSocket) -> None:
    """The visitor's stream over a WebSocket: events out, only `ping` in.

    A page whose origin the inbox does not allow is refused at the handshake (HTTP 403); other
    refusals are an error frame and a close code, as on `/v1/stream/ws`.
    """
    services: Services = websocket.app.state.services
    session = websocket.query_params.get("session", "")
    try:
        if not _SESSION.match(session):
            raise BadInput("session: a widget session token is required")
        visit = await access_visit(websocket, services, session)
    except ParleyError as exc:
        if exc.code == ErrorCode.ORIGIN_NOT_ALLOWED:
            await websocket.close(code=1008, reason="origin not allowed")
            return
        await websocket.accept()
        await ws.refuse(websocket, exc)
        return
    await websocket.accept()
    try:
        await services.widget_limits.hit("poll_session", str(visit.session.id))
    except ParleyError as exc:
        await ws.refuse(websocket, exc)
        return
    await ws.serve_websocket_as(
        visit.visitor,
        websocket,
        services.stream,
        client_ip=ip_of(websocket, services),
        receive_only=True,
    )
