"""Stream clients that stop reading: a WebSocket and an SSE connection whose bytes are read
only when the test says so (a frozen tab, a stalled phone). The kernel's receive buffer stays at
its initial size (it grows only as an application reads), so the server soon has to wait.

`websockets`' own client keeps reading into memory whatever its queue size, so the WebSocket
here is a raw socket driven by the library's sans-I/O protocol. (A tiny SO_RCVBUF would be a
different test: below one segment, TCP's silly-window avoidance stalls the catch-up itself.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


class StalledWebSocket:
    """A WebSocket stream client that reads only inside `read_until_closed()`."""

    def __init__(self, base_url: str, token: str, cursor: str | None = None) -> None:
        url = base_url.replace("http://", "ws://", 1) + "/v1/stream/ws"
        self.url = url + (f"?cursor={cursor}" if cursor is not None else "")
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._protocol = ClientProtocol(parse_uri(self.url), max_size=None)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message"]

    async def open(self) -> StalledWebSocket:
        """Connect and read up to the hello; nothing more is read until asked."""
        parts = urlsplit(self.url)
        self._reader, self._writer = await asyncio.open_connection(
            parts.hostname, parts.port, limit=1024
        )
        request = self._protocol.connect()
        request.headers["Authorization"] = f"Bearer {self.token}"
        self._protocol.send_request(request)
        await self._flush()
        await self._read(until=lambda: bool(self.events), timeout=10)
        return self

    async def read_until_closed(self, timeout: float = 30) -> None:
        """Read everything the server sent, up to its close (or the connection's end)."""
        await self._read(until=lambda: self.close_code is not None, timeout=timeout)

    async def _read(self, until: Any, timeout: float) -> None:
        assert self._reader is not None
        async with asyncio.timeout(timeout):
            while not until():
                try:
                    data = await self._reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    self._protocol.receive_eof()
                    self.close_code = self._protocol.close_code or 1006
                    return
                self._protocol.receive_data(data)
                for event in self._protocol.events_received():
                    if isinstance(event, Response):
                        assert event.status_code == 101, event
                    elif event.opcode is Opcode.TEXT:
                        self.events.append(json.loads(event.data))
                    elif event.opcode is Opcode.CLOSE:
                        self.close_code = self._protocol.close_code
                await self._flush()

    async def _flush(self) -> None:
        assert self._writer is not None
        data = b"".join(self._protocol.data_to_send())
        if data:
            with contextlib.suppress(ConnectionError, OSError):
                self._writer.write(data)
                await self._writer.drain()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()


class StalledSse:
    """An SSE stream client that reads only inside `read_until_ended()`."""

    def __init__(self, base_url: str, token: str, cursor: str | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=None)
        self._params = {"cursor": cursor} if cursor is not None else {}
        self._headers = {"Authorization": f"Bearer {token}"}
        self.events: list[dict[str, Any]] = []
        self.ended = False
        self._stream: contextlib.AbstractAsyncContextManager[httpx.Response] | None = None
        self._lines: Any = None
        self._fields: dict[str, str] = {}

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message"]

    async def open(self) -> StalledSse:
        self._stream = self._client.stream(
            "GET", "/v1/stream/sse", params=self._params, headers=self._headers
        )
        response = await self._stream.__aenter__()
        assert response.status_code == 200
        self._lines = response.aiter_lines()
        await self._read(until=lambda: bool(self.events), timeout=10)
        return self

    async def read_until_ended(self, timeout: float = 30) -> None:
        await self._read(until=lambda: self.ended, timeout=timeout)

    async def _read(self, until: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not until():
                try:
                    line = await anext(self._lines)
                except (StopAsyncIteration, httpx.HTTPError):
                    self.ended = True
                    return
                if line == "":
                    if "data" in self._fields:
                        self.events.append(json.loads(self._fields["data"]))
                    self._fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    self._fields[name] = value.removeprefix(" ")

    async def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.__aexit__(None, None, None)
        await self._client.aclose()
