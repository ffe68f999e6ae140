"""Calls over REST (`/v1/calls...`, for SSE and long-poll clients and scripts; WebSocket clients
send the same signals as `call.*` frames), the ICE configuration, and the call page `/calls`.

Who may call what: any signed-in user reads `/v1/calls/config` (TURN credentials are their
own); placing a call needs membership of the conversation; everything about a call is for its
two parties only (anyone else gets 404, as for a call that does not exist).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.core.calls import CallAction
from parley.features.calls.inputs import AnswerIn, EndIn, IceIn, OfferIn

router = APIRouter(prefix="/v1", tags=["calls"])
CallId = Annotated[
    str, Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="A call id.")
]
page_router = APIRouter(tags=["calls"], include_in_schema=False)


class IceServer(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class CallConfigOut(BaseModel):
    ice_servers: list[IceServer]
    ttl_seconds: int | None
    expires_at: int | None
    ring_seconds: int


class CallOut(BaseModel):
    call: dict[str, Any]


class CallsOut(BaseModel):
    calls: list[dict[str, Any]]


@router.get("/calls/config", response_model=CallConfigOut)
async def call_config(user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """STUN/TURN servers for RTCPeerConnection, with TURN credentials valid for `ttl_seconds`."""
    return services.calls.config(user)


@router.get("/calls", response_model=CallsOut)
async def list_calls(
    user: CurrentUser,
    services: ServicesDep,
    live: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CallsOut:
    """Your calls, newest first (`live=true`: only those ringing or going on)."""
    calls = await services.calls.list_calls(user, live=live, limit=limit)
    return CallsOut(calls=[call.public() for call in calls])


@router.post("/conversations/{conversation_id}/calls", response_model=CallOut, status_code=201)
async def place_call(
    conversation_id: ConversationId,
    body: OfferIn,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> CallOut:
    """Ring a member (`call.offer`); 200 with the same call for a retry of the same `call_id`."""
    call, created = await services.calls.do_offer(user, conversation_id, body)
    if not created:
        response.status_code = 200
    return CallOut(call=call.public())


@router.get("/calls/{call_id}", response_model=CallOut)
async def get_call(call_id: CallId, user: CurrentUser, services: ServicesDep) -> CallOut:
    return CallOut(call=(await services.calls.access_call(user, call_id)).public())


@router.post("/calls/{call_id}/answer", response_model=CallOut)
async def answer_call(
    call_id: CallId, body: AnswerIn, user: CurrentUser, services: ServicesDep
) -> CallOut:
    return CallOut(call=(await services.calls.do_answer(user, call_id, body)).public())


@router.post("/calls/{call_id}/ice", response_model=CallOut)
async def send_candidate(
    call_id: CallId, body: IceIn, user: CurrentUser, services: ServicesDep
) -> CallOut:
    return CallOut(call=(await services.calls.do_ice(user, call_id, body)).public())


@router.post("/calls/{call_id}/{action}", response_model=CallOut)
async def end_call(
    call_id: CallId,
    action: Literal["reject", "busy", "hangup"],
    body: EndIn,
    user: CurrentUser,
    services: ServicesDep,
) -> CallOut:
    """`reject` or `busy` (the callee, while it rings) or `hangup` (either side, any time)."""
    ended = await services.calls.do_end(user, call_id, CallAction(action), body)
    return CallOut(call=ended.public())


# Media needs camera/microphone permission for this page only; scripts come from this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; media-src 'self' blob: mediastream:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "camera=(self), microphone=(self)",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@page_router.get("/calls")
async def call_page(request: Request) -> FileResponse:
    """A minimal call page: sign in, pick a conversation member, call them (docs/calls.md)."""
    return FileResponse(request.app.state.static_dir / "calls" / "index.html", headers=PAGE_HEADERS)
