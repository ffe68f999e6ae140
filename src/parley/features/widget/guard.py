"""The Widget API's defences: who the client is, where it calls from, and how often.

None of this trusts the request blindly: the client IP comes from X-Forwarded-For only when the
direct peer is a configured proxy, and the calling page's host must be in the inbox's allowlist.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from parley.core.errors import ErrorCode, Forbidden, RateLimited
from parley.core.inboxes import Inbox
from parley.metrics import WIDGET_REFUSED
from parley.settings import Settings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: list[str]) -> list[Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(conn: HTTPConnection, trusted: list[Network]) -> str:
    """The peer address, or — when the peer is a trusted proxy — the nearest untrusted hop
    in X-Forwarded-For (read right to left, since the left end is whatever the client wrote)."""
    peer = conn.client.host if conn.client else ""
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in conn.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop if _valid_ip(hop) else peer
    return hops[0] if hops and _valid_ip(hops[0]) else peer


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def page_host(conn: HTTPConnection) -> str | None:
    """The host of the calling page: `Origin`, else `Referer`; None when neither names one."""
    for header in ("origin", "referer"):
        value = conn.headers.get(header)
        if value and value != "null":
            host = urlsplit(value).hostname
            if host:
                return host
    return None


def check_origin(conn: HTTPConnection, inbox: Inbox) -> None:
    """403 unless the page's host is in the inbox's allowed domains.

    Browsers always send `Origin` (or at least `Referer`) with the widget's cross-site calls, so
    a request naming neither is refused too.
    """
    host = page_host(conn)
    if host is not None and inbox.allows_host(host):
        return
    WIDGET_REFUSED.labels("origin").inc()
    log.warning(
        "widget request refused: origin not allowed",
        extra={
            "inbox_id": inbox.id,
            "origin": conn.headers.get("origin"),
            "referer": conn.headers.get("referer"),
        },
    )
    raise Forbidden(
        "this site is not allowed to use this inbox's widget", ErrorCode.ORIGIN_NOT_ALLOWED
    )


class WidgetLimits:
    """The configured rates, each checked with `hit(name, key)`; 429 with Retry-After past one."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self._rates: dict[str, RateLimitItem] = {
            "bootstrap_ip": parse(settings.widget_bootstrap_rate_per_ip),
            "bootstrap_token": parse(settings.widget_bootstrap_rate_per_token),
            "send_session": parse(settings.widget_send_rate_per_session),
            "send_ip": parse(settings.widget_send_rate_per_ip),
            "poll_session": parse(settings.widget_poll_rate_per_session),
            "typing_session": parse(settings.widget_typing_rate_per_session),
            "upload_session": parse(settings.widget_upload_rate_per_session),
        }
        if settings.widget_challenge_after_per_ip:
            self._rates["challenge_ip"] = parse(settings.widget_challenge_after_per_ip)
        interval = settings.widget_poll_min_interval_seconds
        if interval:
            self._rates["poll_interval"] = parse(f"1/{interval} second")

    async def within(self, name: str, key: str) -> bool:
        """Count one more against `name`; False once past it (the caller decides what then)."""
        rate = self._rates.get(name)
        return rate is None or await self._limiter.hit(rate, "widget", name, key)

    async def hit(self, name: str, key: str) -> None:
        rate = self._rates.get(name)
        if rate is None:
            return
        if await self._limiter.hit(rate, "widget", name, key):
            return
        WIDGET_REFUSED.labels(name).inc()
        stats = await self._limiter.get_window_stats(rate, "widget", name, key)
        raise RateLimited(
            f"too many widget requests ({name.replace('_', ' per ')}); slow down",
            ErrorCode.RATE_LIMITED,
            retry_after=max(1.0, stats.reset_time - time.time()),
        )
