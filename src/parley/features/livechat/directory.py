"""Directory: this node's copy of the live-chat configuration and of widget sessions.

Every widget request and every staff announcement needs the inbox, the branches and the admins;
every widget poll needs its session. They change rarely, so each node keeps them for
PARLEY_LIVECHAT_CACHE_SECONDS. A change made through the stores on a serving node drops this
node's copy at once and tells the other nodes on the bus (`livechat.changed`), which drop theirs
when it arrives; a change made elsewhere (the CLI) shows everywhere within the cache time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from parley.core.events import Event, LivechatChangedEvent
from parley.core.inboxes import Inbox, WidgetSession
from parley.core.livechat import Branch
from parley.core.models import User
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore

T = TypeVar("T")
Clock = Callable[[], float]
Publish = Callable[[Event], Awaitable[None]]

SESSIONS_KEPT = 20_000


class Kept(Generic[T]):
    """One value kept until `ttl` passes or `forget()`; a load that raced a forget is not kept."""

    def __init__(self, ttl: float, clock: Clock) -> None:
        self.ttl = ttl
        self.clock = clock
        self._value: T | None = None
        self._until = 0.0
        self._generation = 0

    async def get(self, load: Callable[[], Awaitable[T]]) -> T:
        if self._value is not None and self.clock() < self._until:
            return self._value
        generation = self._generation
        value = await load()
        if generation == self._generation:
            self._value, self._until = value, self.clock() + self.ttl
        return value

    def forget(self) -> None:
        self._value = None
        self._generation += 1


class Directory:
    def __init__(
        self,
        inboxes: InboxStore,
        livechat: LivechatStore,
        *,
        ttl: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.inbox_store = inboxes
        self.livechat_store = livechat
        self.ttl = ttl
        self.clock = clock
        self._inboxes: Kept[list[Inbox]] = Kept(ttl, clock)
        self._branches: Kept[list[Branch]] = Kept(ttl, clock)
        self._admins: Kept[list[User]] = Kept(ttl, clock)
        # token hash -> (session, visitor, kept until); the inbox comes from `_inboxes`.
        self._sessions: OrderedDict[str, tuple[WidgetSession, User, float]] = OrderedDict()
        self._session_generation = 0
        self.publish: Publish | None = None
        inboxes.on_change.append(self.changed)
        livechat.on_change.append(self.changed)

    # -- reading ---------------------------------------------------------------------------------

    async def list_inboxes(self) -> list[Inbox]:
        return list(await self._inboxes.get(self.inbox_store.list_inboxes))

    async def get_inbox(self, inbox_id: int) -> Inbox | None:
        inboxes = await self._inboxes.get(self.inbox_store.list_inboxes)
        return next((i for i in inboxes if i.id == inbox_id), None)

    async def find_inbox_by_token(self, widget_token: str) -> Inbox | None:
        inboxes = await self._inboxes.get(self.inbox_store.list_inboxes)
        return next((i for i in inboxes if i.widget_token == widget_token), None)

    async def list_branches(self) -> list[Branch]:
        return list(await self._branches.get(self.livechat_store.list_branches))

    async def get_branch(self, branch_id: int) -> Branch | None:
        return next((b for b in await self.list_branches() if b.id == branch_id), None)

    async def list_admins(self) -> list[User]:
        return list(await self._admins.get(self.livechat_store.list_admins))

    async def find_visit(self, token_hash: str) -> tuple[WidgetSession, Inbox, User] | None:
        """A widget session with its inbox and visitor, as `InboxStore.find_visit`."""
        kept = self._sessions.get(token_hash)
        if kept is not None and self.clock() < kept[2]:
            inbox = await self.get_inbox(kept[0].inbox_id)
            if inbox is not None:
                return kept[0], inbox, kept[1]
        generation = self._session_generation
        found = await self.inbox_store.find_visit(token_hash)
        if found is None:
            self._sessions.pop(token_hash, None)
            return None
        if generation == self._session_generation:
            session, _, visitor = found
            self._sessions[token_hash] = (session, visitor, self.clock() + self.ttl)
            self._sessions.move_to_end(token_hash)
            while len(self._sessions) > SESSIONS_KEPT:
                self._sessions.popitem(last=False)
        return found

    # -- changes ---------------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop everything kept (this node only)."""
        for kept in (self._inboxes, self._branches, self._admins):
            kept.forget()
        self._sessions.clear()
        self._session_generation += 1

    async def changed(self) -> None:
        """Something kept here changed: drop it here, and on the other nodes (bus)."""
        self.forget()
        if self.publish is not None:
            await self.publish(LivechatChangedEvent())

    def on_bus_event(self, _envelope: object) -> None:
        """Another node (or this one, echoed) changed the configuration."""
        self.forget()
