"""The event stream's HTTP surface: the three transports, tickets, reports, typing, presence,
and the admin transport switch (docs/realtime.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.api.deps import CurrentCredential, CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import Input
from parley.core.errors import BadInput
from parley.core.limits import SEQ_MAX
from parley.services.stream import REPORTED_COUNTERS, ReportSender
from parley.transports import client_ip, poll, sse, ws

router = APIRouter(tags=["stream"])


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


class ReportIn(Input):
    transport: Literal["ws", "sse", "poll"]
    counters: dict[str, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(
        default_factory=dict, max_length=len(REPORTED_COUNTERS)
    )
    write_receipt_ms: list[Annotated[float, Field(ge=0, le=3_600_000)]] = Field(
        default_factory=list, max_length=10_000
    )


class PresenceOut(BaseModel):
    online: list[int]


class TransportModeIn(Input):
    mode: Literal["auto", "sse_only"]


class TransportModeOut(BaseModel):
    mode: str


STREAM_WS_PATH = "/v1/stream/ws"


class StreamSocketRoute:
    """`/v1/stream/ws`, served ahead of the framework's routing and exception layers.

    Each of those layers keeps frames and wrappers alive for as long as a socket is open and
    wraps every frame sent: a third of the memory of an idle connection and a coroutine call
    per frame per layer. The stream socket needs none of them (it answers its own errors as
    frames and close codes), so the app's outermost layers hand it straight to the transport.
    Anything else passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == STREAM_WS_PATH:
            websocket = WebSocket(scope, receive, send)
            await ws.serve_websocket(websocket, scope["app"].state.services.stream)
            return
        await self.app(scope, receive, send)


@router.get(
    "/v1/stream/sse",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_sse(
    request: Request,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    ticket: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    """Server-Sent Events; `Last-Event-ID` (set by browsers on reconnect) wins over `cursor`."""
    return await sse.open_sse(request, services.stream)


@router.get("/v1/stream/poll")
async def stream_poll(
    request: Request,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    timeout: Annotated[float, Query(ge=0, le=poll.MAX_TIMEOUT_SECONDS)] = 25,
) -> Response:
    """`{"events": [...], "cursor": "N"}`: what came after `cursor`, waiting up to `timeout` s."""
    return await poll.poll(request, services.stream, timeout)


@router.post("/v1/stream/ticket", response_model=TicketOut)
async def stream_ticket(credential: CurrentCredential, services: ServicesDep) -> TicketOut:
    """A single-use, 60-second ticket for opening a WebSocket or EventSource from a browser.

    Streams opened with it end when the token that asked for it is revoked.
    """
    return TicketOut(ticket=await services.stream.issue_ticket(credential), expires_in=60)


@router.post("/v1/stream/report", status_code=204)
async def stream_report(
    body: ReportIn, request: Request, credential: CurrentCredential, services: ServicesDep
) -> None:
    """Client-side invariant counters (deltas) and write-receipt latencies (any signed-in user).

    At most PARLEY_RELEASE_REPORT_RATE_PER_USER per user (429 past it). Each is stored with who
    sent it; one account's P0 counters alone raise an alert and hold the release, never kill it.
    """
    await services.stream.check_report_rate(credential.user)
    services.stream.record_report(
        body.transport,
        body.counters,
        body.write_receipt_ms,
        sender=ReportSender(
            user_id=credential.user.id,
            token_id=credential.token_id,
            client_ip=client_ip(request),
        ),
    )


@router.post("/v1/conversations/{conversation_id}/typing", status_code=204, tags=["messages"])
async def typing(conversation_id: ConversationId, user: CurrentUser, services: ServicesDep) -> None:
    """Tell the other members you are typing (shown for 5 s)."""
    await services.stream.do_typing(user, conversation_id)


@router.get("/v1/presence", response_model=PresenceOut)
async def presence(
    user: CurrentUser,
    services: ServicesDep,
    user_ids: Annotated[str, Query(max_length=2000, pattern=r"^[0-9]+(,[0-9]+)*$")],
) -> PresenceOut:
    """Which of these users (comma-separated ids, at most 200) have an open stream.

    Only yourself and people you share a conversation with: anyone else reads as offline.
    """
    ids = [int(part) for part in user_ids.split(",")]
    if len(ids) > 200 or max(ids) > SEQ_MAX:
        raise BadInput("ask about at most 200 user ids at a time")
    return PresenceOut(online=sorted(await services.stream.presence_for(user, ids)))


@router.get("/v1/admin/transport", response_model=TransportModeOut, tags=["admin"])
async def get_transport_mode(user: CurrentUser, services: ServicesDep) -> TransportModeOut:
    return TransportModeOut(mode=services.stream.mode)


@router.put("/v1/admin/transport", response_model=TransportModeOut, tags=["admin"])
async def set_transport_mode(
    body: TransportModeIn, user: CurrentUser, services: ServicesDep
) -> TransportModeOut:
    """`sse_only` is the rollback path: WebSockets are told to move and new ones refused."""
    await services.release.flags.do_set_transport_mode(user, body.mode)
    return TransportModeOut(mode=body.mode)
