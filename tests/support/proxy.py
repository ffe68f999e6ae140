"""A reverse proxy in front of a test server that breaks one thing on purpose.

Go/No-Go's self-test puts a deployment behind it to make exactly one check go red: refuse a
path, delay a stream's first byte, strip a cursor, slow one user's WebSocket frames, serve a
stale /metrics. Everything else (HTTP streams and WebSockets) passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.features.release.relay import HttpRelay


@dataclass
class Breakage:
    refuse: dict[str, int] = field(default_factory=dict)  # "METHOD path-regex" → status
    delay: dict[str, float] = field(default_factory=dict)  # "METHOD path-regex" → seconds
    strip_cursor_for: str = ""  # a token: its stream opens lose their cursor
    slow_ws_for: tuple[str, float] = ("", 0.0)  # a token, seconds per frame it receives
    stale_metrics: bool = False


class BreakingProxy(HttpRelay):
    def __init__(self, upstream: str, breakage: Breakage) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.breakage = breakage
        self._metrics: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope = self._strip_cursor(scope)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        line = f"{scope['method']} {scope['path']}"
        for rule, status in self.breakage.refuse.items():
            if re.fullmatch(rule, line):
                await _answer(send, status, b"refused by the test proxy")
                return
        for rule, seconds in self.breakage.delay.items():
            if re.fullmatch(rule, line):
                await asyncio.sleep(seconds)
        if self.breakage.stale_metrics and scope["path"] == "/metrics":
            if self._metrics is None:
                async with self.http.stream("GET", "/metrics") as response:
                    self._metrics = await response.aread()
            await _answer(send, 200, self._metrics, b"text/plain; version=0.0.4")
            return
        await self.forward(scope, receive, send)

    def _strip_cursor(self, scope: dict[str, Any]) -> dict[str, Any]:
        token = self.breakage.strip_cursor_for
        if not token or not scope.get("path", "").startswith("/v1/stream/"):
            return scope
        if _token(scope) != token:
            return scope
        query = scope["query_string"].decode("latin-1")
        kept = "&".join(p for p in query.split("&") if p and not p.startswith("cursor="))
        return {**scope, "query_string": kept.encode("latin-1")}

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        url = self.upstream.replace("http://", "ws://", 1) + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        token = _token(scope)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        slow_token, delay = self.breakage.slow_ws_for
        delay = delay if token and token == slow_token else 0.0
        try:
            upstream = await connect(url, additional_headers=headers, open_timeout=5)
        except Exception:
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept"})

        async def down() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for frame in upstream:
                    if delay:
                        await asyncio.sleep(delay)
                    await send({"type": "websocket.send", "text": frame})
            code = upstream.close_code or 1000
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code})

        async def up() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                with contextlib.suppress(ConnectionClosed):
                    await upstream.send(message.get("text") or message.get("bytes") or "")

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


def _token(scope: dict[str, Any]) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == b"authorization":
            return value.decode("latin-1").removeprefix("Bearer ").strip()
    return ""


async def _answer(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})
