"""Named rate limits (`limits` strings such as "10/minute"), each counted per key.

Shared by every node when the storage is Redis. If that storage fails, each node counts on its
own meanwhile (a limit that fails open would be no limit while Redis is down).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from parley.core.errors import ErrorCode, RateLimited

log = logging.getLogger(__name__)


def limiter_storage_for(redis_url: str, prefix: str) -> Storage:
    """Redis-backed counters when the deployment has Redis, else this process's memory."""
    if redis_url:
        return RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            key_prefix=f"{prefix}limits",
        )
    return MemoryStorage()


class RateLimits:
    """`hit(name, key)` counts one more and raises 429 (with Retry-After) past the rate.

    `rates` maps a name to a `limits` string; an empty string switches that limit off.
    """

    def __init__(
        self,
        namespace: str,
        rates: dict[str, str],
        storage: Storage | None = None,
        *,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._rates: dict[str, RateLimitItem] = {
            name: parse(rate) for name, rate in rates.items() if rate
        }
        self._on_refused = on_refused

    def rate(self, name: str) -> RateLimitItem | None:
        return self._rates.get(name)

    async def within(self, name: str, key: str) -> bool:
        """Count one more against `name`; False once past it (the caller decides what then)."""
        rate = self._rates.get(name)
        if rate is None:
            return True
        try:
            return await self._limiter.hit(rate, self.namespace, name, key)
        except Exception as exc:  # the shared store (Redis) is down: count on this node
            log.warning("shared rate limit %s unavailable; counting on this node: %s", name, exc)
            return await self._local.hit(rate, self.namespace, name, key)

    async def hit(self, name: str, key: str, message: str, code: ErrorCode | None = None) -> None:
        """Count one more; past the rate raise `RateLimited(message)` with the wait left."""
        if await self.within(name, key):
            return
        if self._on_refused is not None:
            self._on_refused(name)
        raise await self.refusal(name, key, message, code)

    async def refusal(
        self, name: str, key: str, message: str, code: ErrorCode | None = None
    ) -> RateLimited:
        """The 429 to raise for `name`, with how long until one more is allowed."""
        return RateLimited(
            message, code or ErrorCode.RATE_LIMITED, retry_after=await self.retry_after(name, key)
        )

    async def retry_after(self, name: str, key: str) -> float:
        rate = self._rates[name]
        try:
            stats = await self._limiter.get_window_stats(rate, self.namespace, name, key)
        except Exception:
            stats = await self._local.get_window_stats(rate, self.namespace, name, key)
        return max(1.0, stats.reset_time - time.time())
