"""MembershipCache: this node's memory of who is a member of which conversation.

Every send checks its sender's membership; a repeated check answered from memory costs no
query. The cache only ever makes an answer *older*, so what it may hold is limited to what
callers can read stale without letting anyone do more than before:

- Only positive answers are kept (a "not a member" is always asked again), so a user who was
  just added is never refused for long, and removing is the only change that must reach it.
- Removals drop the conversation's entries: the store's hook on the node that made the change
  (before it is acknowledged), the `conversation.updated` envelope on every other node.
- An entry lives `ttl` seconds at most, for the envelope a bus may lose; `max_size` bounds
  memory (least recently used entries go first).
- A value read from the store before an invalidation may come back after it; `token()` and
  `put(..., token=)` drop such a value instead of caching what the invalidation removed.

The values are opaque here (the timeline keeps its `Access`): the caller decides which of
their fields are stable enough to be served from the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
Key = tuple[int, int]  # (conversation_id, user_id)


class MembershipCache(Generic[V]):
    def __init__(
        self,
        *,
        ttl: float,
        max_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, V]] = OrderedDict()
        # user ids with an entry, by conversation: a removal drops them without a full scan.
        self._by_conversation: dict[int, set[int]] = {}
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, conversation_id: int, user_id: int) -> V | None:
        """The value kept for this membership, or None (never cached, expired or dropped)."""
        key = (conversation_id, user_id)
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def token(self) -> int:
        """Take before reading the store; `put` with it caches nothing if anything was
        invalidated meanwhile (the value read may predate that change)."""
        return self._generation

    def put(self, conversation_id: int, user_id: int, value: V, *, token: int) -> None:
        if not self.enabled or token != self._generation:
            return
        key = (conversation_id, user_id)
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        self._by_conversation.setdefault(conversation_id, set()).add(user_id)
        while len(self._entries) > self.max_size:
            self._drop(next(iter(self._entries)))

    def invalidate_conversation(self, conversation_id: int) -> None:
        """Forget every membership of the conversation (its members changed)."""
        self._generation += 1
        for user_id in self._by_conversation.pop(conversation_id, ()):
            self._entries.pop((conversation_id, user_id), None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_conversation.clear()

    def _drop(self, key: Key) -> None:
        self._entries.pop(key, None)
        conversation_id, user_id = key
        users = self._by_conversation.get(conversation_id)
        if users is not None:
            users.discard(user_id)
            if not users:
                del self._by_conversation[conversation_id]
