"""Transports: thin adapters from a wire protocol to the stream service (no storage imports)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def origin_allowed(conn: HTTPConnection, allowed: list[str]) -> bool:
    """No Origin (not a browser) or the server's own origin, or one configured as allowed."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    if origin in allowed:
        return True
    host = conn.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
