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
        holder=f"token:{credential.token_id}",
    )


async def poll_as(
    who: User | Credential,
    stream: StreamService,
    *,
    cursor: str | None,
    timeout: float,
    client_ip: str,
    holder: str | None = None,
) -> Response:
    """One long poll for an already authenticated user (the widget polls as its visitor).

    A waiting poll is an open stream: it counts against the per-user and per-address caps.
    `holder` names the credential (a token id, a widget session id — not a secret): the next
    poll with the same holder and the returned cursor continues on this poll's subscription.
    """
    session = await stream.open(
        who, cursor=cursor, transport="poll", client_ip=client_ip, holder=holder
    )
    try:
        envelopes = list(session.backlog)
        if not envelopes and cursor:
            envelopes = await session.sub.wait(timeout=min(timeout, MAX_TIMEOUT_SECONDS))
        else:
            envelopes += await session.sub.wait(timeout=0)
        next_cursor = session.cursor
    except BaseException:
        await stream.close(session)
        raise
    if not cursor:
        next_cursor = int(session.hello.cursor)
    await stream.finish_poll(session, holder=holder, cursor=next_cursor)
    events = ",".join(e.data for e in envelopes if e.type != "pong")
    body = f'{{"events":[{events}],"cursor":"{next_cursor}"}}'
    return Response(body, media_type="application/json")
