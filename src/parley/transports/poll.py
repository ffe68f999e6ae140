"""Long-poll transport: events after a cursor, waiting up to `timeout` seconds for the first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from parley.core.models import User
from parley.services.identity import Credential
from parley.services.stream import StreamService
from parley.transports import bearer_token, client_ip

MAX_TIMEOUT_SECONDS = 30.0


async def poll(request: Request, stream: StreamService, timeout: float) -> Response:
    credential = await stream.authenticate(
        token=bearer_token(request), ticket=request.query_params.get("ticket")
    )
    return await poll_as(
        credential,
        stream,
        cursor=request.query_params.get("cursor"),
        timeout=timeout,
        client_ip=client_ip(request),
    )


async def poll_as(
    who: User | Credential,
    stream: StreamService,
    *,
    cursor: str | None,
    timeout: float,
    client_ip: str,
) -> Response:
    """One long poll for an already authenticated user (the widget polls as its visitor).

    A waiting poll is an open stream: it counts against the per-user and per-address caps.
    """
    session = await stream.open(who, cursor=cursor, transport="poll", client_ip=client_ip)
    try:
        envelopes = list(session.backlog)
        if not envelopes and cursor:
            envelopes = await session.sub.wait(timeout=min(timeout, MAX_TIMEOUT_SECONDS))
        else:
            envelopes += await session.sub.wait(timeout=0)
        next_cursor = session.cursor
    finally:
        await stream.close(session)
    if not cursor:
        next_cursor = int(session.hello.cursor)
    events = ",".join(e.data for e in envelopes if e.type != "pong")
    body = f'{{"events":[{events}],"cursor":"{next_cursor}"}}'
    return Response(body, media_type="application/json")
