"""Hub: one per node; puts every event in front of the right local connections, in order.

Message events carry gapless stream positions (see `storage.messages`). The hub dispatches them
strictly in position order: one that arrives early (another node's publish overtook this one's,
or Redis lost one) waits in `pending` while the hub fetches the missing positions from the
database. So a subscription never sees a gap or a repeat, and a cursor — the last position a
client got — is safe to resume from on any node.

The hub knows nothing of HTTP or SQL: transports read subscriptions, the stream service feeds
envelopes and a `fetch_range` callable in.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from parley.background import LoopHealth
from parley.realtime.envelope import Envelope

log = logging.getLogger(__name__)

FetchRange = Callable[[int, int], Awaitable[list[Envelope]]]
_ids = itertools.count(1)


class Subscription:
    """One connection's view of the stream: a bounded queue of envelopes.

    A connection either waits for it (`wait`: SSE, long-poll) or, with one task per connection
    (WebSocket), sets `on_ready` and takes what is queued (`take`) when it is called.
    """

    __slots__ = (
        "_queue",
        "_ready",
        "closed",
        "conversation_ids",
        "id",
        "limit",
        "min_pos",
        "on_ready",
        "overflowed",
        "user_id",
    )

    def __init__(
        self, user_id: int, conversation_ids: set[int], *, min_pos: int, limit: int
    ) -> None:
        self.id = next(_ids)
        self.user_id = user_id
        self.conversation_ids = conversation_ids
        # Message positions at or below this were already delivered (or are the resume's job).
        self.min_pos = min_pos
        self.limit = limit
        self.overflowed = False
        self.closed = False
        # Called (synchronously, on the loop) whenever there is something new to take, an
        # overflow or a close.
        self.on_ready: Callable[[], None] | None = None
        self._queue: deque[Envelope] = deque()
        self._ready: asyncio.Event | None = None  # made by the first `wait`

    def push(self, envelope: Envelope) -> None:
        if self.closed or self.overflowed:
            return
        if envelope.pos is not None and envelope.pos <= self.min_pos:
            return
        if len(self._queue) >= self.limit:
            # A consumer this far behind would stall no one but itself; cut it loose and let it
            # resume from its cursor.
            self.overflowed = True
            self._queue.clear()
        else:
            self._queue.append(envelope)
        self._signal()

    def _signal(self) -> None:
        if self._ready is not None:
            self._ready.set()
        if self.on_ready is not None:
            self.on_ready()

    async def wait(
        self, timeout: float | None = None, *, most: int | None = None
    ) -> list[Envelope]:
        """Queued envelopes (at most `most`), waiting up to `timeout` s for the first (empty list
        on timeout). A streaming writer takes bounded slices, which keeps a slow connection's
        memory at the queue limit plus `most`; a long poll takes everything (its cursor says
        every queued event was handed out)."""
        if not self._queue and not self.overflowed and not self.closed:
            if self._ready is None:
                self._ready = asyncio.Event()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        return self.take(most)

    def take(self, most: int | None = None) -> list[Envelope]:
        """What is queued now (at most `most`), without waiting."""
        count = len(self._queue) if most is None else min(most, len(self._queue))
        drained = [self._queue.popleft() for _ in range(count)]
        if not self._queue and self._ready is not None:
            self._ready.clear()
        return drained

    def take_one(self) -> Envelope | None:
        """The next queued envelope, if any, without waiting."""
        if not self._queue:
            return None
        envelope = self._queue.popleft()
        if not self._queue and self._ready is not None:
            self._ready.clear()
        return envelope

    def any_queued(self, match: Callable[[Envelope], bool]) -> bool:
        """Whether an envelope waiting in the queue matches."""
        return any(match(envelope) for envelope in self._queue)

    def count_queued(self, match: Callable[[Envelope], bool]) -> int:
        """How many envelopes waiting in the queue match."""
        return sum(1 for envelope in self._queue if match(envelope))

    def forget_left(self) -> None:
        """Drop queued envelopes of conversations this subscription no longer follows (its user
        was removed while they waited), unless addressed to the user or to everyone: what a
        fresh subscription reading the backlog of its current conversations would get."""
        self._queue = deque(
            envelope
            for envelope in self._queue
            if envelope.broadcast
            or not envelope.conversation_ids
            or self.user_id in envelope.user_ids
            or not self.conversation_ids.isdisjoint(envelope.conversation_ids)
        )
        if not self._queue and self._ready is not None:
            self._ready.clear()

    @property
    def backlog(self) -> int:
        """Envelopes queued, not yet taken by the connection's writer."""
        return len(self._queue)

    def close(self) -> None:
        self.closed = True
        self._signal()


class Hub:
    def __init__(
        self,
        *,
        start_pos: int,
        fetch_range: FetchRange,
        queue_limit: int = 10_000,
        gap_wait: float = 0.25,
        on_control: Callable[[Envelope], bool] | None = None,
        on_dispatch: Callable[[Envelope], None] | None = None,
        on_membership: Callable[[int], None] | None = None,
    ) -> None:
        self.processed = start_pos
        self._fetch_range = fetch_range
        self._queue_limit = queue_limit
        self._gap_wait = gap_wait
        self._on_control = on_control
        self._on_dispatch = on_dispatch
        # Told the id of every conversation whose members changed (any node's change).
        self._on_membership = on_membership
        self._pending: dict[int, Envelope] = {}
        self._known_head = start_pos
        self._by_conversation: dict[int, set[Subscription]] = {}
        self._by_user: dict[int, set[Subscription]] = {}
        self._gap_task: asyncio.Task[None] | None = None
        self._closed = False
        self._gap_health = LoopHealth("hub_gap_fill", log)

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, user_id: int, conversation_ids: list[int]) -> Subscription:
        """A new subscription that gets every event after the hub's current position."""
        sub = Subscription(
            user_id, set(conversation_ids), min_pos=self.processed, limit=self._queue_limit
        )
        self._by_user.setdefault(user_id, set()).add(sub)
        for cid in sub.conversation_ids:
            self._by_conversation.setdefault(cid, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        _discard(self._by_user, sub.user_id, sub)
        for cid in sub.conversation_ids:
            _discard(self._by_conversation, cid, sub)

    def subscriptions(self) -> list[Subscription]:
        return [sub for subs in self._by_user.values() for sub in subs]

    def count_for_user(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def jump_to(self, position: int) -> None:
        """Start from `position` (the database was unreachable when the hub was made)."""
        self.processed = self._known_head = position
        self._pending = {pos: e for pos, e in self._pending.items() if pos > position}
        self._drain()

    # -- ingest ----------------------------------------------------------------------------------

    def ingest(self, envelopes: list[Envelope]) -> None:
        """Take envelopes from this node's commits or from the bus, in any order, repeats too."""
        for envelope in envelopes:
            if envelope.pos is None:
                self._dispatch(envelope)
            elif envelope.pos > self.processed:
                self._pending.setdefault(envelope.pos, envelope)
                self._known_head = max(self._known_head, envelope.pos)
        self._drain()

    def notice_head(self, head: int) -> None:
        """The database's head position; positions up to it exist and will be fetched if lost."""
        if head > self._known_head:
            self._known_head = head
            self._drain()

    def _drain(self) -> None:
        while (envelope := self._pending.pop(self.processed + 1, None)) is not None:
            self.processed += 1
            self._dispatch(envelope)
        gap = self._known_head > self.processed and not self._closed
        if gap and (self._gap_task is None or self._gap_task.done()):
            self._gap_task = asyncio.create_task(self._fill_gap(), name="hub-gap-fill")

    async def _fill_gap(self) -> None:
        """Wait briefly for late publishes; then read what is still missing from the database."""
        await asyncio.sleep(self._gap_wait)
        while self._known_head > self.processed and not self._closed:
            missing_from = self.processed
            upto = min(self._pending, default=self._known_head + 1) - 1
            try:
                fetched = await self._fetch_range(missing_from, upto)
            except Exception as exc:
                self._gap_health.failed(exc, f"reading positions ({missing_from}, {upto}]")
                await asyncio.sleep(1)
                continue
            self._gap_health.succeeded()
            if not fetched and self.processed == missing_from:
                await asyncio.sleep(self._gap_wait)  # not visible yet on this replica
            self.ingest(fetched)

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.broadcast:
            # The stream service's hook sees every broadcast first; True means it was for this
            # node only (a revocation), not for the connections.
            if self._on_control and self._on_control(envelope):
                return
            for sub in self.subscriptions():
                sub.push(envelope)
            return
        targets: set[Subscription] = set()
        if envelope.type == "conversation.updated":
            self._apply_membership(envelope)
        for cid in envelope.conversation_ids:
            targets.update(self._by_conversation.get(cid, ()))
        for user_id in envelope.user_ids:
            targets.update(self._by_user.get(user_id, ()))
        for sub in targets:
            sub.push(envelope)
        if self._on_dispatch and envelope.pos is not None:
            self._on_dispatch(envelope)

    def _apply_membership(self, envelope: Envelope) -> None:
        (cid,) = envelope.conversation_ids
        if self._on_membership is not None:
            self._on_membership(cid)
        members = set(json.loads(envelope.data)["member_ids"])
        for sub in list(self._by_conversation.get(cid, ())):
            if sub.user_id not in members:
                sub.conversation_ids.discard(cid)
                _discard(self._by_conversation, cid, sub)
        for user_id in members:
            for sub in self._by_user.get(user_id, ()):
                if cid not in sub.conversation_ids:
                    sub.conversation_ids.add(cid)
                    self._by_conversation.setdefault(cid, set()).add(sub)

    async def close(self) -> None:
        self._closed = True
        if self._gap_task:
            self._gap_task.cancel()
            await asyncio.gather(self._gap_task, return_exceptions=True)
        for sub in self.subscriptions():
            sub.close()


def _discard(index: dict[int, set[Subscription]], key: int, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


def age_seconds(envelope: Envelope) -> float:
    return max(0.0, time.time() - envelope.committed_at)
