"""The three ways to follow the event stream — WebSocket, SSE, long-poll — behind one shape.

Each `open` connects, reads the server's `hello` and returns a stream whose `receive` yields
events until the stream ends. How it ended decides what the client does next: a stream raises
`StreamEnded` with a `Next` (reconnect, fail over, resync, wait, switch to SSE, sign in), or
`OpenFailed` when the transport itself could not be reached (the client may fall back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from parley.clients.models import ParleyClientError, TransportName
from parley.clients.rest import error_from_response

WS_MAX_FRAME_BYTES = 4 * 1024 * 1024
# The server writes an SSE comment every 15 s; silence for this long means a dead connection.
SSE_READ_TIMEOUT = 45.0
POLL_TIMEOUT = 25.0
THROTTLED_DEFAULT_WAIT = 5.0


class Next(Enum):
    """What the client does after a stream ended."""

    RECONNECT = "reconnect"  # resume with the cursor, after a backoff
    FAILOVER = "failover"  # the node is draining: resume at once, on another base URL
    RESYNC = "resync"  # ERR_RESYNC_RANGE_UNAVAILABLE: load full state, drop the cursor
    WAIT = "wait"  # throttled or too many connections: wait `retry_after`, then resume
    USE_SSE = "use_sse"  # the server disabled WebSocket (sse_only mode)
    SIGN_IN = "sign_in"  # the token was refused: stop


class StreamEnded(Exception):
    """The stream is over; `next` tells the client how to go on."""

    def __init__(self, next_: Next, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{next_.value}: {detail}")
        self.next = next_
        self.detail = detail
        self.retry_after = retry_after


class OpenFailed(Exception):
    """The transport could not be opened (refused, timed out, not served)."""


@dataclass(slots=True)
class Delivery:
    """Events received together; `cursor` (long-poll) covers everything up to them."""

    events: list[dict[str, Any]]
    cursor: str | None = None


class Stream(Protocol):
    """An open event stream of one transport."""

    transport: TransportName
    hello: dict[str, Any]

    async def receive(self) -> Delivery: ...

    async def send_frame(self, frame: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where and as whom to open a stream, and from which cursor."""

    base_url: str
    token: str
    cursor: str | None
    connect_timeout: float

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def params(self) -> dict[str, str]:
        return {"cursor": self.cursor} if self.cursor is not None else {}


_CLOSE_CODES = {
    1012: Next.FAILOVER,
    4001: Next.SIGN_IN,
    4003: Next.USE_SSE,
    4008: Next.RECONNECT,
    4009: Next.RESYNC,
    4029: Next.WAIT,
}
_ERROR_CODES = {
    "ERR_RESYNC_RANGE_UNAVAILABLE": Next.RESYNC,
    "ERR_RESYNC_THROTTLED": Next.WAIT,
    "ERR_TOO_MANY_CONNECTIONS": Next.WAIT,
    "ERR_RATE_LIMITED": Next.WAIT,
    "ERR_TRANSPORT_DISABLED": Next.USE_SSE,
    "ERR_UNAUTHENTICATED": Next.SIGN_IN,
    "ERR_INVALID_CREDENTIALS": Next.SIGN_IN,
    "ERR_TOO_SLOW": Next.RECONNECT,
}


def ended_by_close(code: int | None, reason: str) -> StreamEnded:
    """Map a WebSocket close code (see docs/realtime.md) to what comes next."""
    next_ = _CLOSE_CODES.get(code or 0, Next.RECONNECT)
    retry_after = _retry_after_in(reason) if next_ is Next.WAIT else None
    return StreamEnded(next_, f"closed {code} {reason}".strip(), retry_after)


def ended_by_error(event: dict[str, Any]) -> StreamEnded | None:
    """The stream-level `error` events that end a stream; None for the others."""
    next_ = _ERROR_CODES.get(str(event.get("code")))
    if next_ is None:
        return None
    retry_after = event.get("retry_after")
    if next_ is Next.WAIT and retry_after is None:
        retry_after = THROTTLED_DEFAULT_WAIT
    return StreamEnded(next_, f"{event.get('code')}: {event.get('message', '')}", retry_after)


def ended_by_response(error: ParleyClientError) -> StreamEnded | OpenFailed:
    """A refused SSE or long-poll request: the error code decides, else the status."""
    ended = ended_by_error({"code": error.code, "message": error.message})
    if ended is not None:
        ended.retry_after = error.retry_after or ended.retry_after
        return ended
    if error.status == 401:
        return StreamEnded(Next.SIGN_IN, str(error))
    if error.status == 429:
        return StreamEnded(Next.WAIT, str(error), error.retry_after or THROTTLED_DEFAULT_WAIT)
    if error.status is not None and error.status >= 500:
        return StreamEnded(Next.RECONNECT, str(error))
    return OpenFailed(str(error))


def _retry_after_in(reason: str) -> float:
    try:
        value = json.loads(reason).get("retry_after")
        if value is not None:
            return float(value)
    except (ValueError, AttributeError):
        pass
    found = re.search(r"retry_after\D{0,3}(\d+(?:\.\d+)?)", reason)
    return float(found.group(1)) if found else THROTTLED_DEFAULT_WAIT


def _after_hello(first: dict[str, Any]) -> dict[str, Any]:
    """Check the first event of a stream: a `hello`, or an error that ends it."""
    if first.get("type") == "hello":
        return first
    if first.get("type") == "error":
        raise ended_by_error(first) or OpenFailed(f"{first.get('code')}: {first.get('message')}")
    raise OpenFailed(f"expected hello, got {first.get('type')!r}")


class WsStream:
    """`GET /v1/stream/ws`: events in, `send`/`receipt`/`typing` frames out."""

    transport: TransportName = "ws"

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.hello = hello
        self._ws = ws

    @classmethod
    async def open(cls, target: StreamTarget) -> WsStream:
        """Connect and read the hello, both within `target.connect_timeout`."""
        url = re.sub(r"^http", "ws", target.base_url) + "/v1/stream/ws"
        if target.cursor is not None:
            url += f"?cursor={target.cursor}"
        ws: ClientConnection | None = None
        stream: WsStream | None = None
        try:
            async with asyncio.timeout(target.connect_timeout):
                ws = await connect(
                    url,
                    additional_headers=target.auth,
                    compression=None,
                    max_size=WS_MAX_FRAME_BYTES,
                    open_timeout=None,
                    close_timeout=2,
                    proxy=None,
                )
                stream = cls(ws, _after_hello(json.loads(await ws.recv())))
        except InvalidStatus as exc:
            raise _refused(exc.response.status_code) from exc
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        except (OSError, TimeoutError, InvalidHandshake, ValueError) as exc:
            raise OpenFailed(f"ws: {type(exc).__name__}: {exc}") from exc
        finally:
            if ws is not None and stream is None:
                await ws.close()
        return stream

    async def receive(self) -> Delivery:
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        try:
            return Delivery([json.loads(raw)])
        except ValueError:
            return Delivery([])  # not JSON: nothing a client can act on

    async def send_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self._ws.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def close(self) -> None:
        await self._ws.close()


def _closed(exc: ConnectionClosed) -> StreamEnded:
    close = exc.rcvd
    return ended_by_close(close.code if close else None, close.reason if close else "")


def _refused(status: int) -> StreamEnded | OpenFailed:
    if status == 401:
        return StreamEnded(Next.SIGN_IN, "ws handshake refused: 401")
    if status == 429:
        return StreamEnded(Next.WAIT, "ws handshake refused: 429", THROTTLED_DEFAULT_WAIT)
    return OpenFailed(f"ws handshake refused: HTTP {status}")


@dataclass
class _SseDecoder:
    """The `text/event-stream` format: fields until a blank line, `:` lines are comments."""

    event: str = ""
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> dict[str, Any] | None:
        """Take one line; returns the event's JSON object when a blank line completes it."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None

    def _dispatch(self) -> dict[str, Any] | None:
        if not self.data:
            self.event = ""
            return None
        try:
            parsed = json.loads("\n".join(self.data))
        except ValueError:
            parsed = None
        event, self.event, self.data = self.event, "", []
        if not isinstance(parsed, dict):
            return None
        if event and "type" not in parsed:
            parsed["type"] = event
        return parsed


class SseStream:
    """`GET /v1/stream/sse`: events in; sends go over REST."""

    transport: TransportName = "sse"

    def __init__(self, response: httpx.Response, hello: dict[str, Any]) -> None:
        self.hello = hello
        self._response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self._decoder = _SseDecoder()

    @classmethod
    async def open(cls, http: httpx.AsyncClient, target: StreamTarget) -> SseStream:
        """Connect and read the hello, both within `target.connect_timeout`."""
        request = http.build_request(
            "GET",
            target.base_url + "/v1/stream/sse",
            params=target.params(),
            headers={**target.auth, "Accept": "text/event-stream"},
            timeout=httpx.Timeout(target.connect_timeout, read=SSE_READ_TIMEOUT),
        )
        response: httpx.Response | None = None
        opening: SseStream | None = None
        try:
            async with asyncio.timeout(target.connect_timeout):
                response = await http.send(request, stream=True)
                if response.status_code != 200:
                    await response.aread()
                    raise ended_by_response(error_from_response(response))
                opening = cls(response, {})
                opening.hello = _after_hello(await opening._next_event())
                return opening
        except BaseException as exc:
            if opening is not None:
                await opening.close()
            elif response is not None:
                await response.aclose()
            if isinstance(exc, httpx.HTTPError | TimeoutError):
                raise OpenFailed(f"sse: {type(exc).__name__}: {exc}") from exc
            raise

    async def receive(self) -> Delivery:
        return Delivery([await self._next_event()])

    async def _next_event(self) -> dict[str, Any]:
        decoder = self._decoder
        try:
            async for line in self._lines:
                event = decoder.feed(line)
                if event is not None:
                    return event
        except httpx.HTTPError as exc:
            raise StreamEnded(Next.RECONNECT, f"sse: {type(exc).__name__}: {exc}") from exc
        raise StreamEnded(Next.RECONNECT, "sse: the server ended the stream")

    async def send_frame(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError("SSE is receive-only; send over REST")

    async def close(self) -> None:
        aclose = getattr(self._lines, "aclose", None)
        if aclose is not None:
            # RuntimeError: the generator is still running in a cancelled reader.
            with contextlib.suppress(RuntimeError):
                await aclose()
        await self._response.aclose()


class PollStream:
    """`GET /v1/stream/poll`: one request per batch of events; sends go over REST."""

    transport: TransportName = "poll"

    def __init__(
        self,
        http: httpx.AsyncClient,
        target: StreamTarget,
        first: Delivery,
        hello: dict[str, Any],
        poll_timeout: float,
    ) -> None:
        self.hello = hello
        self._http = http
        self._target = target
        self._cursor = first.cursor
        self._backlog: Delivery | None = first
        self._poll_timeout = poll_timeout

    @classmethod
    async def open(
        cls, http: httpx.AsyncClient, target: StreamTarget, poll_timeout: float = POLL_TIMEOUT
    ) -> PollStream:
        try:
            first = await _poll(http, target, target.cursor, wait=0, timeout=target.connect_timeout)
        except StreamEnded as exc:
            if exc.next is Next.RECONNECT:
                raise OpenFailed(str(exc)) from exc
            raise
        hello = next((e for e in first.events if e.get("type") == "hello"), None)
        first.events = [e for e in first.events if e.get("type") != "hello"]
        return cls(http, target, first, hello or _poll_hello(first), poll_timeout)

    async def receive(self) -> Delivery:
        if self._backlog is not None:
            delivery, self._backlog = self._backlog, None
            return delivery
        delivery = await _poll(
            self._http,
            self._target,
            self._cursor,
            wait=round(self._poll_timeout),
            timeout=self._poll_timeout + self._target.connect_timeout + 5,
        )
        self._cursor = delivery.cursor or self._cursor
        return delivery

    async def send_frame(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError("long-poll is receive-only; send over REST")

    async def close(self) -> None:
        return None


def _poll_hello(first: Delivery) -> dict[str, Any]:
    """Long-poll answers carry no `hello`: the first answer stands in for one (mode unknown)."""
    return {
        "type": "hello",
        "cursor": first.cursor,
        "transport": "poll",
        "mode": None,
        "resumed": sum(1 for e in first.events if e.get("type") == "message"),
    }


async def _poll(
    http: httpx.AsyncClient, target: StreamTarget, cursor: str | None, *, wait: int, timeout: float
) -> Delivery:
    params: dict[str, str | int] = {"timeout": wait}
    if cursor is not None:
        params["cursor"] = cursor
    try:
        response = await http.get(
            target.base_url + "/v1/stream/poll",
            params=params,
            headers=target.auth,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise StreamEnded(Next.RECONNECT, f"poll: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        ended = ended_by_response(error_from_response(response))
        if isinstance(ended, OpenFailed):
            raise OpenFailed(f"poll: {ended}")
        raise ended
    data = response.json()
    events = [e for e in data.get("events", []) if isinstance(e, dict)]
    for event in events:
        ended_here = ended_by_error(event) if event.get("type") == "error" else None
        if ended_here is not None:
            raise ended_here
    return Delivery(events, str(data["cursor"]) if data.get("cursor") is not None else None)
