"""A loopback HTTP relay that refuses WebSocket upgrades, as a proxy that blocks them would.

Go/No-Go's fallback check puts the real client behind it: the client must find its WebSocket
refused and be streaming over SSE (or long-poll) within 3 s (seed 000). Every other request is
forwarded to the deployment as it is, responses streamed back (SSE and long-polls included).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

# Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
WS_REFUSED = 1008


class HttpRelay:
    """ASGI app: HTTP to `upstream`, streamed both ways; WebSocket refused (403)."""

    def __init__(self, upstream: str, *, verify: Any = True) -> None:
        self.http = httpx.AsyncClient(
            base_url=upstream, timeout=httpx.Timeout(30, read=None), verify=verify
        )
        self.refused = 0

    async def aclose(self) -> None:
        """Close the connections to the deployment (`serving` does, once the relay stops)."""
        await self.http.aclose()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            self.refused += 1
            await send({"type": "websocket.close", "code": WS_REFUSED})
        elif scope["type"] == "http":
            await self.forward(scope, receive, send)

    async def forward(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        request = self.http.build_request(
            scope["method"],
            scope["path"],
            params=scope["query_string"].decode("latin-1"),
            headers=headers,
            content=await _body(receive),
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            await _answer(send, 502, f"relay: {type(exc).__name__}".encode())
            return
        # The client may hang up mid-stream (an SSE reader closing): stop reading upstream then.
        watch = asyncio.create_task(_disconnected(receive))
        watch.add_done_callback(lambda _: asyncio.ensure_future(response.aclose()))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in response.headers.multi_items()
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
                    ],
                }
            )
            with contextlib.suppress(httpx.HTTPError, OSError):
                async for chunk in response.aiter_bytes():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watch.cancel()
            await response.aclose()


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _body(receive: Any) -> bytes:
    """The whole request body (the probes send a few kilobytes at most)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port for the duration of the block; yields its URL.
    A relay's connections to its deployment are closed when it stops."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait([task], timeout=3)
        if not done:  # a stream still open: cut it, the run is over
            server.force_exit = True
            await asyncio.wait([task], timeout=5)
        sock.close()
        if isinstance(app, HttpRelay):
            await app.aclose()
