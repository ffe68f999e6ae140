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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

from limits.aio.storage import Storage
from pydantic import BaseModel

from parley import metrics
from parley.background import LoopHealth
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
    CredentialsRevokedEvent,
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
from parley.services.identity import Credential, Identity
from parley.services.ratelimits import RateLimits
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
# A revoked token is remembered this long, for streams whose opening raced the revocation.
REVOKED_MEMORY_SECONDS = 300.0
# A user has at most this many long-poll subscriptions parked on a node (more tabs or devices
# than that fall back to opening each poll afresh); the oldest is dropped.
PARKED_PER_USER = 4
REPORTED_COUNTERS = (
    "ack_without_receipt_10s",
    "timeline_duplicate_detected",
    "read_rollback_detected",
    "forced_resyncs",
    "full_state_loads",
)
# A feature's WebSocket frame: the user and the parsed JSON in, an event to answer with (or None).
FrameHandler = Callable[[User, dict[str, Any]], Awaitable[BaseModel | None]]
# Events a stream gets right after it opens (e.g. the calls ringing for its user).
Greeter = Callable[[User], Awaitable[list[Event]]]


_CLOCK_SLACK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class ReportSender:
    """Who sent a client report: the account, the token (device) and the address."""

    user_id: int
    token_id: int | None = None
    client_ip: str = ""


ReportHook = Callable[[ReportSender, Transport, dict[str, int], list[float]], None]
# Who may take a parked long-poll subscription: the user, their credential (a token id, or a
# widget visit's session id — never the secret) and the cursor the poll returned.
ParkKey = tuple[int, str, int]


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
    # The API token it was opened with (directly or through a ticket); None for widget visitors.
    token_id: int | None = None
    expires_at: datetime | None = None
    client_ip: str = ""

    @property
    def cursor(self) -> int:
        """Every message event up to this position was delivered or is queued for delivery."""
        return max(self.sub.min_pos, self.hub.processed)


@dataclass(slots=True)
class _Parked:
    """A returned long poll's session, kept for its client's next poll until `until`."""

    session: StreamSession
    until: float  # time.monotonic()


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
        self.presence_ttl = settings.presence_ttl_seconds
        self.hub: Hub | None = None
        # While the shared store (Redis) is unreachable each node throttles on its own, and
        # reconnecting clients still resume (delivery already falls back to the database).
        self.rates = RateLimits(
            "stream",
            {"resume": settings.resume_rate, "report": settings.release_report_rate_per_user},
            limiter_storage,
        )
        # Open streams per user and per address on this node, every transport (long-poll too);
        # checked and counted in one step, with no await between.
        self._per_user: dict[int, int] = {}
        self._per_ip: dict[str, int] = {}
        self._sessions: dict[str, StreamSession] = {}
        # Long-poll sessions between two polls of one client, oldest first (see `finish_poll`);
        # not open streams: they count against no cap, but at most PARKED_PER_USER per user.
        self._parked: dict[ParkKey, _Parked] = {}
        self._parked_by_user: dict[int, dict[ParkKey, None]] = {}
        self._revoked: dict[int, float] = {}
        self._receipt_samples: dict[str, deque[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: deque[list[Envelope]] = deque()
        self._outbox_ready = asyncio.Event()
        # Also given every report with who sent it (the release gates store them per cohort).
        self.on_report: (
            Callable[[ReportSender, Transport, dict[str, int], list[float]], None] | None
        ) = None
        self._draining = False
        self._positioned = False
        # Extension points for features (calls): their own WebSocket frame types, and events
        # for a stream that just opened.
        self.frame_handlers: dict[str, FrameHandler] = {}
        self.greeters: list[Greeter] = []
        # Raises for a user who may not open a stream now (maintenance mode; set by the assembly).
        self.admit: Callable[[User], None] | None = None
        # Between-node broadcasts a feature acts on, by event type (no connection sees them).
        self.node_listeners: dict[str, Callable[[Envelope], None]] = {}

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
            # Another node added or removed members: this node's cached answers are stale.
            on_membership=self.timeline.forget_memberships,
        )
        await self.bus.start(self.hub.ingest)
        self._tasks = [
            asyncio.create_task(self._poll_head(), name="stream-head-poll"),
            asyncio.create_task(self._refresh_presence(), name="presence-refresh"),
            asyncio.create_task(self._publish_outbox(), name="bus-publish"),
            asyncio.create_task(self._recheck_credentials(), name="stream-credentials"),
        ]

    def drain(self) -> None:
        """Tell every connection to move elsewhere (SIGTERM): WS closes 1012, SSE/poll end."""
        if self._draining or self.hub is None:
            return
        self._draining = True
        self._drop_parked(lambda session: True)
        goodbye = envelope_for(ControlEvent(op="reconnect", reason="shutdown"))
        for sub in self.hub.subscriptions():
            sub.push(goodbye)

    async def stop(self) -> None:
        self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._flush_outbox()
        except Exception as exc:
            LoopHealth("bus_publish", log).failed(exc, "the last publish before stopping")
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
        health = LoopHealth("stream_head_poll", log)
        while True:
            await asyncio.sleep(self.settings.head_poll_seconds)
            metrics.BUS_HEALTHY.set(1 if self.bus.healthy else 0)
            self._sweep_parked()
            if not self.bus.healthy:
                # Other nodes' membership changes may be lost on the way: don't wait for the
                # cache's TTL to forget what they changed.
                self.timeline.member_cache.clear()
            try:
                head = await self.store.get_head()
                if not self._positioned:
                    self.mode = (await self.store.get_runtime_setting(TRANSPORT_MODE_KEY)) or "auto"
                    self.live_hub.jump_to(head)
                    self._positioned = True
                self.live_hub.notice_head(head)
            except Exception as exc:  # the database may be restarting; try again next tick
                health.failed(exc, "reading the stream head")
            else:
                health.succeeded()

    async def _refresh_presence(self) -> None:
        health = LoopHealth("presence_refresh", log)
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            try:
                for sub in self.live_hub.subscriptions():
                    await self.ephemeral.presence_touch(sub.user_id, str(sub.id), self.presence_ttl)
            except Exception as exc:  # Redis away: sessions expire, users show offline
                health.failed(exc, "refreshing presence")
            else:
                health.succeeded()

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
        # Written to the sockets on the loop's next turn, not before the writer goes on: its
        # next batch is then committed (in the database's own thread) while this one goes out.
        # Callbacks run in the order they were scheduled, so batches still go out in commit
        # order, and before the acks of their sends (the writer resolves those after this).
        asyncio.get_running_loop().call_soon(self._deliver, envelopes)

    def _deliver(self, envelopes: list[Envelope]) -> None:
        try:
            self._send_now(envelopes)
        except Exception as exc:  # delivery is best-effort after commit; resume fills gaps
            log.error("delivering committed messages failed", exc_info=exc)

    async def publish(self, event: Event) -> None:
        await self._send([envelope_for(event)])

    async def _send(self, envelopes: list[Envelope]) -> None:
        self._send_now(envelopes)

    def _send_now(self, envelopes: list[Envelope]) -> None:
        """Deliver on this node now; hand to the bus publisher without waiting for Redis.

        The group-commit writer calls this between batches, so a slow or hanging Redis must not
        hold up the next commit. If the outbox overflows, the oldest batches are dropped: other
        nodes read lost messages from the database (head polling), the rest is ephemeral.
        """
        if not envelopes:
            return
        if self.hub is None:
            # Not serving (the CLI builds the services without starting them): there is no one
            # to tell here; the nodes find the change in the database (revocations included).
            return
        self.live_hub.ingest(envelopes)
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
        self._outbox.append(envelopes)
        self._outbox_ready.set()

    async def _publish_outbox(self) -> None:
        health = LoopHealth("bus_publish", log)
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            try:
                await self._flush_outbox()
            except Exception as exc:  # other nodes still catch up from the database head
                health.failed(exc, "publishing to the bus")
            else:
                health.succeeded()

    async def _flush_outbox(self) -> None:
        batch: list[Envelope] = []
        while self._outbox:
            batch += self._outbox.popleft()
        if batch:
            await self.bus.publish(batch)

    # -- authentication --------------------------------------------------------------------------

    async def issue_ticket(self, credential: Credential) -> str:
        """A single-use ticket standing for this credential (its streams close with the token)."""
        ticket = "tk_" + secrets.token_urlsafe(24)
        expires = credential.expires_at.timestamp() if credential.expires_at else ""
        holder = f"{credential.user.id}:{credential.token_id}:{expires}"
        await self.ephemeral.put_ticket(ticket, holder, TICKET_TTL_SECONDS)
        return ticket

    async def authenticate(self, *, token: str | None, ticket: str | None) -> Credential:
        """A stream's user and token, from a bearer token or a single-use ticket."""
        if token:
            return await self.identity.access_credential(token)
        if ticket:
            holder = await self.ephemeral.take_ticket(ticket)
            credential = await self._ticket_credential(holder) if holder else None
            if credential is None:
                raise Unauthenticated(
                    "the ticket is unknown, used or expired; get a new one from "
                    "POST /v1/stream/ticket",
                    ErrorCode.INVALID_CREDENTIALS,
                )
            return credential
        raise Unauthenticated("send 'Authorization: Bearer <token>' or '?ticket='")

    async def _ticket_credential(self, holder: str) -> Credential | None:
        try:
            user_part, token_part, expires = holder.split(":")
            user_id, token_id = int(user_part), int(token_part)
            expires_at = datetime.fromtimestamp(float(expires), UTC) if expires else None
        except ValueError:  # not one this version made (a ticket from before an upgrade)
            return None
        user = await self.identity.users.get_user(user_id)
        if user is None or user.disabled or token_id in self._revoked:
            return None
        return Credential(user=user, token_id=token_id, expires_at=expires_at)

    # -- opening a stream ------------------------------------------------------------------------

    def check_transport_allowed(self, transport: Transport) -> None:
        if transport == "ws" and self.mode == "sse_only":
            raise Forbidden(
                "WebSocket is switched off on this deployment; use SSE (/v1/stream/sse)",
                ErrorCode.TRANSPORT_DISABLED,
            )

    def _reserve(self, user: User, client_ip: str) -> None:
        """Count one more stream of `user` from `client_ip`, or 429 past a cap (no await: the
        check and the count are one step, so concurrent opens cannot overshoot)."""
        if self._per_user.get(user.id, 0) >= self.settings.stream_max_per_user:
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
        self._per_user[user.id] = self._per_user.get(user.id, 0) + 1
        self._per_ip[client_ip] = self._per_ip.get(client_ip, 0) + 1

    def _release(self, user_id: int, client_ip: str) -> None:
        _decrement(self._per_user, user_id)
        _decrement(self._per_ip, client_ip)

    async def open(
        self,
        who: User | Credential,
        *,
        cursor: str | None,
        transport: Transport,
        client_ip: str = "",
        holder: str | None = None,
    ) -> StreamSession:
        """Subscribe the user, then collect what they missed since `cursor` (if any).

        Subscribing first and reading the backlog up to the subscription's start position
        afterwards leaves no window in which an event could fall between the two. The caps
        (PARLEY_STREAM_MAX_PER_USER / _PER_IP) count every transport, long-poll included.

        A long poll by `holder` (its credential) with the cursor its previous poll returned
        takes that poll's parked subscription instead: what was queued in it since is exactly
        what follows the cursor, so there is nothing to read from the database.
        """
        credential, user = (who, who.user) if isinstance(who, Credential) else (None, who)
        try:
            if self.admit is not None:
                self.admit(user)  # maintenance mode
            self.check_transport_allowed(transport)
            after = parse_cursor(cursor)
            if self.timeline.guard is not None:
                self.timeline.guard.check_may_connect(user)  # a deployment-wide ban
        except BaseException:
            # Refused now (maintenance, a ban): no earlier poll's subscription serves them later.
            self._drop_parked_of(user.id)
            raise
        parked: StreamSession | None = None
        if transport == "poll" and holder is not None and after is not None:
            parked = self._unpark((user.id, holder, after))
        try:
            self._reserve(user, client_ip)
        except BaseException:
            if parked is not None:
                self.live_hub.unsubscribe(parked.sub)
            raise
        if parked is not None:
            if self._may_resume(parked, credential, after):
                return self._resume_parked(parked, credential, client_ip)
            self.live_hub.unsubscribe(parked.sub)
        hub = self.live_hub
        sub: Subscription | None = None
        try:
            conversation_ids = await self.store.list_conversation_ids(user.id)
            sub = hub.subscribe(user.id, conversation_ids)
            start = sub.min_pos
            backlog: list[Envelope] = []
            if after is not None:
                backlog = await self._backlog(user, sub, after, start, transport)
        except BaseException:
            if sub is not None:
                hub.unsubscribe(sub)
            self._release(user.id, client_ip)
            raise
        if after is not None and after > start:
            sub.min_pos = after  # the client heard of positions this node's hub has not reached
        # A long-poll with a cursor is the same client polling again: greeting it every time
        # would end each poll at once.
        if transport != "poll" or after is None:
            backlog += await self._greetings(user)
        session = StreamSession(
            user=user,
            transport=transport,
            sub=sub,
            hub=hub,
            hello=HelloEvent(cursor="0", transport=transport, mode=self.mode, resumed=0),
            backlog=backlog,
            token_id=credential.token_id if credential else None,
            expires_at=credential.expires_at if credential else None,
            client_ip=client_ip,
        )
        session.hello = HelloEvent(
            cursor=str(max(session.cursor, after or 0)),
            transport=transport,
            mode=self.mode,
            resumed=sum(1 for e in backlog if e.type == "message"),
        )
        self._sessions[session.id] = session
        if session.token_id is not None and session.token_id in self._revoked:
            self._end(session, "the token was revoked")  # revoked while this stream opened
        metrics.STREAM_OPENS.labels(transport).inc()
        if transport != "poll":
            metrics.STREAM_CONNECTIONS.labels(transport).inc()
            await self._presence_online(user, session, conversation_ids)
        return session

    # -- parked long polls ----------------------------------------------------------------------

    async def finish_poll(self, session: StreamSession, *, holder: str | None, cursor: int) -> None:
        """End a long poll that returned `cursor`: park its subscription for `holder`'s next
        poll with that cursor (PARLEY_POLL_PARK_SECONDS), or close it.

        Only a subscription whose queue starts right after `cursor` is parked (the cursor is
        the session's own), and nothing awaits between the poll's last take and this, so every
        event past the cursor is either in the answer or queued in the parked subscription.
        """
        if (
            holder is None
            or self.settings.poll_park_seconds <= 0
            or self._draining
            or session.sub.closed
            or session.sub.overflowed
            or cursor != session.cursor
            or session.id not in self._sessions
        ):
            await self.close(session)
            return
        del self._sessions[session.id]
        self._release(session.user.id, session.client_ip)  # a parked one is not an open stream
        key = (session.user.id, holder, cursor)
        self._unpark_and_drop(key)  # the same client's poll that returned the same cursor
        mine = self._parked_by_user.setdefault(session.user.id, {})
        while len(mine) >= PARKED_PER_USER:
            self._unpark_and_drop(next(iter(mine)))
            mine = self._parked_by_user.setdefault(session.user.id, {})
        until = time.monotonic() + self.settings.poll_park_seconds
        self._parked[key] = _Parked(session=session, until=until)
        mine[key] = None

    def _unpark(self, key: ParkKey) -> StreamSession | None:
        parked = self._parked.pop(key, None)
        if parked is None:
            return None
        mine = self._parked_by_user.get(key[0], {})
        mine.pop(key, None)
        if not mine:
            self._parked_by_user.pop(key[0], None)
        return parked.session

    def _unpark_and_drop(self, key: ParkKey) -> None:
        session = self._unpark(key)
        if session is not None and self.hub is not None:
            self.hub.unsubscribe(session.sub)

    def _drop_parked(self, which: Callable[[StreamSession], bool]) -> None:
        """Unsubscribe the parked sessions `which` selects: their client opens afresh."""
        for key, parked in list(self._parked.items()):
            if which(parked.session):
                self._unpark_and_drop(key)

    def _drop_parked_of(
        self, user_id: int, which: Callable[[StreamSession], bool] = lambda session: True
    ) -> None:
        for key in list(self._parked_by_user.get(user_id, ())):
            if which(self._parked[key].session):
                self._unpark_and_drop(key)

    def _sweep_parked(self) -> None:
        """Drop parked sessions no poll came back for in time (oldest first: in park order)."""
        now = time.monotonic()
        for key, parked in list(self._parked.items()):
            if parked.until > now:
                break
            self._unpark_and_drop(key)

    def _may_resume(
        self, parked: StreamSession, credential: Credential | None, cursor: int
    ) -> bool:
        sub = parked.sub
        if sub.closed or sub.overflowed or parked.hub is not self.hub:
            return False  # ended (revoked, shut down) or cut loose: resume from the database
        if (
            self.live_hub.processed - cursor > self.settings.resume_window_events
            or sub.count_queued(_is_positioned) > self.settings.resume_max_messages
        ):
            # As far behind as a resume may go, and further: the normal open answers it as it
            # would any resume (ERR_RESYNC_RANGE_UNAVAILABLE, then the client loads full state).
            return False
        if sub.any_queued(_is_reconnect):
            return False  # told to go (maintenance, a ban): open afresh, through every check
        if sub.any_queued(_is_message_change):
            # A client that was away gets changes as the messages are now (the resume's
            # backlog): an edit queued here may show text its author has unsent since.
            return False
        token_id = credential.token_id if credential else None
        return token_id is None or token_id not in self._revoked

    def _resume_parked(
        self, parked: StreamSession, credential: Credential | None, client_ip: str
    ) -> StreamSession:
        """A poll's session on the parked subscription (counted against the caps already)."""
        parked.sub.forget_left()
        session = StreamSession(
            user=parked.user,
            transport="poll",
            sub=parked.sub,
            hub=parked.hub,
            hello=HelloEvent(
                cursor=str(parked.cursor), transport="poll", mode=self.mode, resumed=0
            ),
            backlog=[],
            token_id=credential.token_id if credential else None,
            expires_at=credential.expires_at if credential else None,
            client_ip=client_ip,
        )
        self._sessions[session.id] = session
        metrics.STREAM_OPENS.labels("poll").inc()
        metrics.STREAM_POLL_PARKED.inc()
        return session

    async def _greetings(self, user: User) -> list[Envelope]:
        greeting: list[Envelope] = []
        for greeter in self.greeters:
            try:
                greeting += [envelope_for(event) for event in await greeter(user)]
            except Exception as exc:  # a feature's greeting must not keep the stream closed
                log.warning("greeting a new stream failed: %s", exc)
        return greeting

    async def close(self, session: StreamSession) -> None:
        self.live_hub.unsubscribe(session.sub)
        if self._sessions.pop(session.id, None) is None:
            return  # closed already
        self._release(session.user.id, session.client_ip)
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

    # -- revocation ------------------------------------------------------------------------------

    def _on_revoked(self, event: CredentialsRevokedEvent) -> None:
        """Close this node's streams opened with the revoked tokens (or all of the user's)."""
        now = time.monotonic()
        for token_id in event.token_ids:
            self._revoked[token_id] = now
        self._drop_parked_of(
            event.user_id,
            lambda session: event.all_streams or session.token_id in event.token_ids,
        )
        for session in list(self._sessions.values()):
            if session.user.id != event.user_id:
                continue
            if event.all_streams or session.token_id in event.token_ids:
                self._end(session, event.reason)

    def _end(self, session: StreamSession, reason: str) -> None:
        """Tell the stream why and end it; its transport closes (WS 4001) and cleans up."""
        if session.sub.closed:
            return
        metrics.STREAMS_REVOKED.inc()
        session.sub.push(envelope_for(ControlEvent(op="revoked", reason=reason)))
        session.sub.close()

    async def _recheck_credentials(self) -> None:
        """Catch what the bus lost (and the CLI's revocations): tokens revoked since the last
        look, and tokens that expired, end their streams."""
        since = datetime.now(UTC)
        while True:
            await asyncio.sleep(self.settings.stream_auth_recheck_seconds)
            now = datetime.now(UTC)
            try:
                # Overlap the windows a little: node clocks differ, closing twice is harmless.
                revoked = await self.identity.tokens.list_revoked_since(since - _CLOCK_SLACK)
            except Exception as exc:  # the database may be restarting; look again next time
                log.warning("reading revoked tokens failed: %s", exc)
                continue
            since = now
            by_user: dict[int, list[int]] = {}
            for token_id, user_id in revoked:
                by_user.setdefault(user_id, []).append(token_id)
            for user_id, token_ids in by_user.items():
                self._on_revoked(
                    CredentialsRevokedEvent(
                        user_id=user_id, token_ids=token_ids, reason="the token was revoked"
                    )
                )
            for session in list(self._sessions.values()):
                if session.expires_at is not None and session.expires_at <= now:
                    self._end(session, "the token expired")
            self._drop_parked(partial(_expired_by, now))
            cutoff = time.monotonic() - REVOKED_MEMORY_SECONDS
            self._revoked = {k: at for k, at in self._revoked.items() if at > cutoff}

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
        if await self.rates.within("resume", str(user.id)):
            return
        metrics.RESYNC_ERRORS.labels(transport, ErrorCode.RESYNC_THROTTLED).inc()
        raise await self.rates.refusal(
            "resume",
            str(user.id),
            f"too many resumes (limit {self.settings.resume_rate}); retry later",
            ErrorCode.RESYNC_THROTTLED,
        )

    async def _presence_online(
        self, user: User, session: StreamSession, conversation_ids: list[int]
    ) -> None:
        try:
            if await self.ephemeral.presence_touch(user.id, str(session.sub.id), self.presence_ttl):
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

    def local_user_ids(self) -> set[int]:
        """Users with a stream open on this node."""
        return {sub.user_id for sub in self.live_hub.subscriptions()}

    def tell_local(self, event: Event, user_ids: set[int] | None = None) -> None:
        """Push `event` to this node's streams (of `user_ids`, or all) without the bus: for
        state each node reads for itself (maintenance mode), so every client hears it once."""
        envelope = envelope_for(event)
        for sub in self.live_hub.subscriptions():
            if user_ids is None or sub.user_id in user_ids:
                sub.push(envelope)

    def _on_control(self, envelope: Envelope) -> bool:
        """Broadcasts this node acts on; True for those no connection should see."""
        if envelope.type == "credentials.revoked":
            self._on_revoked(CredentialsRevokedEvent.model_validate_json(envelope.data))
            return True
        listener = self.node_listeners.get(envelope.type)
        if listener is not None:
            listener(envelope)
            return True
        if envelope.type == "control" and '"op":"transport"' in envelope.data:
            self.mode = "sse_only" if '"mode":"sse_only"' in envelope.data else "auto"
        return False

    async def do_typing(self, actor: User, conversation_id: int) -> None:
        await self.timeline.cached_access(actor, conversation_id)  # membership only
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

    async def presence_for(self, actor: User, user_ids: list[int]) -> set[int]:
        """Which of these users are online, as `actor` may know it: themselves and the people
        they share a conversation with. Anyone else reads as offline, existing or not."""
        visible = await self.store.list_co_members(actor.id, user_ids)
        visible.add(actor.id)
        return await self.online([uid for uid in user_ids if uid in visible])

    async def check_report_rate(self, user: User) -> None:
        """429 past PARLEY_RELEASE_REPORT_RATE_PER_USER reports from one user."""
        await self.rates.hit(
            "report",
            str(user.id),
            f"too many reports (limit {self.settings.release_report_rate_per_user}); "
            "send counters less often",
        )

    def record_report(
        self,
        transport: Transport,
        counters: dict[str, int],
        write_receipt_ms: Iterable[float],
        *,
        sender: ReportSender | None = None,
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
        if self.on_report is not None and sender is not None:
            self.on_report(sender, transport, dict(counters), write_receipt_ms)


K = TypeVar("K")


def _decrement(counts: dict[K, int], key: K) -> None:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _is_positioned(envelope: Envelope) -> bool:
    return envelope.pos is not None


def _is_message_change(envelope: Envelope) -> bool:
    return envelope.type == "message.updated"


def _is_reconnect(envelope: Envelope) -> bool:
    return envelope.type == "control" and '"op":"reconnect"' in envelope.data


def _expired_by(now: datetime, session: StreamSession) -> bool:
    return session.expires_at is not None and session.expires_at <= now


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 16:
        raise BadInput("cursor must be the decimal position a previous event gave you")
    return int(cursor)
