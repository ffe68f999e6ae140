"""A scripted stand-in for a Parley node, served through `httpx.MockTransport` (no sockets).

Tests drive the event stream by hand (`stream.send(...)`, `stream.end()`) to show what the
Python client does with duplicates, gaps, resync errors and refusals a correct server never
produces on demand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeSse:
    """One open SSE connection; what the test sends is what the client reads."""

    host: str
    cursor: str | None
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def send(self, event: dict[str, Any]) -> None:
        data = json.dumps(event)
        self._chunks.put_nowait(f"event: {event['type']}\ndata: {data}\n\n".encode())

    def end(self) -> None:
        self._chunks.put_nowait(None)

    async def body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk


@dataclass
class FakeParley:
    """Conversations, stored messages and scripted stream answers of a fake deployment."""

    head: int = 0
    stored: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    streams: list[FakeSse] = field(default_factory=list)
    # The next SSE requests get these answers instead of a stream.
    sse_refusals: list[httpx.Response] = field(default_factory=list)
    # The next message POSTs get these answers before one is stored.
    send_failures: list[httpx.Response] = field(default_factory=list)
    serve_sse: bool = True
    sse_says_hello: bool = True
    reports: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def store(self, conversation_id: int, body: str, client_msg_id: str = "") -> dict[str, Any]:
        """A message as the server stores it (seq and pos assigned)."""
        timeline = self.stored.setdefault(conversation_id, [])
        self.head += 1
        message = {
            "id": self.head,
            "conversation_id": conversation_id,
            "seq": len(timeline) + 1,
            "pos": self.head,
            "sender_id": 2,
            "client_msg_id": client_msg_id or f"c{self.head}",
            "body": body,
            "attachments": [],
            "metadata": {},
            "created_at": "2026-01-01T00:00:00Z",
        }
        timeline.append(message)
        return message

    @staticmethod
    def event(message: dict[str, Any]) -> dict[str, Any]:
        """The stream's `message` event for a stored message."""
        return {
            "type": "message",
            "pos": message["pos"],
            "conversation_id": message["conversation_id"],
            "seq": message["seq"],
            "message": message,
        }

    async def next_stream(self, count: int, timeout: float = 5.0) -> FakeSse:
        """Wait until the client has opened `count` SSE streams; return the last."""
        async with asyncio.timeout(timeout):
            while len(self.streams) < count:
                await asyncio.sleep(0.01)
        return self.streams[count - 1]

    def close(self) -> None:
        for stream in self.streams:
            stream.end()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if path == "/v1/me":
            return httpx.Response(200, json={"id": 1, "name": "me"})
        if path == "/v1/stream/sse":
            return self._open_sse(request)
        if path == "/v1/stream/poll":
            await asyncio.sleep(min(float(request.url.params.get("timeout", "0")), 0.05))
            return httpx.Response(200, json={"events": [], "cursor": str(self.head)})
        if path == "/v1/stream/report":
            self.reports.append(json.loads(request.content))
            return httpx.Response(204)
        if path == "/v1/conversations":
            return httpx.Response(200, json={"conversations": self._summaries()})
        if path.endswith("/messages"):
            conversation_id = int(path.split("/")[3])
            if method == "POST":
                return self._send(conversation_id, json.loads(request.content))
            return self._page(conversation_id, request.url.params)
        return refusal(404, "ERR_NOT_FOUND")

    def _open_sse(self, request: httpx.Request) -> httpx.Response:
        if self.sse_refusals:
            return self.sse_refusals.pop(0)
        if not self.serve_sse:
            return refusal(404, "ERR_NOT_FOUND")
        stream = FakeSse(host=request.url.host, cursor=request.url.params.get("cursor"))
        self.streams.append(stream)
        if self.sse_says_hello:
            stream.send(
                {
                    "type": "hello",
                    "cursor": str(self.head),
                    "transport": "sse",
                    "mode": "auto",
                    "resumed": 0,
                }
            )
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=stream.body()
        )

    def _send(self, conversation_id: int, body: dict[str, Any]) -> httpx.Response:
        if self.send_failures:
            return self.send_failures.pop(0)
        for message in self.stored.get(conversation_id, []):
            if message["client_msg_id"] == body["client_msg_id"]:
                return httpx.Response(200, json=message)
        return httpx.Response(
            201, json=self.store(conversation_id, body["body"], body["client_msg_id"])
        )

    def _page(self, conversation_id: int, params: httpx.QueryParams) -> httpx.Response:
        found = self.stored.get(conversation_id, [])
        limit = int(params.get("limit", "50"))
        if "after" in params:
            page = [m for m in found if m["seq"] > int(params["after"])][:limit]
        elif "before" in params:
            page = [m for m in found if m["seq"] < int(params["before"])][-limit:]
        else:
            page = found[:limit]
        return httpx.Response(200, json={"messages": page, "last_seq": len(found)})

    def _summaries(self) -> list[dict[str, Any]]:
        return [
            {"id": cid, "last_seq": len(found), "read_seq": 0, "delivered_seq": 0}
            for cid, found in self.stored.items()
        ]


def refusal(status: int, code: str, retry_after: float | None = None) -> httpx.Response:
    """An error answer for `sse_refusals` / `send_failures`."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)
