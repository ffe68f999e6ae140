"""RedisBus: every node publishes its batches on one channel and hears everyone else's.

One PUBLISH per committed batch (not per message, not per recipient). While Redis is down,
publishes fail fast and are dropped: the other nodes' hubs notice the stream head moving
(they poll it) and read the missing messages from the database, so delivery catches up by itself.

A Redis that is paused rather than down (SIGSTOP, a frozen VM) keeps its sockets open and says
nothing: the listener pings it every `HEALTH_EVERY` seconds and, without a pong in
`PING_TIMEOUT`, reports itself unhealthy and resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

from parley.bus import Deliver
from parley.realtime.envelope import Envelope, decode_batch, encode_batch

log = logging.getLogger(__name__)

HEALTH_EVERY = 2.0
PING_TIMEOUT = 2.0


class RedisBus:
    def __init__(self, url: str, *, channel: str = "parley:events") -> None:
        self.node_id = uuid.uuid4().hex[:12]
        self.channel = channel
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._deliver: Deliver | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._publishing = True  # until a publish fails

    @property
    def healthy(self) -> bool:
        """Subscribed, and the last publish went through."""
        return self._listening and self._publishing

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._task = asyncio.create_task(self._listen(), name="redis-bus-listen")

    async def publish(self, envelopes: list[Envelope]) -> None:
        if not envelopes:
            return
        payload = encode_batch(self.node_id, envelopes)
        # While subscribed, Redis is up: a failure is most likely a pooled connection left from
        # before a Redis restart, which the failed attempt dropped; one more attempt reconnects.
        attempts = 2 if self._listening else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._client.publish(self.channel, payload)
            except (RedisError, OSError) as exc:
                if attempt < attempts:
                    continue
                if self._publishing:
                    log.warning(
                        "redis publish failed; other nodes will catch up from the database: %s",
                        exc,
                    )
                self._publishing = False
                return
            self._publishing = True
            return

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._listening = self._publishing = True  # Redis answers again
                log.info("redis bus subscribed to %s", self.channel)
                checked = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        node, envelopes = decode_batch(message["data"])
                        if node != self.node_id and self._deliver:
                            self._deliver(envelopes)
                    if time.monotonic() - checked >= HEALTH_EVERY:
                        await self._check_alive()
                        checked = time.monotonic()
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except (RedisError, OSError) as exc:
                if self._listening:
                    log.warning("redis bus connection lost; reconnecting: %s", exc)
                self._publishing = False
                self._listening = False
                await _close_quietly(pubsub)
                await asyncio.sleep(0.5)

    async def _check_alive(self) -> None:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self._client.ping()
        except TimeoutError:
            raise RedisError(f"no answer to PING within {PING_TIMEOUT} s") from None

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()


async def _close_quietly(pubsub: redis.client.PubSub) -> None:
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()
