"""WebSocket transport: the stream out, `send`/`receipt`/`typing`/`ping` frames in, and the
frames features register with the stream service (`call.*`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from parley import metrics
from parley.core.errors import ErrorCode, ParleyError, RateLimited, ResyncRangeUnavailable
from parley.core.events import AckEvent, ErrorEvent
from parley.core.models import User
from parley.realtime.envelope import Envelope
from parley.services.identity import Credential
from parley.services.stream import StreamService, StreamSession
from parley.transports import bearer_token, client_ip, origin_allowed
from parley.transports.frames import ReceiptFrame, SendFrame, TypingFrame, parse_frame

log = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
CLOSE_UNAUTHENTICATED = 4001
CLOSE_TRANSPORT_DISABLED = 4003
CLOSE_TOO_SLOW = 4008
CLOSE_RESYNC_UNAVAILABLE = 4009
CLOSE_RATE_LIMITED = 4029
_MAX_INFLIGHT_SENDS = 64
# Envelopes a writer takes from its queue at a time (bounds what a blocked writer holds).
WRITE_SLICE = 256


async def serve_websocket(websocket: WebSocket, stream: StreamService) -> None:
    if not origin_allowed(websocket, stream.settings.allowed_origins):
        await websocket.close(code=1008, reason="origin not allowed")  # before accept: HTTP 403
        return
    await websocket.accept()
    try:
        credential = await stream.authenticate(
            token=bearer_token(websocket), ticket=websocket.query_params.get("ticket")
        )
    except ParleyError as exc:
        await refuse(websocket, exc)
        return
    await serve_websocket_as(credential, websocket, stream, client_ip=client_ip(websocket))


async def serve_websocket_as(
    who: User | Credential,
    websocket: WebSocket,
    stream: StreamService,
    *,
    client_ip: str,
    receive_only: bool = False,
) -> None:
    """Stream to an authenticated user over an accepted socket.

    `receive_only` (widget visitors) answers every frame but `ping` with an error: their writes
    go through the REST endpoints and the rate limits there.
    """
    try:
        session = await stream.open(
            who,
            cursor=websocket.query_params.get("cursor"),
            transport="ws",
            client_ip=client_ip,
        )
    except ParleyError as exc:
        await refuse(websocket, exc)
        return
    try:
        await _run(websocket, stream, session, receive_only=receive_only)
    finally:
        await stream.close(session)


async def refuse(websocket: WebSocket, exc: ParleyError) -> None:
    """Tell an accepted socket why it is being closed, then close it with a matching code."""
    retry_after = getattr(exc, "retry_after", None)  # rate limits, maintenance mode
    await websocket.send_text(
        ErrorEvent(code=exc.code, message=exc.message, retry_after=retry_after).model_dump_json()
    )
    if isinstance(exc, ResyncRangeUnavailable):
        code = CLOSE_RESYNC_UNAVAILABLE
    elif isinstance(exc, RateLimited):
        code = CLOSE_RATE_LIMITED
    elif exc.code == ErrorCode.TRANSPORT_DISABLED:
        code = CLOSE_TRANSPORT_DISABLED
    elif exc.status == 401:
        code = CLOSE_UNAUTHENTICATED
    else:
        code = 1008
    await websocket.close(code=code, reason=exc.code)


async def _run(
    websocket: WebSocket, stream: StreamService, session: StreamSession, *, receive_only: bool
) -> None:
    """One task per connection: this one reads; sending runs in a short-lived task only while
    there is something queued (an idle connection holds no writer task)."""
    await websocket.send_text(session.hello.model_dump_json())
    for envelope in session.backlog:
        await websocket.send_text(envelope.data)
    writer = _Writer(websocket, session, stream.settings.stream_send_timeout_seconds)
    try:
        try:
            await _read(websocket, stream, session, receive_only=receive_only)
        finally:
            await writer.stop()
    except asyncio.CancelledError:
        if not writer.stopped_reader or not _uncancel():
            raise  # not (only) the writer's doing: the server is stopping
    except WebSocketDisconnect:
        pass


def _uncancel() -> bool:
    """Take back one cancellation of the current task (the writer's); False if more are due."""
    task = asyncio.current_task()
    return task is not None and task.uncancel() == 0


class _Writer:
    """Sends what the subscription queues: at once while the socket takes frames without
    waiting, from a short-lived task when it does not.

    The subscription calls `wake` when something is queued. Usually the socket takes the frame
    there and then, in the turn of the loop that queued it: that is what a plain broadcast does,
    and it costs neither a task nor a wake-up per frame. A send that has to wait (the client
    reads slower than it is sent to) continues in a task, which takes slices of the queue until
    it is empty and ends. An idle connection holds no writer task.

    When the connection has to end (a control event that closes it, a client too slow for its
    queue limit, one that takes nothing for `send_timeout` s, or a send that fails), the writer
    closes the socket and cancels the reader, which is the connection's own task.

    A client too slow for its queue limit gets 4008 after what it was already given (a resume
    from its cursor then loses nothing); one that takes nothing for `send_timeout` s is dropped
    (its socket is aborted by TCP_USER_TIMEOUT). One timer per slice, moved on only every
    quarter of the timeout: arming a timer per frame cost more than the frame's send. So a
    client that takes nothing is dropped between `send_timeout` and 1.25 times `send_timeout`
    after the last frame it took.
    """

    __slots__ = (
        "ended",
        "raw",
        "reader",
        "send_timeout",
        "session",
        "stopped_reader",
        "task",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, session: StreamSession, send_timeout: float) -> None:
        self.websocket = websocket
        self.session = session
        self.send_timeout = send_timeout
        self.raw: WebSocketsSansIOProtocol | None = websocket.scope.get(_PROTOCOL_KEY)
        self.reader = asyncio.current_task()
        self.task: asyncio.Task[None] | None = None
        self.ended = False
        self.stopped_reader = False
        session.sub.on_ready = self.wake
        self.wake()  # anything queued between `open` and now

    def wake(self) -> None:
        if self.task is not None or self.ended:
            return  # the task sends what was queued, in order
        sub = self.session.sub
        while not (sub.overflowed or sub.closed):
            envelope = sub.take_one()
            if envelope is None:
                return
            if _close_code_after(envelope, self.session) is not None:
                self._continue([envelope])
                return
            if self.raw is not None and _takes_raw_frames(self.raw):
                self.raw.transport.write(envelope.ws_frame())
                continue
            try:
                waiting = _send_without_waiting(self.websocket, envelope.data)
            except WebSocketDisconnect:
                self._end()
                return
            except Exception as exc:
                log.warning("websocket ended with an error: %r", exc)
                self._end()
                return
            if waiting is not None:
                self._continue([], waiting)
                return
        self._continue([])  # it overflowed or was closed: the task closes the socket

    def _continue(self, head: list[Envelope], waiting: Awaitable[None] | None = None) -> None:
        self.task = asyncio.get_running_loop().create_task(self._drain(head, waiting))

    async def stop(self) -> None:
        self.ended = True
        self.session.sub.on_ready = None
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _end(self) -> None:
        """Stop reading: the connection is over (the reader's cancellation is expected)."""
        self.ended = True
        self.session.sub.on_ready = None
        if self.reader is not None and not self.reader.done() and not self.stopped_reader:
            self.stopped_reader = True
            self.reader.cancel()

    async def _drain(self, head: list[Envelope], waiting: Awaitable[None] | None) -> None:
        try:
            while not self.ended:
                if not await self._send_queued(head, waiting):
                    self._end()
                    return
                head, waiting = [], None
                if not self.session.sub.backlog:
                    return
        except WebSocketDisconnect:
            self._end()
        except Exception as exc:
            log.warning("websocket ended with an error: %r", exc)
            self._end()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    async def _send_queued(self, head: list[Envelope], waiting: Awaitable[None] | None) -> bool:
        """Finish the send that had to wait, then send `head` and one slice of what is queued;
        False when the connection must end."""
        websocket, session = self.websocket, self.session
        send_timeout = self.send_timeout
        loop = asyncio.get_running_loop()
        slack = send_timeout / 4
        envelopes = head + session.sub.take(WRITE_SLICE)
        try:
            async with asyncio.timeout_at(loop.time() + send_timeout + slack) as deadline:
                if waiting is not None:
                    await waiting
                moved = loop.time()
                for envelope in envelopes:
                    await websocket.send_text(envelope.data)
                    if (now := loop.time()) - moved > slack:
                        deadline.reschedule(now + send_timeout + slack)
                        moved = now
                    close = _close_code_after(envelope, session)
                    if close is not None:
                        await websocket.close(code=close, reason=envelope.type)
                        return False
        except TimeoutError:
            metrics.SLOW_CONSUMERS.labels("ws").inc()
            log.info(
                "websocket of user %s took nothing for %g s; dropped",
                session.user.id,
                send_timeout,
            )
            return False
        if session.sub.overflowed:
            metrics.SLOW_CONSUMERS.labels("ws").inc()
            await websocket.close(code=CLOSE_TOO_SLOW, reason="too slow; resume with your cursor")
            return False
        if session.sub.closed:
            await websocket.close(code=CLOSE_SERVICE_RESTART)
            return False
        return True


_PROTOCOL_KEY = "parley.ws_protocol"


def expose_protocol(app: ASGIApp) -> ASGIApp:
    """The server's outermost ASGI app: tells a WebSocket's handler which uvicorn protocol
    object serves it, so a frame made once can be written to every socket as it is
    (`Envelope.ws_frame`). Servers other than uvicorn's websockets-sansio, and in-process test
    clients, get nothing and go through `send` as usual."""

    async def app_exposing_protocol(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            owner = getattr(send, "__self__", None)
            if isinstance(owner, WebSocketsSansIOProtocol):
                scope[_PROTOCOL_KEY] = owner
        await app(scope, receive, send)

    return app_exposing_protocol


def _takes_raw_frames(protocol: WebSocketsSansIOProtocol) -> bool:
    """Whether a frame written straight to the socket is what `send` would have written: an
    open connection without extensions (compression frames differ per connection) that is
    writable now (otherwise `send` waits, and so must we)."""
    return (
        not protocol.close_sent
        and protocol.conn.state is State.OPEN
        and not protocol.conn.extensions
        and protocol.writable.is_set()
        and not protocol.transport.is_closing()
    )


def _send_without_waiting(websocket: WebSocket, text: str) -> Awaitable[None] | None:
    """Run `websocket.send_text(text)` by hand up to its first wait.

    None when it finished (the socket took the frame); otherwise what is left of it, for a
    task to await. Nothing is sent twice: the coroutine goes on from where it stopped.
    """
    send = websocket.send_text(text)
    try:
        waiting_on = send.send(None)
    except StopIteration:
        return None
    return _Rest(send, waiting_on)


class _Rest:
    """The rest of a coroutine run by hand up to its first suspension: awaiting it hands the
    future it waits on to the awaiting task and goes on as `await coroutine` would have."""

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, yielded = self.coroutine, self.waiting_on
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # cancellation and timeouts go on into the send
                try:
                    yielded = coroutine.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                yielded = coroutine.send(sent)
            except StopIteration:
                return


def _close_code_after(envelope: Envelope, session: StreamSession) -> int | None:
    if envelope.type != "control":
        return None
    if '"op":"reconnect"' in envelope.data:
        return CLOSE_SERVICE_RESTART
    if '"op":"revoked"' in envelope.data:
        return CLOSE_UNAUTHENTICATED
    if '"mode":"sse_only"' in envelope.data:
        return CLOSE_TRANSPORT_DISABLED
    return None


async def _read(
    websocket: WebSocket, stream: StreamService, session: StreamSession, *, receive_only: bool
) -> None:
    inflight: set[asyncio.Task[None]] = set()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is None:
                _reply_error(session, ErrorCode.BAD_REQUEST, "binary frames are not supported")
                continue
            frame = _parse(message["text"], session)
            if frame is None:
                continue
            if receive_only and frame["type"] != "ping":
                _reply_error(
                    session, ErrorCode.FORBIDDEN, "this stream is receive-only; use the REST API"
                )
                continue
            if frame["type"] == "send":
                if len(inflight) >= _MAX_INFLIGHT_SENDS:
                    _reply_error(session, ErrorCode.RATE_LIMITED, "too many sends in flight")
                    continue
                task = asyncio.create_task(_send(stream, session.user, session, frame))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            else:
                await _handle(stream, session, frame)
    finally:
        for task in inflight:
            task.cancel()


def _parse(text: str, session: StreamSession) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        _reply_error(session, ErrorCode.INVALID_JSON, "frames are JSON objects")
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        _reply_error(session, ErrorCode.VALIDATION, 'a frame is an object with a "type"')
        return None
    return frame


async def _handle(stream: StreamService, session: StreamSession, frame: dict[str, Any]) -> None:
    kind = frame["type"]
    if kind == "ping":
        session.sub.push(Envelope("pong", '{"type":"pong"}'))
        return
    try:
        if kind == "receipt":
            receipt = parse_frame(ReceiptFrame, frame)
            await stream.timeline.do_receipt(
                session.user,
                receipt.conversation_id,
                delivered_seq=receipt.delivered_seq,
                read_seq=receipt.read_seq,
            )
        elif kind == "typing":
            typing = parse_frame(TypingFrame, frame)
            await stream.do_typing(session.user, typing.conversation_id)
        elif (handler := stream.frame_handlers.get(kind)) is not None:
            reply = await handler(session.user, frame)
            if reply is not None:
                session.sub.push(
                    Envelope(str(getattr(reply, "type", kind)), reply.model_dump_json())
                )
        else:
            _reply_error(session, ErrorCode.VALIDATION, f"unknown frame type {kind!r}")
    except ParleyError as exc:
        ref = frame.get("ref") if isinstance(frame.get("ref"), str) else None
        _reply_error(session, exc.code, exc.message, ref=ref)


async def _send(
    stream: StreamService, user: User, session: StreamSession, frame: dict[str, Any]
) -> None:
    ref = frame.get("client_msg_id") if isinstance(frame.get("client_msg_id"), str) else None
    try:
        send = parse_frame(SendFrame, frame)
        appended = await stream.timeline.do_send(
            user,
            send.conversation_id,
            client_msg_id=send.client_msg_id,
            body=send.body,
            attachment_ids=send.attachments,
            metadata=send.metadata,
            reply_to_id=send.reply_to_id,
            thread_root_id=send.thread_root_id,
        )
    except ParleyError as exc:
        _reply_error(session, exc.code, exc.message, ref=ref)
        return
    message = appended.message
    ack = AckEvent(
        ref=send.client_msg_id,
        conversation_id=message.conversation_id,
        id=message.id,
        seq=message.seq,
        pos=message.pos,
        duplicate=not appended.created,
    )
    session.sub.push(Envelope("ack", ack.model_dump_json()))


def _reply_error(
    session: StreamSession, code: str, message: str, *, ref: str | None = None
) -> None:
    error = ErrorEvent(code=code, message=message, ref=ref)
    session.sub.push(Envelope("error", error.model_dump_json()))
