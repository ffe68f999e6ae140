"""One contract for the twins: MemoryEphemeral and RedisEphemeral behave alike, and RedisBus
carries a node's batches to the other nodes (never back to itself), also across a Redis restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis as sync_redis

from parley.bus.redis import RedisBus
from parley.core.errors import Unavailable
from parley.realtime.envelope import Envelope
from parley.realtime.ephemeral import Ephemeral, MemoryEphemeral, RedisEphemeral
from tests.support.private_services import PrivateRedis
from tests.support.servers import free_port

# Long enough for Redis' millisecond expiry to be unambiguous, short enough to wait out.
SHORT_TTL = 0.2


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = sync_redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def ephemeral(request: pytest.FixtureRequest) -> AsyncIterator[Ephemeral]:
    store: Ephemeral
    if request.param == "memory":
        store = MemoryEphemeral()
    else:
        url: str = request.getfixturevalue("redis_url")
        store = RedisEphemeral(url, prefix=request.getfixturevalue("redis_prefix"))
    yield store
    await store.close()


async def _expire() -> None:
    await asyncio.sleep(SHORT_TTL * 2)


# -- tickets -------------------------------------------------------------------------------------


async def test_a_ticket_names_its_user_once(ephemeral: Ephemeral) -> None:
    await ephemeral.put_ticket("tk-1", "42", 60)

    assert await ephemeral.take_ticket("tk-1") == "42"
    assert await ephemeral.take_ticket("tk-1") is None


async def test_an_unknown_ticket_names_no_one(ephemeral: Ephemeral) -> None:
    assert await ephemeral.take_ticket("tk-never-issued") is None


async def test_an_expired_ticket_names_no_one(ephemeral: Ephemeral) -> None:
    await ephemeral.put_ticket("tk-2", "7", SHORT_TTL)
    await ephemeral.put_ticket("tk-3", "8", 60)

    await _expire()

    assert await ephemeral.take_ticket("tk-2") is None
    assert await ephemeral.take_ticket("tk-3") == "8"


async def test_concurrent_takes_of_one_ticket_succeed_once(ephemeral: Ephemeral) -> None:
    await ephemeral.put_ticket("tk-4", "5", 60)

    taken = await asyncio.gather(*(ephemeral.take_ticket("tk-4") for _ in range(10)))

    assert sorted(taken, key=lambda v: v is None) == ["5"] + [None] * 9


# -- one-time values (sign-in states, login codes) -------------------------------------------------


async def test_a_one_time_value_is_taken_once(ephemeral: Ephemeral) -> None:
    await ephemeral.put_once("sso:abc", '{"provider": "corp"}', 60)

    assert await ephemeral.take_once("sso:abc") == '{"provider": "corp"}'
    assert await ephemeral.take_once("sso:abc") is None
    assert await ephemeral.take_once("sso:never-put") is None


async def test_an_expired_one_time_value_is_gone(ephemeral: Ephemeral) -> None:
    await ephemeral.put_once("short", "x", SHORT_TTL)
    await ephemeral.put_once("long", "y", 60)

    await _expire()

    assert await ephemeral.take_once("short") is None
    assert await ephemeral.take_once("long") == "y"


async def test_concurrent_takes_of_one_value_succeed_once(ephemeral: Ephemeral) -> None:
    await ephemeral.put_once("race", "v", 60)

    taken = await asyncio.gather(*(ephemeral.take_once("race") for _ in range(10)))

    assert taken.count("v") == 1 and taken.count(None) == 9


# -- claims (SET NX) -------------------------------------------------------------------------------


async def test_a_claim_is_granted_once_until_it_expires(ephemeral: Ephemeral) -> None:
    assert await ephemeral.claim("typing:1:2", SHORT_TTL) is True
    assert await ephemeral.claim("typing:1:2", SHORT_TTL) is False
    assert await ephemeral.claim("typing:1:3", SHORT_TTL) is True

    await _expire()

    assert await ephemeral.claim("typing:1:2", SHORT_TTL) is True


async def test_concurrent_claims_of_one_key_grant_one(ephemeral: Ephemeral) -> None:
    granted = await asyncio.gather(*(ephemeral.claim("k", 60) for _ in range(10)))

    assert granted.count(True) == 1


# -- presence --------------------------------------------------------------------------------------


async def test_presence_reports_coming_online_only_for_the_first_session(
    ephemeral: Ephemeral,
) -> None:
    assert await ephemeral.presence_touch(1, "s1", 60) is True
    assert await ephemeral.presence_touch(1, "s2", 60) is False
    assert await ephemeral.presence_touch(1, "s1", 60) is False

    assert await ephemeral.online([1, 2]) == {1}


async def test_presence_reports_going_offline_only_with_the_last_session(
    ephemeral: Ephemeral,
) -> None:
    await ephemeral.presence_touch(1, "s1", 60)
    await ephemeral.presence_touch(1, "s2", 60)

    assert await ephemeral.presence_leave(1, "s1") is False
    assert await ephemeral.online([1]) == {1}
    assert await ephemeral.presence_leave(1, "s2") is True
    assert await ephemeral.online([1]) == set()


async def test_leaving_a_session_never_seen_leaves_the_user_offline(
    ephemeral: Ephemeral,
) -> None:
    assert await ephemeral.presence_leave(3, "ghost") is True
    assert await ephemeral.online([3]) == set()


async def test_a_session_not_touched_within_its_ttl_goes_offline(ephemeral: Ephemeral) -> None:
    await ephemeral.presence_touch(1, "short", SHORT_TTL)
    await ephemeral.presence_touch(2, "long", 60)

    await _expire()

    assert await ephemeral.online([1, 2]) == {2}
    assert await ephemeral.presence_touch(1, "short", 60) is True


async def test_online_of_no_one_is_empty(ephemeral: Ephemeral) -> None:
    assert await ephemeral.online([]) == set()


# -- RedisBus between two nodes ------------------------------------------------------------------


class Heard:
    """What one node's bus delivered, with a way to wait for it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._changed = asyncio.Event()

    def deliver(self, envelopes: list[Envelope]) -> None:
        self.envelopes.extend(envelopes)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    @property
    def data(self) -> list[str]:
        return [e.data for e in self.envelopes]


async def _until_healthy(*buses: RedisBus) -> None:
    async with asyncio.timeout(10):
        while not all(bus.healthy for bus in buses):
            await asyncio.sleep(0.02)


@pytest.mark.redis
async def test_redis_bus_carries_a_batch_to_the_other_node_but_not_back(
    redis_url: str, redis_prefix: str
) -> None:
    node_a = RedisBus(redis_url, channel=f"{redis_prefix}events")
    node_b = RedisBus(redis_url, channel=f"{redis_prefix}events")
    heard_a, heard_b = Heard(), Heard()
    await node_a.start(heard_a.deliver)
    await node_b.start(heard_b.deliver)
    try:
        await _until_healthy(node_a, node_b)
        batch = [
            Envelope("message", '{"n":1}', pos=1, conversation_ids=(4,), committed_at=1.5),
            Envelope("control", '{"n":2}', broadcast=True),
            Envelope("presence", '{"n":3}', conversation_ids=(4, 5), user_ids=(9,)),
        ]

        await node_a.publish(batch)
        await heard_b.until(lambda: len(heard_b.envelopes) == 3)
        # Redis delivers one channel's messages in publish order, so once A hears B's later
        # batch it would already have heard its own, had it been delivered to itself.
        await node_b.publish([Envelope("typing", '{"n":4}', conversation_ids=(4,))])
        await heard_a.until(lambda: len(heard_a.envelopes) >= 1)
    finally:
        await node_a.stop()
        await node_b.stop()

    assert node_a.node_id != node_b.node_id
    assert [e.to_wire() for e in heard_b.envelopes] == [e.to_wire() for e in batch]
    assert heard_a.data == ['{"n":4}']
    assert heard_b.data == ['{"n":1}', '{"n":2}', '{"n":3}']


@pytest.mark.redis
async def test_redis_buses_with_different_prefixes_do_not_hear_each_other(
    redis_url: str, redis_prefix: str
) -> None:
    ours = RedisBus(redis_url, channel=f"{redis_prefix}events")
    theirs = RedisBus(redis_url, channel=f"{redis_prefix}other:events")
    listener = RedisBus(redis_url, channel=f"{redis_prefix}events")
    heard_ours, heard_theirs, heard_listener = Heard(), Heard(), Heard()
    await ours.start(heard_ours.deliver)
    await theirs.start(heard_theirs.deliver)
    await listener.start(heard_listener.deliver)
    try:
        await _until_healthy(ours, theirs, listener)
        await theirs.publish([Envelope("typing", '{"from":"theirs"}', conversation_ids=(1,))])
        await ours.publish([Envelope("typing", '{"from":"ours"}', conversation_ids=(1,))])
        await heard_listener.until(lambda: '{"from":"ours"}' in heard_listener.data)
    finally:
        for bus in (ours, theirs, listener):
            await bus.stop()

    assert heard_listener.data == ['{"from":"ours"}']
    assert heard_theirs.data == []


# -- Redis outages ---------------------------------------------------------------------------------


async def test_redis_ephemeral_answers_unavailable_when_redis_is_unreachable() -> None:
    store = RedisEphemeral(f"redis://127.0.0.1:{free_port()}/0")
    try:
        for attempt in (
            store.put_ticket("tk", "1", 60),
            store.take_ticket("tk"),
            store.claim("k", 1),
            store.presence_touch(1, "s", 60),
            store.presence_leave(1, "s"),
            store.online([1]),
        ):
            with pytest.raises(Unavailable):
                await attempt
    finally:
        await store.close()


async def test_redis_bus_heals_after_redis_restarts(private_redis: PrivateRedis) -> None:
    sender = RedisBus(private_redis.url, channel="events")
    receiver = RedisBus(private_redis.url, channel="events")
    heard = Heard()
    await sender.start(lambda envelopes: None)
    await receiver.start(heard.deliver)
    try:
        await _until_healthy(sender, receiver)
        await sender.publish([Envelope("typing", '{"n":"before"}')])
        await heard.until(lambda: len(heard.envelopes) == 1)

        await asyncio.to_thread(private_redis.stop)  # SIGTERM: an operator's restart
        async with asyncio.timeout(10):
            while sender.healthy:
                await asyncio.sleep(0.02)
        await sender.publish([Envelope("typing", '{"n":"lost"}')])
        await asyncio.to_thread(private_redis.start)
        await _until_healthy(sender, receiver)
        # The sender's pooled connection predates the restart: the first publish must not be lost.
        await sender.publish([Envelope("typing", '{"n":"after"}')])
        await heard.until(lambda: len(heard.envelopes) == 2)
    finally:
        await sender.stop()
        await receiver.stop()

    assert heard.data == ['{"n":"before"}', '{"n":"after"}']
    assert sender.healthy and receiver.healthy
