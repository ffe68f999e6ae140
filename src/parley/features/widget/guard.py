"""The Widget API's defences: who the client is, where it calls from, and how often.

None of this trusts the request blindly: the client address is `transports.client_ip` (set from
X-Forwarded-For only by a configured proxy), and the calling page's host, from a well-formed
Origin or Referer, must be in the inbox's allowlist.
"""

from __future__ import annotations

import logging

from limits.aio.storage import Storage
from starlette.requests import HTTPConnection

from parley.core.errors import ErrorCode, Forbidden
from parley.core.inboxes import Inbox
from parley.metrics import WIDGET_REFUSED
from parley.services.ratelimits import RateLimits
from parley.settings import Settings
from parley.transports import page_host

log = logging.getLogger(__name__)


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


class WidgetLimits(RateLimits):
    """The configured rates, each checked with `hit(name, key)`; 429 with Retry-After past one."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        rates = {
            "bootstrap_ip": settings.widget_bootstrap_rate_per_ip,
            "bootstrap_token": settings.widget_bootstrap_rate_per_token,
            "send_session": settings.widget_send_rate_per_session,
            "send_ip": settings.widget_send_rate_per_ip,
            "poll_session": settings.widget_poll_rate_per_session,
            "typing_session": settings.widget_typing_rate_per_session,
            "upload_session": settings.widget_upload_rate_per_session,
            "challenge_ip": settings.widget_challenge_after_per_ip,
        }
        interval = settings.widget_poll_min_interval_seconds
        if interval:
            rates["poll_interval"] = f"1/{interval} second"
        super().__init__(
            "widget", rates, storage, on_refused=lambda name: WIDGET_REFUSED.labels(name).inc()
        )

    async def hit(  # type: ignore[override]
        self, name: str, key: str, message: str = "", code: ErrorCode | None = None
    ) -> None:
        await super().hit(
            name,
            key,
            message or f"too many widget requests ({name.replace('_', ' per ')}); slow down",
        )
