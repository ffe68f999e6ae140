"""What every session-scoped widget endpoint does first: switch, origin, CORS, client address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.requests import HTTPConnection
from starlette.responses import Response

from parley.assembly import Services
from parley.features.widget.guard import check_origin
from parley.features.widget.service import Visit
from parley.transports import client_ip

SessionQuery = Annotated[str, Query(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def ip_of(conn: HTTPConnection, services: Services) -> str:
    return client_ip(conn)


def allow_cors(conn: HTTPConnection, response: Response | None = None) -> None:
    """Let the embedding page read the answer, errors included; call once its origin passed."""
    origin = conn.headers.get("origin")
    if not origin:
        return
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    conn.state.cors_headers = headers
    if response is not None:
        response.headers.update(headers)


def cors_headers(conn: HTTPConnection) -> dict[str, str]:
    """The CORS headers `allow_cors` granted this request (none when it had no Origin)."""
    return dict(getattr(conn.state, "cors_headers", None) or {})


async def access_visit(conn: HTTPConnection, services: Services, session: str) -> Visit:
    """The session's visit after the global switch, the inbox's switch and the origin check."""
    services.widget.check_enabled()
    visit = await services.widget.access_visit(session)
    services.widget.check_enabled(visit.inbox)
    check_origin(conn, visit.inbox)
    allow_cors(conn)
    return visit
