"""Stream clients for tests against real servers: a WebSocket and an SSE reader that keep every
event they receive, long-poll, and waiting for a condition with a deadline (never a sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.waiting import eventually

T = TypeVar("T")


class StreamReader:
    """What one stream connection received: every event, in order."""

    transport = "?"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def hello(self) -> dict[str, Any]:
        assert self.events and self.events[0]["type"] == "hello", self.events[:1]
        return self.events[0]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message"]

    @property
    def client_msg_ids(self) -> list[str]:
        return [m["message"]["client_msg_id"] for m in self.messages]

    @property
    def cursor(self) -> str:
        """The last position received: what a client passes back to resume."""
        positions = [int(self.hello["cursor"]), *(m["pos"] for m in self.messages)]
        return str(max(positions))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for_messages(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        await eventually(
            lambda: len(self.messages) >= count,
            timeout=timeout,
            what=f"{count} messages over {self.transport} (have {len(self.messages)})",
        )
        return self.messages

    async def wait_for_event(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        return await eventually(
            lambda: next((e for e in self.events if matches(e)), None),
            timeout=timeout,
            what=f"an event over {self.transport}",
        )

    async def wait_ended(self, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            await self.ended.wait()

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class WsReader(StreamReader):
    """A WebSocket stream client: reads in the background, sends frames on request."""

    transport = "ws"

    def __init__(self, base_url: str, token: str, cursor: str | None = None) -> None:
        super().__init__()
        self.url = base_url.replace("http://", "ws://", 1) + "/v1/stream/ws"
        if cursor is not None:
            self.url += f"?cursor={cursor}"
        self.token = token
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None

    async def open(self) -> WsReader:
        self._ws = await connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=10
        )
        self._task = asyncio.create_task(self._read(self._ws))
        return self

    async def opened(self, timeout: float = 15) -> WsReader:
        """Open, and wait for the first frame (hello, or the error of a refusal)."""
        await self.open()
        await eventually(lambda: self.events or self.ended.is_set(), timeout=timeout)
        return self

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self.events.append(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.ended.set()

    async def send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps(frame))

    def acks(self) -> dict[str, dict[str, Any]]:
        return {a["ref"]: a for a in self.of_type("ack")}

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        await self._stop_task()


class SseReader(StreamReader):
    """A Server-Sent Events client; `ids` are the `id:` lines (stream positions)."""

    transport = "sse"

    def __init__(self, base_url: str, token: str, cursor: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        self.token = token
        self.cursor_in = cursor
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self._opened = asyncio.Event()

    async def open(self, timeout: float = 15) -> SseReader:
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            await self._opened.wait()
        return self

    async def _read(self) -> None:
        params = {"cursor": self.cursor_in} if self.cursor_in is not None else {}
        headers = {"Authorization": f"Bearer {self.token}"}
        fields: dict[str, str] = {}
        try:
            async with (
                httpx.AsyncClient(base_url=self.base_url, timeout=None) as client,
                client.stream("GET", "/v1/stream/sse", params=params, headers=headers) as response,
            ):
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if line == "":
                        self._take(fields)
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, AssertionError) as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._opened.set()

    def _take(self, fields: dict[str, str]) -> None:
        if "data" not in fields:
            return
        event = json.loads(fields["data"])
        assert event["type"] == fields.get("event"), fields
        if "id" in fields:
            self.ids.append(fields["id"])
        self.events.append(event)
        self._opened.set()

    async def close(self) -> None:
        await self._stop_task()


async def poll_messages(
    base_url: str, token: str, count: int, *, cursor: str | None = None, timeout: float = 15
) -> list[dict[str, Any]]:
    """Long-poll from `cursor` (or from now) until `count` message events arrived."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        while sum(e["type"] == "message" for e in events) < count:
            assert time.monotonic() < deadline, f"long-poll got {len(events)} events, not {count}"
            params: dict[str, Any] = {"timeout": 2}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get("/v1/stream/poll", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            events += body["events"]
            cursor = body["cursor"]
    return [e for e in events if e["type"] == "message"]


def assert_in_order_once(messages: list[dict[str, Any]], *, after_pos: int | None = None) -> None:
    """Message events: positions consecutive (no gap, no repeat), seqs consecutive per
    conversation, and — given the cursor they followed — starting right after it."""
    positions = [m["pos"] for m in messages]
    assert positions == list(range(positions[0], positions[0] + len(positions))), positions
    if after_pos is not None:
        assert positions[0] == after_pos + 1, (after_pos, positions[:3])
    by_conversation: dict[int, list[int]] = {}
    for m in messages:
        by_conversation.setdefault(m["conversation_id"], []).append(m["seq"])
        assert m["seq"] == m["message"]["seq"]
    for seqs in by_conversation.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
