"""Transports: thin adapters from a wire protocol to the stream service (no storage imports).

Also what every entry point reads about the caller the same way: its bearer token, its address
and the page (origin) it calls from.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a browser sends as Origin: scheme://host[:port] — lowercase, no userinfo, no path, no
# trailing dot (an origin with one is a different origin to the browser, with its own cookies).
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*"
    r"[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$"
)


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def client_ip(conn: HTTPConnection) -> str:
    """The client's address, the one every limit and log uses.

    It is the TCP peer, unless that peer is one of PARLEY_TRUSTED_PROXIES: then the app's proxy
    middleware has already replaced it with the nearest untrusted X-Forwarded-For hop (see
    `create_app`). No other proxy header is believed, from anyone.
    """
    return conn.client.host if conn.client else ""


def parse_origin(value: str | None) -> Origin | None:
    """An Origin header as a browser writes it, or None for anything else (`null` included)."""
    if not value:
        return None
    found = _ORIGIN.match(value)
    if found is None:
        return None
    scheme = found["scheme"]
    port = int(found["port"]) if found["port"] else _DEFAULT_PORTS[scheme]
    return Origin(scheme, found["host"], port) if 0 < port < 65536 else None


def page_host(conn: HTTPConnection) -> str | None:
    """The calling page's host: from `Origin`, else `Referer`; None when neither is well formed.

    A Referer with a user name or password, or a host with a trailing dot, names no page.
    """
    origin = conn.headers.get("origin")
    if origin and origin != "null":
        parsed = parse_origin(origin)
        return parsed.host if parsed else None
    referer = conn.headers.get("referer")
    if not referer:
        return None
    try:
        parts = urlsplit(referer)
        host = parts.hostname
        if parts.scheme.lower() not in _DEFAULT_PORTS or parts.username or parts.password:
            return None
        _ = parts.port  # a malformed port raises
    except ValueError:
        return None
    return host if host and not host.endswith(".") else None


def origin_allowed(conn: HTTPConnection, allowed: list[str]) -> bool:
    """No Origin (not a browser), the server's own origin, or one configured as allowed.

    The server's own origin is its scheme (http, or https behind a trusted proxy that says so),
    host and port: a same-host `https://` page is another origin to a plain-http server.
    """
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if any(parse_origin(entry.strip().lower().rstrip("/")) == parsed for entry in allowed):
        return True
    return parsed == own_origin(conn)


def own_origin(conn: HTTPConnection) -> Origin | None:
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    host = conn.headers.get("host", "").lower()
    return parse_origin(f"{scheme}://{host}") if scheme in _DEFAULT_PORTS and host else None
