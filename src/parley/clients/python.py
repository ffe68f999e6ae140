"""`ParleyClient`: the async Python client of the real-time API (docs/realtime.md).

It behaves like the browser client (static/client.js): one event stream over WebSocket, SSE or
long-poll with fallback inside a 3 s budget, resume from its cursor after any drop, sends
retried with the same `client_msg_id` until acked, duplicate-free seq-ordered timelines with
gaps filled over REST, read marks that never move back, and the client-side P0 counters
reported to the server.

    async with ParleyClient("http://127.0.0.1:8000", token) as client:
        ack = await client.send(conversation_id, "hello")
        async for event in client.events():
            ...

One background task follows the stream (and reconnects); another ticks the write-receipt
watchdog and posts reports. The happy path makes no REST call per received event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any

import httpx

from parley.clients.actions import TimelineActions
from parley.clients.catchup import NEWEST_PAGE, fill_gap, load_newest_page
from parley.clients.invariants import Invariants, TransportStats
from parley.clients.listeners import EventCallback, EventStream, Listeners
from parley.clients.mirror import Mirror
from parley.clients.models import (
    Ack,
    ClientClosed,
    Event,
    Message,
    MessageSource,
    ParleyClientError,
    Receipt,
    TransportName,
    Unauthenticated,
)
from parley.clients.outbox import Outbox, PendingSend
from parley.clients.rest import RestApi
from parley.clients.routing import Route, backoff_delay
from parley.clients.streams import (
    Next,
    OpenFailed,
    PollStream,
    SseStream,
    Stream,
    StreamEnded,
    StreamTarget,
    WsStream,
    ended_by_error,
)

log = logging.getLogger("parley.client")

WATCHDOG_TICK = 1.0
CLOSE_REPORT_TIMEOUT = 3.0
# A connection that lasted this long was healthy: the next reconnect starts a fresh backoff.
STABLE_AFTER = 5.0
TYPING_EVERY = 3.0
READ_RECEIPT_TRIES = 3


class ConnectionState(Enum):
    """Where the client's stream is; `_set_state` refuses any other move."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"  # stopped for good (token refused); calls raise the reason
    CLOSED = "closed"


_ENDS = {ConnectionState.FAILED, ConnectionState.CLOSED}
_MOVES = {
    ConnectionState.IDLE: {ConnectionState.CONNECTING, ConnectionState.CLOSED},
    ConnectionState.CONNECTING: {ConnectionState.CONNECTED, *_ENDS},
    ConnectionState.CONNECTED: {ConnectionState.RECONNECTING, *_ENDS},
    ConnectionState.RECONNECTING: {ConnectionState.CONNECTED, *_ENDS},
    ConnectionState.FAILED: {ConnectionState.CLOSED},
    ConnectionState.CLOSED: set(),
}


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of the client: where it is connected and what it counted, per transport."""

    state: str
    transport: TransportName
    base_url: str
    cursor: str | None
    reconnects: int
    fallbacks: int
    forced_resyncs: int
    gap_fills: int
    pending_sends: int
    awaiting_receipt: int
    by_transport: dict[TransportName, TransportStats] = field(default_factory=dict)

    def total(self, counter: str) -> int:
        """One counter (e.g. `timeline_duplicate_detected`) summed over transports."""
        return sum(stats.counters.get(counter, 0) for stats in self.by_transport.values())


class _Lost(Exception):
    """The WebSocket a send waited on is gone; the send goes again."""


class ParleyClient(TimelineActions):
    """An async client of one Parley deployment, signed in with a bearer token.

    `base_url` may be a list (or pass `base_urls`): the client moves to the next URL when a
    node drains (close 1012, `control reconnect`) or cannot be reached.
    `transport` is the preferred one; with `fallback`, transports after it in ws → sse → poll
    are tried when it does not say hello, all within `connect_timeout` seconds. A server that
    disables WebSocket (close 4003, `control transport sse_only`) moves the client to SSE
    either way. `cursor` resumes from a position saved earlier (`client.cursor`).
    `load_conversations` lists the conversations after connecting, so a timeline knows where
    it starts (a hole after that is a gap) and the read marks are known.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        token: str,
        *,
        transport: TransportName = "ws",
        fallback: bool = True,
        base_urls: Sequence[str] | None = None,
        cursor: str | None = None,
        connect_timeout: float = 3.0,
        send_timeout: float = 8.0,
        poll_timeout: float = 25.0,
        receipt_timeout: float = 10.0,
        report_interval: float = 10.0,
        reconnect_delay: float = 0.3,
        reconnect_delay_max: float = 10.0,
        load_conversations: bool = True,
        on_event: EventCallback | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._route = Route(
            _url_list(base_url, base_urls),
            transport,
            fallback=fallback,
            delay=reconnect_delay,
            delay_max=reconnect_delay_max,
        )
        self._token = token
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._poll_timeout = poll_timeout
        self._report_interval = report_interval
        self._load_conversations = load_conversations
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=connect_timeout))
        self._rest = RestApi(self._http, token, lambda: self._route.base_url)

        self._state = ConnectionState.IDLE
        self._cursor = cursor
        self._stream: Stream | None = None
        self._first_hello = asyncio.Event()
        self._failure: ParleyClientError | None = None
        self._needs_full_state = False
        self._runner: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None

        self._invariants = Invariants(receipt_timeout=receipt_timeout)
        self._mirror = Mirror(self._invariants)
        self._outbox = Outbox()
        self._typing_sent: dict[int, float] = {}
        self._listeners = Listeners()
        if on_event is not None:
            self._listeners.add_callback(on_event, frozenset())
        self._forced_resyncs = 0
        self._gap_fills = 0
        self.user: dict[str, Any] | None = None  # GET /v1/me, once connected

    # ---- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> ParleyClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, timeout: float | None = 20.0) -> None:
        """Start following the stream; returns on the first `hello` (raises if none comes)."""
        self._check_usable()
        if self._runner is None:
            self._set_state(ConnectionState.CONNECTING)
            self._runner = asyncio.create_task(self._run(), name="parley-client-stream")
            self._watchdog = asyncio.create_task(self._watch(), name="parley-client-reports")
        hello = asyncio.ensure_future(self._first_hello.wait())
        try:
            await asyncio.wait(
                {hello, self._runner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hello.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hello
        if self._first_hello.is_set():
            return
        failure = self._failure or ParleyClientError(
            "ERR_CONNECT_TIMEOUT", f"no transport connected to {self.base_url} in {timeout}s"
        )
        await self.close()
        raise failure

    async def close(self) -> None:
        """Stop the stream, post the last report and release every connection.

        Not from inside an event callback (callbacks run on the stream's task, which `close`
        waits for): schedule it with `asyncio.create_task(client.close())` there.
        """
        if self._state is ConnectionState.CLOSED:
            return
        self._set_state(ConnectionState.CLOSED)
        for task in (self._runner, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._outbox.fail_waiting(ClientClosed())
        await self._post_reports(timeout=CLOSE_REPORT_TIMEOUT)
        self._listeners.end()
        if self._own_http:
            await self._http.aclose()

    async def reconnect(self) -> None:
        """Drop the current connection; the client resumes from its cursor (e.g. network change)."""
        if self._pump_task is not None and not self._pump_task.done():
            self._pump_task.cancel()

    # ---- what a caller reads ---------------------------------------------------------

    @property
    def cursor(self) -> str | None:
        """The stream position the client resumes from (opaque; save it to resume later)."""
        return self._cursor

    @property
    def transport(self) -> TransportName:
        """The transport in use (or last used, or to be tried first)."""
        return self._route.transport

    @property
    def base_url(self) -> str:
        return self._route.base_url

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def timeline(self, conversation_id: int) -> list[Message]:
        """The messages held for a conversation, by seq, each once."""
        return self._mirror.held(conversation_id)

    def receipts(self, conversation_id: int) -> dict[int, Receipt]:
        """The members' cursors in a conversation: the maximum the client has seen."""
        return self._mirror.receipts(conversation_id)

    def read_mark(self, conversation_id: int) -> int:
        """This user's read mark in a conversation, as far as this client knows."""
        return self._mirror.read_mark(conversation_id)

    def conversations(self) -> list[dict[str, Any]]:
        """The conversation list as last loaded (`GET /v1/conversations`)."""
        return list(self._mirror.conversations.values())

    def events(self) -> EventStream:
        """Every event from now on: `async for event in client.events(): ...`."""
        return EventStream(self._listeners)

    def on(self, callback: EventCallback, *types: str) -> Callable[[], None]:
        """Call `callback` (sync or async) for each event (of `types`, if given).

        Returns a function that removes it. Callbacks run on the stream's task: a slow one
        delays the events after it.
        """
        return self._listeners.add_callback(callback, frozenset(types))

    def stats(self) -> ClientStats:
        return ClientStats(
            state=self._state.value,
            transport=self.transport,
            base_url=self.base_url,
            cursor=self._cursor,
            reconnects=self._route.reconnects,
            fallbacks=self._route.fallbacks,
            forced_resyncs=self._forced_resyncs,
            gap_fills=self._gap_fills,
            pending_sends=len(self._outbox),
            awaiting_receipt=self._invariants.awaiting_receipt,
            by_transport=self._invariants.snapshot(),
        )

    # ---- what a caller does ----------------------------------------------------------

    async def send(
        self,
        conversation_id: int,
        body: str = "",
        *,
        attachments: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        client_msg_id: str | None = None,
        reply_to_id: int | None = None,
        thread_root_id: int | None = None,
    ) -> Ack:
        """Send a message; returns once the server has stored it.

        `reply_to_id` quotes a message; `thread_root_id` posts in that message's thread.

        Over the WebSocket when it is open, else over REST (also while reconnecting). Retried
        with the same `client_msg_id` (pass one to retry a send from before a restart) until
        acked, so it is stored once; raises only on an error retrying cannot fix, or on close.
        Wrap in `asyncio.timeout` to bound the wait.
        """
        self._check_usable()
        pending = PendingSend(
            conversation_id=conversation_id,
            client_msg_id=client_msg_id or str(uuid.uuid4()),
            body=body,
            attachments=list(attachments or ()),
            metadata=dict(metadata or {}),
            reply_to_id=reply_to_id,
            thread_root_id=thread_root_id,
        )
        self._outbox.add(pending)
        try:
            return await self._deliver(pending)
        finally:
            self._outbox.remove(pending)

    async def mark_read(self, conversation_id: int, seq: int) -> bool:
        """Mark the conversation read (and delivered) up to `seq`; True if a receipt went out.

        The mark never moves back: a seq at or below it is a no-op, since an app may mark
        whatever is on screen (the P0 `read_rollback_detected` counts receipts that move
        backwards on the stream). Over the WebSocket when open, else REST (retried).
        """
        receipt = self._mirror.claim_read(conversation_id, seq)
        if receipt is None:
            return False
        frame = {"type": "receipt", "conversation_id": conversation_id, **receipt}
        for attempt in range(1, READ_RECEIPT_TRIES + 1):
            if not self._mirror.still_latest_read(conversation_id, seq):
                return False  # a later mark_read supersedes this one
            if await self._send_frame(frame):
                return True
            try:
                await self._rest.post_receipt(conversation_id, **receipt)
                return True
            except ParleyClientError as exc:
                if not exc.transient or attempt == READ_RECEIPT_TRIES:
                    raise
                await asyncio.sleep(backoff_delay(attempt, self._route.delay, 2.0))
        return False

    async def typing(self, conversation_id: int) -> None:
        """Tell the conversation this user is typing (at most once per 3 s; shown for 5 s)."""
        now = time.monotonic()
        if now - self._typing_sent.get(conversation_id, -TYPING_EVERY) < TYPING_EVERY:
            return
        self._typing_sent[conversation_id] = now
        if not await self._send_frame({"type": "typing", "conversation_id": conversation_id}):
            with contextlib.suppress(ParleyClientError):
                await self._rest.post_typing(conversation_id)

    async def load_history(self, conversation_id: int, limit: int = NEWEST_PAGE) -> list[Message]:
        """Load a conversation's newest page over REST into its timeline; returns the timeline."""
        timeline = self._mirror.timeline(conversation_id)
        added = await load_newest_page(self._rest, timeline, limit)
        await self._emit_messages(added, "history", self.transport)
        return timeline.messages()

    async def _send_frame(self, frame: dict[str, Any]) -> bool:
        """Send a frame if the WebSocket is open; False if it is not (use REST then)."""
        stream = self._stream
        if stream is None or stream.transport != "ws":
            return False
        try:
            await stream.send_frame(frame)
        except StreamEnded:
            return False
        return True

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._state is ConnectionState.CLOSED:
            raise ClientClosed()

    # ---- sending ---------------------------------------------------------------------

    async def _deliver(self, pending: PendingSend) -> Ack:
        attempt = 0
        while True:
            self._check_usable()
            stream = self._stream
            try:
                if stream is not None and stream.transport == "ws":
                    return await self._send_ws(stream, pending)
                return await self._send_rest(pending)
            except (_Lost, ParleyClientError) as exc:
                if isinstance(exc, ParleyClientError) and not exc.transient:
                    raise
                retry_after = exc.retry_after if isinstance(exc, ParleyClientError) else None
                attempt += 1
                delay = retry_after or backoff_delay(attempt, self._route.delay, 2.0)
                log.debug("send %s: %r; again in %.2fs", pending.client_msg_id, exc, delay)
                await asyncio.sleep(min(delay, self._route.delay_max))

    async def _send_ws(self, stream: Stream, pending: PendingSend) -> Ack:
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        pending.waiter = waiter
        try:
            try:
                await stream.send_frame(pending.frame())
            except StreamEnded as exc:
                raise _Lost() from exc
            async with asyncio.timeout(self._send_timeout):
                return await waiter
        except TimeoutError:
            raise ParleyClientError("ERR_TIMEOUT", f"no ack in {self._send_timeout}s") from None
        finally:
            pending.waiter = None

    async def _send_rest(self, pending: PendingSend) -> Ack:
        message, duplicate = await self._rest.send_message(
            pending.conversation_id, pending.fields()
        )
        ack = Ack(
            conversation_id=message.conversation_id,
            client_msg_id=pending.client_msg_id,
            id=message.id,
            seq=message.seq,
            duplicate=duplicate,
            transport=self.transport,
            pos=message.pos,
        )
        if self._mirror.take_ack(ack, message):
            await self._emit_messages([message], "ack", ack.transport)
        return ack

    # ---- following the stream --------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._follow_until_stopped()
        except Exception as exc:
            log.exception("the client's stream loop failed; the client stops")
            self._stop_with(ParleyClientError("ERR_CLIENT_INTERNAL", repr(exc)))

    async def _follow_until_stopped(self) -> None:
        if not await self._who_am_i():
            return
        failures = 0
        while True:
            try:
                stream = await self._connect_round()
            except OpenFailed as exc:
                failures += 1
                log.info("no transport reached %s: %s", self.base_url, exc)
                await asyncio.sleep(self._route.after_failed_round(failures))
                continue
            except StreamEnded as refused:
                failures += 1
                if not await self._after_end(refused, failures):
                    return
                continue
            started = time.monotonic()
            ended = await self._follow(stream)
            # A stream that ends at once counts as a failure, so the backoff grows.
            failures = 1 if time.monotonic() - started > STABLE_AFTER else failures + 1
            if not await self._after_end(ended, failures):
                return

    async def _who_am_i(self) -> bool:
        """Learn the signed-in user; False (the client stops) if the token is refused."""
        try:
            self.user = await self._rest.me()
        except Unauthenticated as exc:
            self._stop_with(exc)
            return False
        except ParleyClientError as exc:
            log.info("who am I: %s (asked again once connected)", exc)
        else:
            self._mirror.user_id = int(self.user["id"])
        return True

    async def _connect_round(self) -> Stream:
        """Try the round's transports in turn until one says hello, within the budget."""
        names = self._route.round()
        deadline = time.monotonic() + self._connect_timeout
        failures: list[str] = []
        for index, name in enumerate(names):
            still_to_try = len(names) - index - 1
            budget_left = deadline - time.monotonic()
            timeout = self._route.attempt_timeout(budget_left, still_to_try, self._connect_timeout)
            try:
                return await self._open(name, timeout)
            except OpenFailed as exc:
                failures.append(f"{name}: {exc}")
            except StreamEnded as ended:
                if ended.next is not Next.USE_SSE:
                    raise
                self._route.sse_only = True
                failures.append(f"{name}: {ended}")
        raise OpenFailed("; ".join(failures))

    async def _open(self, transport: TransportName, timeout: float) -> Stream:
        target = StreamTarget(self.base_url, self._token, self._cursor, timeout)
        if transport == "ws":
            return await WsStream.open(target)
        if transport == "sse":
            return await SseStream.open(self._http, target)
        return await PollStream.open(self._http, target, self._poll_timeout)

    async def _follow(self, stream: Stream) -> StreamEnded:
        """Serve one open stream until it ends; returns how it ended."""
        pump = asyncio.create_task(self._pump(stream), name="parley-client-pump")
        self._pump_task = pump
        try:
            await asyncio.wait([pump])
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.wait([pump])
            self._stream = None
            self._pump_task = None
            self._outbox.fail_waiting(_Lost())
            with contextlib.suppress(Exception):
                await stream.close()
        if pump.cancelled():
            return StreamEnded(Next.RECONNECT, "dropped by the client")
        error = pump.exception()
        if isinstance(error, StreamEnded):
            return error
        if isinstance(error, Unauthenticated):
            return StreamEnded(Next.SIGN_IN, str(error))
        if not isinstance(error, ParleyClientError):
            log.error("the event stream failed; reconnecting", exc_info=error)
        return StreamEnded(Next.RECONNECT, repr(error))

    async def _pump(self, stream: Stream) -> None:
        await self._on_hello(stream)
        transport = stream.transport
        while True:
            delivery = await stream.receive()
            for data in delivery.events:
                await self._handle(data, transport)
            if delivery.cursor is not None:
                self._cursor = delivery.cursor

    async def _on_hello(self, stream: Stream) -> None:
        hello = stream.hello
        if self._cursor is None and hello.get("cursor") is not None:
            self._cursor = str(hello["cursor"])  # resuming keeps ours: the backlog follows
        self._route.note_mode(hello.get("mode"))
        self._route.connected(stream.transport)
        self._stream = stream
        self._set_state(ConnectionState.CONNECTED)
        self._first_hello.set()
        await self._listeners.emit(Event("hello", hello, stream.transport))
        if self.user is None:
            await self._who_am_i()
        # Loaded only once the stream is up: what is stored meanwhile then arrives on it.
        if self._needs_full_state:
            await self._load_full_state(stream.transport)
        elif self._load_conversations and not self._mirror.conversations:
            with contextlib.suppress(ParleyClientError):
                self._mirror.take_conversations(await self._rest.list_conversations())

    async def _handle(self, data: dict[str, Any], transport: TransportName) -> None:
        kind = data.get("type")
        if kind == "message":
            await self._on_message(data, transport)
        elif kind == "message.updated":
            await self._on_message_updated(data, transport)
        elif kind == "ack":
            await self._on_ack(data, transport)
        elif kind == "error" and data.get("ref") is not None:
            self._on_send_error(data)
        elif kind == "receipt":
            receipt = self._mirror.take_receipt(data, transport)
            if receipt is not None:
                merged = {"type": "receipt", "conversation_id": data["conversation_id"]}
                await self._listeners.emit(Event("receipt", merged | asdict(receipt), transport))
        elif kind == "control":
            await self._listeners.emit(Event("control", data, transport))
            self._on_control(data, transport)
        elif kind not in (None, "pong"):
            await self._listeners.emit(Event(str(kind), data, transport))
            ended = ended_by_error(data) if kind == "error" else None
            if ended is not None:
                raise ended

    async def _on_message(self, data: dict[str, Any], transport: TransportName) -> None:
        message = Message.from_json(data["message"])
        if data.get("pos") is not None:
            self._cursor = str(data["pos"])
        timeline = self._mirror.timeline(message.conversation_id)
        gap = timeline.gap_before(message.seq)
        if gap is not None:
            await self._fill_gap(gap, message.conversation_id, transport)
        if self._mirror.take_streamed(message, transport):
            await self._listeners.emit(Event("message", data, transport, message))

    async def _on_message_updated(self, data: dict[str, Any], transport: TransportName) -> None:
        """A stored message changed: replace it where it is held, and hand the event out unless
        it told nothing new (this client's own change, already applied from its answer)."""
        if data.get("pos") is not None:
            self._cursor = str(data["pos"])
        message = Message.from_json(data["message"])
        if self._mirror.take_update(message):
            await self._listeners.emit(Event("message.updated", data, transport, message))

    async def _on_ack(self, data: dict[str, Any], transport: TransportName) -> None:
        pending = self._outbox.waiting_for(data.get("ref"))
        if pending is None or pending.waiter is None:
            return  # an answer to a send already acknowledged
        waiter = pending.waiter
        ack = Ack(
            conversation_id=int(data["conversation_id"]),
            client_msg_id=pending.client_msg_id,
            id=int(data["id"]),
            seq=int(data["seq"]),
            duplicate=bool(data.get("duplicate", False)),
            transport=transport,
            pos=data.get("pos"),
        )
        message = pending.provisional(ack, self._mirror.user_id)
        waiter.set_result(ack)
        if self._mirror.take_ack(ack, message):
            await self._emit_messages([message], "ack", transport)

    def _on_send_error(self, data: dict[str, Any]) -> None:
        pending = self._outbox.waiting_for(data.get("ref"))
        if pending is None or pending.waiter is None:
            return
        pending.waiter.set_exception(
            ParleyClientError(
                str(data.get("code")),
                str(data.get("message", "")),
                retry_after=data.get("retry_after"),
            )
        )

    def _on_control(self, data: dict[str, Any], transport: TransportName) -> None:
        op = data.get("op")
        if op == "transport":
            self._route.note_mode(data.get("mode"))
            if data.get("mode") == "sse_only" and transport == "ws":
                raise StreamEnded(Next.USE_SSE, "control: transport sse_only")
        if op == "reconnect":
            raise StreamEnded(Next.FAILOVER, f"control: reconnect ({data.get('reason')})")

    # ---- after a stream ends ---------------------------------------------------------

    async def _after_end(self, ended: StreamEnded, failures: int) -> bool:
        """Get ready for the next connection; False when the client must stop."""
        if self._state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.RECONNECTING)
        log.info("stream ended (%s): %s", self.transport, ended)
        if ended.next is Next.SIGN_IN:
            self._stop_with(Unauthenticated("ERR_UNAUTHENTICATED", ended.detail, status=401))
            return False
        if ended.next is Next.RESYNC:
            # Without a cursor there is nothing to resync from: saying so again gets backoff.
            failures = 1 if self._cursor is not None else failures + 1
            self._forced_resyncs += 1
            self._invariants.count(self.transport, "forced_resyncs")
            self._cursor = None
            self._needs_full_state = True
            await self._listeners.emit(Event("resync", {"type": "resync"}, self.transport))
        await asyncio.sleep(self._route.after_end(ended, failures))
        return True

    def _stop_with(self, failure: ParleyClientError) -> None:
        self._set_state(ConnectionState.FAILED)
        self._failure = failure
        self._outbox.fail_waiting(failure)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        if state not in _MOVES[self._state]:
            raise RuntimeError(f"illegal client state move {self._state.value} -> {state.value}")
        self._state = state

    # ---- REST: full state and gaps ---------------------------------------------------

    async def _load_full_state(self, transport: TransportName) -> None:
        """The conversation list, then each conversation's newest page (holes filled)."""
        self._invariants.count(transport, "full_state_loads")
        self._mirror.take_conversations(await self._rest.list_conversations())
        for conversation_id in self._mirror.conversations:
            timeline = self._mirror.timeline(conversation_id)
            added = await load_newest_page(self._rest, timeline)
            await self._emit_messages(added, "history", transport)
        self._needs_full_state = False

    async def _fill_gap(
        self, gap: tuple[int, int], conversation_id: int, transport: TransportName
    ) -> None:
        """Fetch the missing seqs over REST and hand them out before the message after them."""
        try:
            added = await fill_gap(self._rest, self._mirror.timeline(conversation_id), gap)
        except ParleyClientError as exc:
            log.warning("gap %s-%s not filled yet: %s", *gap, exc)
            return  # the conversation's next message tries again
        self._gap_fills += 1
        await self._emit_messages(added, "fill", transport)

    async def _emit_messages(
        self, messages: list[Message], source: MessageSource, transport: TransportName
    ) -> None:
        for message in messages:
            data = {
                "type": "message",
                "conversation_id": message.conversation_id,
                "seq": message.seq,
                "pos": message.pos,
                "message": asdict(message),
            }
            await self._listeners.emit(Event("message", data, transport, message, source))

    # ---- watchdog and reports --------------------------------------------------------

    async def _watch(self) -> None:
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_TICK)
            self._invariants.expire()
            if time.monotonic() - last_report >= self._report_interval:
                last_report = time.monotonic()
                await self._post_reports()

    async def _post_reports(self, timeout: float | None = None) -> None:
        """Post the counters' deltas; what cannot be posted waits for the next report."""
        reports = self._invariants.take_reports()
        for index, report in enumerate(reports):
            try:
                async with asyncio.timeout(timeout):
                    await self._rest.post_report(report.to_json())
            except (ParleyClientError, TimeoutError) as exc:
                log.debug("report not posted: %s", exc)
                for unsent in reports[index:]:
                    self._invariants.restore(unsent)
                return


def _url_list(base_url: str | Sequence[str], more: Sequence[str] | None) -> list[str]:
    first = [base_url] if isinstance(base_url, str) else list(base_url)
    urls: list[str] = []
    for url in [*first, *(more or ())]:
        if url.rstrip("/") not in urls:
            urls.append(url.rstrip("/"))
    return urls
