"""Short-lived shared state: stream tickets, one-time values, presence and typing, each with a TTL.

Twins behind one protocol: `MemoryEphemeral` (one process) and `RedisEphemeral` (many nodes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from parley.core.errors import Unavailable


class Ephemeral(Protocol):
    async def put_ticket(self, ticket: str, holder: str, ttl: float) -> None:
        """Keep `holder` (who the ticket stands for, opaque here) under `ticket` for `ttl` s."""
        ...

    async def take_ticket(self, ticket: str) -> str | None:
        """The ticket's holder, once: a second take of the same ticket returns None."""
        ...

    async def put_once(self, key: str, value: str, ttl: float) -> None:
        """Keep `value` under `key` for `ttl` s, for one `take_once` (sign-in states, codes)."""
        ...

    async def take_once(self, key: str) -> str | None:
        """The value, once: a second take (or one after the TTL) returns None."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """True if `key` was free (and is now held for `ttl` s)."""
        ...

    async def presence_touch(self, user_id: int, session: str, ttl: float) -> bool:
        """Mark a session online; True if the user was offline before."""
        ...

    async def presence_leave(self, user_id: int, session: str) -> bool:
        """Drop a session; True if the user has no live session left."""
        ...

    async def online(self, user_ids: list[int]) -> set[int]: ...

    async def close(self) -> None: ...


class MemoryEphemeral:
    def __init__(self) -> None:
        self._tickets: dict[str, tuple[str, float]] = {}
        self._once: dict[str, tuple[str, float]] = {}
        self._claims: dict[str, float] = {}
        self._sessions: dict[int, dict[str, float]] = {}

    async def put_ticket(self, ticket: str, holder: str, ttl: float) -> None:
        now = time.monotonic()
        self._tickets = {k: v for k, v in self._tickets.items() if v[1] > now}
        self._tickets[ticket] = (holder, now + ttl)

    async def take_ticket(self, ticket: str) -> str | None:
        found = self._tickets.pop(ticket, None)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def put_once(self, key: str, value: str, ttl: float) -> None:
        now = time.monotonic()
        self._once = {k: v for k, v in self._once.items() if v[1] > now}
        self._once[key] = (value, now + ttl)

    async def take_once(self, key: str) -> str | None:
        found = self._once.pop(key, None)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def claim(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._claims.get(key, 0) > now:
            return False
        if len(self._claims) > 10_000:
            self._claims = {k: v for k, v in self._claims.items() if v > now}
        self._claims[key] = now + ttl
        return True

    def _live(self, user_id: int) -> dict[str, float]:
        now = time.monotonic()
        sessions = {k: v for k, v in self._sessions.get(user_id, {}).items() if v > now}
        self._sessions[user_id] = sessions
        return sessions

    async def presence_touch(self, user_id: int, session: str, ttl: float) -> bool:
        sessions = self._live(user_id)
        was_offline = not sessions
        sessions[session] = time.monotonic() + ttl
        return was_offline

    async def presence_leave(self, user_id: int, session: str) -> bool:
        sessions = self._live(user_id)
        sessions.pop(session, None)
        return not sessions

    async def online(self, user_ids: list[int]) -> set[int]:
        return {uid for uid in user_ids if self._live(uid)}

    async def close(self) -> None:
        return None


# Presence expiries are judged by Redis's clock (TIME), never a node's: a node whose clock runs
# ahead or behind must not keep users online too long or show them offline at once.
_PRESENCE_TOUCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.floor(tonumber(ARGV[2])) + 1)
return before
"""
_PRESENCE_LEAVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
_PRESENCE_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCOUNT', key, now, '+inf')
end
return counts
"""


class RedisEphemeral:
    """Keys: `{prefix}ticket:<t>` and `{prefix}once:<k>` (GETDEL), `{prefix}claim:<k>` (SET NX
    EX), and one sorted set per user, `{prefix}presence:<uid>`, of sessions scored by their expiry
    time on Redis's clock. Every TTL is Redis's, so no node's clock decides when a ticket, claim
    or session expires.

    Redis being unreachable raises `Unavailable` (a retryable 503), never a driver error."""

    def __init__(self, url: str, *, prefix: str = "parley:") -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._prefix = prefix
        self._touch = self._redis.register_script(_PRESENCE_TOUCH)
        self._leave = self._redis.register_script(_PRESENCE_LEAVE)
        self._count = self._redis.register_script(_PRESENCE_COUNT)

    async def put_ticket(self, ticket: str, holder: str, ttl: float) -> None:
        with _redis_errors():
            await self._redis.set(f"{self._prefix}ticket:{ticket}", holder, px=int(ttl * 1000))

    async def take_ticket(self, ticket: str) -> str | None:
        with _redis_errors():
            value = await self._redis.getdel(f"{self._prefix}ticket:{ticket}")
            return value.decode() if isinstance(value, bytes) else value

    async def put_once(self, key: str, value: str, ttl: float) -> None:
        with _redis_errors():
            await self._redis.set(f"{self._prefix}once:{key}", value, px=int(ttl * 1000))

    async def take_once(self, key: str) -> str | None:
        with _redis_errors():
            value = await self._redis.getdel(f"{self._prefix}once:{key}")
            return value.decode() if isinstance(value, bytes) else value

    async def claim(self, key: str, ttl: float) -> bool:
        with _redis_errors():
            return bool(
                await self._redis.set(f"{self._prefix}claim:{key}", 1, nx=True, px=int(ttl * 1000))
            )

    async def presence_touch(self, user_id: int, session: str, ttl: float) -> bool:
        with _redis_errors():
            key = f"{self._prefix}presence:{user_id}"
            before = await self._touch(keys=[key], args=[session, ttl])
            return int(before) == 0

    async def presence_leave(self, user_id: int, session: str) -> bool:
        with _redis_errors():
            left = await self._leave(keys=[f"{self._prefix}presence:{user_id}"], args=[session])
            return int(left) == 0

    async def online(self, user_ids: list[int]) -> set[int]:
        with _redis_errors():
            if not user_ids:
                return set()
            keys = [f"{self._prefix}presence:{uid}" for uid in user_ids]
            counts = await self._count(keys=keys)
            return {uid for uid, count in zip(user_ids, counts, strict=True) if count}

    async def close(self) -> None:
        await self._redis.aclose()


@contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis unreachable is a retryable 503, like a database outage."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable("short-lived state (Redis) is unavailable; retry shortly") from exc
