"""Server-Sent Events transport: hello, the missed events, then live ones; ids are positions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from parley import metrics
from parley.core.events import ErrorEvent
from parley.core.models import User
from parley.services.identity import Credential
from parley.services.stream import StreamService, StreamSession
from parley.transports import bearer_token, client_ip

KEEPALIVE_SECONDS = 15.0
# Browsers reconnect after this long if the stream drops (and then send Last-Event-ID).
RETRY_MS = 1000
# Envelopes taken from the queue at a time (bounds what a blocked stream holds).
WRITE_SLICE = 256


async def open_sse(request: Request, stream: StreamService) -> StreamingResponse:
    """Authenticate and open the session (errors become normal JSON HTTP errors)."""
    credential = await stream.authenticate(
        token=bearer_token(request), ticket=request.query_params.get("ticket")
    )
    return await open_sse_as(credential, request, stream, client_ip=client_ip(request))


async def open_sse_as(
    who: User | Credential, request: Request, stream: StreamService, *, client_ip: str
) -> StreamingResponse:
    """The stream of an already authenticated user (the widget streams as its visitor)."""
    cursor = request.headers.get("last-event-id") or request.query_params.get("cursor")
    session = await stream.open(who, cursor=cursor, transport="sse", client_ip=client_ip)
    return StreamingResponse(
        _events(request, stream, session),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, stream: StreamService, session: StreamSession
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + stream.settings.sse_max_seconds
    try:
        hello = session.hello.model_dump_json()
        yield f"retry: {RETRY_MS}\nevent: hello\ndata: {hello}\n\n".encode()
        for envelope in session.backlog:
            yield envelope.sse_frame()
        while time.monotonic() < deadline:
            envelopes = await session.sub.wait(timeout=KEEPALIVE_SECONDS, most=WRITE_SLICE)
            if not envelopes and not session.sub.overflowed and not session.sub.closed:
                yield b": keepalive\n\n"
                continue
            for envelope in envelopes:
                yield envelope.sse_frame()
                if envelope.type == "control" and (
                    '"op":"reconnect"' in envelope.data or '"op":"revoked"' in envelope.data
                ):
                    return
            if session.sub.overflowed:
                metrics.SLOW_CONSUMERS.labels("sse").inc()
                error = ErrorEvent(code="ERR_TOO_SLOW", message="resume with your cursor")
                yield f"event: error\ndata: {error.model_dump_json()}\n\n".encode()
                return
            if session.sub.closed:
                return
    finally:
        await stream.close(session)
