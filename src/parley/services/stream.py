"""The event stream a signed-in client follows: open (with resume), publish, and control.

Transports (ws, sse, poll) call `open()` and read the session it returns; everything they share
— authentication by token or ticket, resume and its window, throttling, presence, the transport
mode switch, client reports — lives here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from limits import parse as parse_rate
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from parley import metrics
from parley.bus import Bus
from parley.core.errors import (
    BadInput,
    ErrorCode,
    Forbidden,
    RateLimited,
    ResyncRangeUnavailable,
    Unauthenticated,
    Unavailable,
)
from parley.core.events import (
    ControlEvent,
    ConversationUpdatedEvent,
    Event,
    HelloEvent,
    MessageEvent,
    MessageUpdatedEvent,
    PresenceEvent,
    ReceiptEvent,
    TypingEvent,
)
from parley.core.models import Appended, User
from parley.realtime.envelope import Envelope, envelope_for
from parley.realtime.ephemeral import Ephemeral
from parley.realtime.hub import Hub, Subscription, age_seconds
from parley.services.identity import Identity
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.stream import StreamStore

log = logging.getLogger(__name__)

Transport = Literal["ws", "sse", "poll"]
TransportMode = Literal["auto", "sse_only"]
TRANSPORT_MODE_KEY = "transport_mode"
TICKET_TTL_SECONDS = 60
POLL_FREE_LAG = 1_000
OUTBOX_LIMIT = 10_000
TYPING_TTL_SECONDS = 5.0
PRESENCE_TTL_SECONDS = 60.0
REPORTED_COUNTERS = (
    "ack_without_receipt_10s",
    "timeline_duplicate_detected",
    "read_rollback_detected",
    "forced_resyncs",
    "full_state_loads",
)


@dataclass
class StreamSession:
    """One open stream: what was missed (`backlog`), then live envelopes from `sub`."""

    user: User
    transport: Transport
    sub: Subscription
    hub: Hub
    hello: HelloEvent
    backlog: list[Envelope]
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def cursor(self) -> int:
        """Every message event up to this position was delivered or is queued for delivery."""
        return max(self.sub.min_pos, self.hub.processed)


class StreamService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: StreamStore,
        timeline: Timeline,
        identity: Identity,
        bus: Bus,
        ephemeral: Ephemeral,
        limiter_storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.timeline = timeline
        self.identity = identity
        self.bus = bus
        self.ephemeral = ephemeral
        self.mode: TransportMode = "auto"
        self.hub: Hub | None = None
        storage = limiter_storage or MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        # Used while the shared limiter's store (Redis) is unreachable: reconnecting clients still
        # resume (delivery already falls back to the database) and each node still throttles.
        self._local_limiter = MovingWindowRateLimiter(MemoryStorage())
        self._resume_rate = parse_rate(settings.resume_rate)
        self._per_ip: dict[str, int] = {}
        self._session_ip: dict[str, str] = {}
        self._receipt_samples: dict[str, deque[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: deque[list[Envelope]] = deque()
        self._outbox_ready = asyncio.Event()
        # Also given every report with its user (the release gates store them per cohort).
        self.on_report: Callable[[int, Transport, dict[str, int], list[float]], None] | None = None
        self._draining = False
        self._positioned = False

    @classmethod
    def limiter_storage_for(cls, redis_url: str, prefix: str) -> Storage:
        if redis_url:
            return RedisStorage(
                redis_url.replace("redis://", "async+redis://", 1),
                implementation="redispy",
                key_prefix=f"{prefix}limits",
            )
        return MemoryStorage()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            head: int | None = await self.store.get_head()
            self.mode = (await self.store.get_runtime_setting(TRANSPORT_MODE_KEY)) or "auto"
        except Unavailable as exc:
            # Start anyway (readyz says why); the head poller positions the hub once it can.
            log.warning("database unavailable at start; stream waits for it: %s", exc)
            head = None
        self._positioned = head is not None
        self.hub = Hub(
            start_pos=head or 0,
            fetch_range=self._fetch_range,
            queue_limit=self.settings.stream_queue_limit,
            on_control=self._on_control,
            on_dispatch=lambda envelope: metrics.FANOUT_DELAY.observe(age_seconds(envelope)),
        )
        await self.bus.start(self.hub.ingest)
        self._tasks = [
            asyncio.create_task(self._poll_head(), name="stream-head-poll"),
            asyncio.create_task(self._refresh_presence(), name="presence-refresh"),
            asyncio.create_task(self._publish_outbox(), name="bus-publish"),
        ]

    def drain(self) -> None:
        """Tell every connection to move elsewhere (SIGTERM): WS closes 1012, SSE/poll end."""
        if self._draining or self.hub is None:
            return
        self._draining = True
        goodbye = envelope_for(ControlEvent(op="reconnect", reason="shutdown"))
        for sub in self.hub.subscriptions():
            sub.push(goodbye)

    async def stop(self) -> None:
        self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush_outbox()
        if self.hub:
            await self.hub.close()
        await self.bus.stop()
        await self.ephemeral.close()

    @property
    def live_hub(self) -> Hub:
        if self.hub is None:
            raise RuntimeError("the stream service is not started")
        return self.hub

    async def _poll_head(self) -> None:
        """Read the stream head now and then, so positions the bus lost are fetched anyway."""
        while True:
            await asyncio.sleep(self.settings.head_poll_seconds)
            metrics.BUS_HEALTHY.set(1 if self.bus.healthy else 0)
            try:
                head = await self.store.get_head()
                if not self._positioned:
                    self.mode = (await self.store.get_runtime_setting(TRANSPORT_MODE_KEY)) or "auto"
                    self.live_hub.jump_to(head)
                    self._positioned = True
                self.live_hub.notice_head(head)
            except Exception as exc:  # the database may be restarting; try again next tick
                log.warning("reading the stream head failed: %s", exc)

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_TTL_SECONDS / 3)
            for sub in self.live_hub.subscriptions():
                try:
                    await self.ephemeral.presence_touch(
                        sub.user_id, str(sub.id), PRESENCE_TTL_SECONDS
                    )
                except Exception as exc:
                    log.warning("refreshing presence failed: %s", exc)
                    break

    async def _fetch_range(self, after: int, upto: int) -> list[Envelope]:
        return await self._positions_between(after, upto)

    async def _positions_between(
        self,
        after: int,
        upto: int,
        *,
        conversation_ids: list[int] | None = None,
        limit: int = 500,
    ) -> list[Envelope]:
        """The events of stream positions in (after, upto] — new messages and changes to
        messages — in position order, at most `limit` of them."""
        found = await self.store.list_messages_between(
            after, upto, conversation_ids=conversation_ids, limit=limit
        )
        changes = await self.store.list_changes_between(
            after, upto, conversation_ids=conversation_ids, limit=limit
        )
        envelopes = [envelope_for(MessageEvent.of(message)) for message in found]
        envelopes += [envelope_for(MessageUpdatedEvent.of(change)) for change in changes]
        envelopes.sort(key=lambda envelope: envelope.pos or 0)
        return envelopes[:limit]

    # -- publishing ------------------------------------------------------------------------------

    async def publish_committed(self, results: list[Appended]) -> None:
        """The group-commit writer's hook: new messages go out once, after their commit."""
        envelopes = [
            envelope_for(MessageEvent.of(result.message)) for result in results if result.created
        ]
        await self._send(envelopes)

    async def publish(self, event: Event) -> None:
        await self._send([envelope_for(event)])

    async def _send(self, envelopes: list[Envelope]) -> None:
        """Deliver on this node now; hand to the bus publisher without waiting for Redis.

        The group-commit writer calls this between batches, so a slow or hanging Redis must not
        hold up the next commit. If the outbox overflows, the oldest batches are dropped: other
        nodes read lost messages from the database (head polling), the rest is ephemeral.
        """
        if not envelopes:
            return
        if self.hub is None:
            # Not serving (a CLI command changed something): serving nodes pick positioned
            # events up from the database by head polling; there is no one here to tell.
            return
        self.hub.ingest(envelopes)
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
        self._outbox.append(envelopes)
        self._outbox_ready.set()

    async def _publish_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        batch: list[Envelope] = []
        while self._outbox:
            batch += self._outbox.popleft()
        if batch:
            await self.bus.publish(batch)

    # -- authentication --------------------------------------------------------------------------

    async def issue_ticket(self, user: User) -> str:
        ticket = "tk_" + secrets.token_urlsafe(24)
        await self.ephemeral.put_ticket(ticket, user.id, TICKET_TTL_SECONDS)
        return ticket

    async def authenticate(self, *, token: str | None, ticket: str | None) -> User:
        """A stream's user, from a bearer token or a single-use ticket."""
        if token:
            return await self.identity.access_token(token)
        if ticket:
            user_id = await self.ephemeral.take_ticket(ticket)
            user = await self.identity.users.get_user(user_id) if user_id is not None else None
            if user is None:
                raise Unauthenticated(
                    "the ticket is unknown, used or expired; get a new one from "
                    "POST /v1/stream/ticket",
                    ErrorCode.INVALID_CREDENTIALS,
                )
            return user
        raise Unauthenticated("send 'Authorization: Bearer <token>' or '?ticket='")

    # -- opening a stream ------------------------------------------------------------------------

    def check_transport_allowed(self, transport: Transport) -> None:
        if transport == "ws" and self.mode == "sse_only":
            raise Forbidden(
                "WebSocket is switched off on this deployment; use SSE (/v1/stream/sse)",
                ErrorCode.TRANSPORT_DISABLED,
            )

    def check_connection_limits(self, user: User, client_ip: str) -> None:
        hub = self.live_hub
        if hub.count_for_user(user.id) >= self.settings.stream_max_per_user:
            raise RateLimited(
                f"at most {self.settings.stream_max_per_user} open streams per user",
                ErrorCode.TOO_MANY_CONNECTIONS,
                retry_after=5,
            )
        if self._per_ip.get(client_ip, 0) >= self.settings.stream_max_per_ip:
            raise RateLimited(
                f"at most {self.settings.stream_max_per_ip} open streams per address",
                ErrorCode.TOO_MANY_CONNECTIONS,
                retry_after=5,
            )

    async def open(
        self, user: User, *, cursor: str | None, transport: Transport, client_ip: str = ""
    ) -> StreamSession:
        """Subscribe `user`, then collect what they missed since `cursor` (if any).

        Subscribing first and reading the backlog up to the subscription's start position
        afterwards leaves no window in which an event could fall between the two.
        """
        after = parse_cursor(cursor)
        hub = self.live_hub
        conversation_ids = await self.store.list_conversation_ids(user.id)
        sub = hub.subscribe(user.id, conversation_ids)
        start = sub.min_pos
        try:
            backlog: list[Envelope] = []
            if after is not None:
                backlog = await self._backlog(user, sub, after, start, transport)
        except BaseException:
            hub.unsubscribe(sub)
            raise
        if after is not None and after > start:
            sub.min_pos = after  # the client heard of positions this node's hub has not reached
        session = StreamSession(
            user=user,
            transport=transport,
            sub=sub,
            hub=hub,
            hello=HelloEvent(cursor="0", transport=transport, mode=self.mode, resumed=0),
            backlog=backlog,
        )
        session.hello = HelloEvent(
            cursor=str(max(session.cursor, after or 0)),
            transport=transport,
            mode=self.mode,
            resumed=sum(1 for e in backlog if e.type == "message"),
        )
        self._per_ip[client_ip] = self._per_ip.get(client_ip, 0) + 1
        self._session_ip[session.id] = client_ip
        metrics.STREAM_OPENS.labels(transport).inc()
        if transport != "poll":
            metrics.STREAM_CONNECTIONS.labels(transport).inc()
            await self._presence_online(user, session, conversation_ids)
        return session

    async def close(self, session: StreamSession) -> None:
        self.live_hub.unsubscribe(session.sub)
        ip = self._session_ip.pop(session.id, "")
        self._per_ip[ip] = self._per_ip.get(ip, 1) - 1
        if self._per_ip[ip] <= 0:
            self._per_ip.pop(ip, None)
        if session.transport != "poll":
            metrics.STREAM_CONNECTIONS.labels(session.transport).dec()
            try:
                if await self.ephemeral.presence_leave(session.user.id, str(session.sub.id)):
                    await self._send(
                        [
                            envelope_for(
                                PresenceEvent(user_id=session.user.id, status="offline"),
                                audience=tuple(session.sub.conversation_ids),
                            )
                        ]
                    )
            except Exception as exc:
                log.warning("presence update failed: %s", exc)

    async def _backlog(
        self, user: User, sub: Subscription, after: int, start: int, transport: Transport
    ) -> list[Envelope]:
        head = await self.store.get_head()
        if after > head or head - after > self.settings.resume_window_events:
            raise self._range_unavailable(transport, after, head)
        # Reconnecting streams count as resyncs; a long-poll client is always a little behind,
        # so it counts only when it lags far (a storm of stale polls, not normal polling).
        if after < start and (transport != "poll" or start - after > POLL_FREE_LAG):
            await self._throttle_resume(user, transport)
            if after > 0:
                when = await self.store.get_message_time(after)
                age = (datetime.now(UTC) - when).total_seconds() if when else 0
                if age > self.settings.resume_window_seconds:
                    raise self._range_unavailable(transport, after, head)
        conversation_ids = sorted(sub.conversation_ids)
        backlog = await self._positions_between(
            after,
            max(start, after),
            conversation_ids=conversation_ids,
            limit=self.settings.resume_max_messages + 1,
        )
        if len(backlog) > self.settings.resume_max_messages:
            raise self._range_unavailable(transport, after, head)
        resumed = bool(backlog)
        changed = await self.store.list_conversations_changed_since(conversation_ids, after)
        backlog += [
            envelope_for(ConversationUpdatedEvent(conversation_id=cid, member_ids=member_ids))
            for cid, member_ids in changed.items()
        ]
        members = await self.store.list_members_updated_since(conversation_ids, after)
        backlog += [
            envelope_for(
                ReceiptEvent(
                    conversation_id=m.conversation_id,
                    user_id=m.user_id,
                    delivered_seq=m.delivered_seq,
                    read_seq=m.read_seq,
                )
            )
            for m in members
        ]
        if resumed:
            metrics.STREAM_RESUMES.labels(transport).inc()
        return backlog

    def _range_unavailable(self, transport: Transport, after: int, head: int) -> Exception:
        metrics.RESYNC_ERRORS.labels(transport, ErrorCode.RESYNC_RANGE_UNAVAILABLE).inc()
        return ResyncRangeUnavailable(
            f"cursor {after} is outside the resume window (head {head}, window "
            f"{self.settings.resume_window_events} positions / "
            f"{self.settings.resume_window_seconds} s); load full state and reconnect "
            "without a cursor"
        )

    async def _throttle_resume(self, user: User, transport: Transport) -> None:
        limiter = self._limiter
        try:
            if await limiter.hit(self._resume_rate, "resume", str(user.id)):
                return
        except Exception as exc:  # the limiter's driver errors (Redis down): throttle per node
            log.warning("shared resume throttle unavailable; throttling on this node: %s", exc)
            limiter = self._local_limiter
            if await limiter.hit(self._resume_rate, "resume", str(user.id)):
                return
        stats = await limiter.get_window_stats(self._resume_rate, "resume", str(user.id))
        metrics.RESYNC_ERRORS.labels(transport, ErrorCode.RESYNC_THROTTLED).inc()
        raise RateLimited(
            f"too many resumes (limit {self.settings.resume_rate}); retry later",
            ErrorCode.RESYNC_THROTTLED,
            retry_after=max(1.0, stats.reset_time - time.time()),
        )

    async def _presence_online(
        self, user: User, session: StreamSession, conversation_ids: list[int]
    ) -> None:
        try:
            if await self.ephemeral.presence_touch(
                user.id, str(session.sub.id), PRESENCE_TTL_SECONDS
            ):
                await self._send(
                    [
                        envelope_for(
                            PresenceEvent(user_id=user.id, status="online"),
                            audience=tuple(conversation_ids),
                        )
                    ]
                )
        except Exception as exc:
            log.warning("presence update failed: %s", exc)

    # -- control, typing, presence, reports --------------------------------------------------------

    def _on_control(self, envelope: Envelope) -> None:
        if envelope.type == "control" and '"op":"transport"' in envelope.data:
            self.mode = "sse_only" if '"mode":"sse_only"' in envelope.data else "auto"

    async def do_typing(self, actor: User, conversation_id: int) -> None:
        await self.timeline.access_conversation(actor, conversation_id)
        # One typing event per user and conversation per TTL/2, however often clients call.
        if await self.ephemeral.claim(
            f"typing:{conversation_id}:{actor.id}", TYPING_TTL_SECONDS / 2
        ):
            await self.publish(
                TypingEvent(
                    conversation_id=conversation_id,
                    user_id=actor.id,
                    expires_in_ms=int(TYPING_TTL_SECONDS * 1000),
                )
            )

    async def online(self, user_ids: list[int]) -> set[int]:
        return await self.ephemeral.online(user_ids)

    def record_report(
        self,
        transport: Transport,
        counters: dict[str, int],
        write_receipt_ms: Iterable[float],
        *,
        user_id: int | None = None,
    ) -> None:
        write_receipt_ms = list(write_receipt_ms)
        for name, value in counters.items():
            if name not in REPORTED_COUNTERS:
                raise BadInput(f"unknown counter {name!r}; known: {', '.join(REPORTED_COUNTERS)}")
            if value:
                metrics.CLIENT_REPORTED.labels(transport, name).inc(value)
        samples = self._receipt_samples.setdefault(transport, deque(maxlen=1000))
        for ms in write_receipt_ms:
            metrics.CLIENT_WRITE_RECEIPT.labels(transport).observe(ms / 1000)
            samples.append(ms)
        if samples:
            ordered = sorted(samples)
            metrics.WRITE_RECEIPT_P95_MS.labels(transport).set(
                ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            )
        if self.on_report is not None and user_id is not None:
            self.on_report(user_id, transport, dict(counters), write_receipt_ms)


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 16:
        raise BadInput("cursor must be the decimal position a previous event gave you")
    return int(cursor)
