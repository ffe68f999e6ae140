"""ASGI middleware: request body limits, maintenance mode, per-route latency metrics, cache
headers, access log."""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.errors import BodyTooLarge
from parley.core.errors import ErrorCode, ParleyError
from parley.metrics import HTTP_REQUEST_SECONDS
from parley.transports import bearer_token

access_log = logging.getLogger("parley.access")


class RequestBodyLimit:
    """Refuse bodies past a limit with 413 before they are read whole.

    A declared Content-Length past the limit is answered at once; a chunked body is counted as
    it streams and the read fails at the first byte past the limit. Paths matching a pattern in
    `overrides` (uploads) get their own limit.
    """

    def __init__(
        self, app: ASGIApp, *, default: int, overrides: list[tuple[str, int]] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.overrides = [(re.compile(pattern), limit) for pattern, limit in overrides or []]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_json(
                send,
                413,
                {
                    "error": {
                        "code": ErrorCode.PAYLOAD_TOO_LARGE,
                        "message": f"the request body is larger than {limit} bytes",
                    }
                },
            )
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


# Answered whatever maintenance says: how to tell it is on, and how staff sign in.
MAINTENANCE_EXEMPT = frozenset({"/v1/maintenance", "/v1/auth/login"})
# Set in the scope of a request the gate answered, so the access log and metrics name it.
ANSWERED_BY = "parley.answered_by"


class MaintenanceGate:
    """During maintenance mode, answer API requests 503 `ERR_MAINTENANCE` with Retry-After and
    the operators' message — except staff (a bearer token of any role but `member`), the
    maintenance status and sign-in. Pages, static files, health and metrics are not API paths.

    The answer carries `Access-Control-Allow-Origin: *` (and nothing else worth guarding), so the
    widget on any site can show the message instead of a generic network error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not scope["path"].startswith(("/v1/", "/api/"))
            or scope["path"] in MAINTENANCE_EXEMPT
        ):
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        maintenance = getattr(services, "maintenance", None)
        if maintenance is None or not maintenance.state.active:
            await self.app(scope, receive, send)
            return
        token = bearer_token(HTTPConnection(scope))
        if token:
            try:
                user = await services.identity.access_token(token)  # type: ignore[union-attr]
            except ParleyError:
                user = None
            if maintenance.admits(user):
                await self.app(scope, receive, send)
                return
        refusal = maintenance.refusal()
        scope[ANSWERED_BY] = "maintenance"
        await _send_json(
            send,
            503,
            {
                "error": {
                    "code": refusal.code,
                    "message": refusal.message,
                    "retry_after": refusal.retry_after,
                    "details": {"maintenance": maintenance.state.public_json()},
                }
            },
            headers=[
                (b"retry-after", str(refusal.retry_after).encode()),
                (b"access-control-allow-origin", b"*"),
            ],
        )


class RequestObserver:
    """Time each request by route template, mark API responses private, write an access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        private = scope["path"].startswith(("/v1/", "/api/"))

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if private:
                    headers = [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() != b"cache-control"
                    ]
                    headers.append((b"cache-control", b"private, no-store"))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get(ANSWERED_BY) or "unmatched"
            HTTP_REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(
    send: Send, status: int, payload: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or [(b"connection", b"close")]),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
