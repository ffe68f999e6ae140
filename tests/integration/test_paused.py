"""A machine that is slow rather than dead: an app node, Redis and PostgreSQL each paused with
SIGSTOP, then resumed with SIGCONT, under real `parley serve` processes on loopback.

Clients log every send as ok / failed / unknown (tests/support/history.py) and the history is
checked afterwards: every acknowledged message stored exactly once with its acked seq, seqs
gapless, nothing stored that nobody sent. Every stream that stayed open, and every client that
failed over with its cursor, saw each message once, in order.

Redis and PostgreSQL here are private servers of the test's own: pausing the shared ones would
stall every other test. The app node's pause is 30 s (the issue's figure, 10x the presence TTL
these nodes use); the servers' pauses are 15 s, past every timeout that applies (Redis socket
5 s, PARLEY_DATABASE_TIMEOUT_SECONDS 3 s here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import PostgresDatabases
from tests.support.cluster import Cluster, Member, create_conversation, readiness, stored_messages
from tests.support.history import History
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.servers import ServerProcess
from tests.support.streams import WsReader, assert_in_order_once, eventually

NODE_PAUSE_SECONDS = 30
SERVER_PAUSE_SECONDS = 15
PRESENCE_TTL = "3"


@contextlib.asynccontextmanager
async def paused(node: ServerProcess) -> AsyncIterator[None]:
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.process.pid, signal.SIGCONT)


async def _make_cluster(database_url: str, redis_url: str, tmp_path: Path) -> Cluster:
    return Cluster(
        database_url=database_url,
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
        extra_env={
            "PARLEY_PRESENCE_TTL_SECONDS": PRESENCE_TTL,
            "PARLEY_DATABASE_TIMEOUT_SECONDS": "3",
        },
    )


async def _online(node: ServerProcess, member: Member, user_ids: list[int]) -> list[int]:
    async with httpx.AsyncClient(base_url=node.url, headers=member.headers, timeout=10) as http:
        response = await http.get("/v1/presence", params={"user_ids": ",".join(map(str, user_ids))})
    assert response.status_code == 200, response.text
    return list(response.json()["online"])


async def _alive(reader: WsReader, timeout: float = 2) -> bool:
    """What a client's keepalive does: a ping that gets no pong in time means a dead node."""
    assert reader._ws is not None
    try:
        pong = await reader._ws.ping()
        async with asyncio.timeout(timeout):
            await pong
    except (TimeoutError, ConnectionClosed):
        return False
    return True


# -- an app node ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_paused_node_others_serve_its_users_go_offline_and_its_clients_fail_over(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    cluster = await _make_cluster(await postgres_databases.fresh(), redis_url, tmp_path)
    try:
        node_a, node_b = await cluster.start(2)
        alice, bob, dave = [await cluster.add_user(n) for n in ("alice", "bob", "dave")]
        cid = await create_conversation(node_b, bob, alice, dave)
        alice_on_a = await WsReader(node_a.url, alice.token).opened()
        dave_on_a = await WsReader(node_a.url, dave.token).opened()  # never fails over
        bob_on_b = await WsReader(node_b.url, bob.token).opened()
        start = int(alice_on_a.hello["cursor"])
        history = History()
        for i in range(5):
            await history.send("bob", node_b.url, bob.token, cid, f"before-{i}")
        await alice_on_a.wait_for_messages(5)
        assert sorted(await _online(node_b, bob, [alice.id, dave.id])) == [alice.id, dave.id]

        async with paused(node_a):
            paused_at = time.monotonic()
            # A send caught on the frozen node: no answer (unknown) until the client gives up.
            stuck = asyncio.create_task(
                history.send("alice", node_a.url, alice.token, cid, "on-a", timeout=3)
            )
            for i in range(10):
                await history.send("bob", node_b.url, bob.token, cid, f"during-{i}")
            assert (await readiness(node_b))["http_status"] == 200
            # Presence is refreshed by the node holding the stream; frozen, it lets it lapse.
            await eventually(
                lambda: _online(node_b, bob, [alice.id, dave.id]),
                timeout=NODE_PAUSE_SECONDS,
                what="the paused node's users to show online",
            )
            await eventually(
                lambda: _not_any(_online(node_b, bob, [alice.id, dave.id])),
                timeout=NODE_PAUSE_SECONDS,
                what="the paused node's users to show offline",
            )
            assert time.monotonic() - paused_at < NODE_PAUSE_SECONDS
            await stuck
            # Alice's client: no pong, so it fails over to B with its cursor and retries.
            assert not await _alive(alice_on_a)
            await alice_on_a.close()  # a client drops the dead connection, then moves
            alice_on_b = await WsReader(node_b.url, alice.token, cursor=alice_on_a.cursor).opened()
            await history.settle("alice", node_b.url, alice.token, cid)
            for i in range(5):
                await history.send("alice", node_b.url, alice.token, cid, f"from-b-{i}")
            assert alice.id in await _online(node_b, bob, [alice.id])
            await asyncio.sleep(max(0.0, NODE_PAUSE_SECONDS - (time.monotonic() - paused_at)))

        # Resumed: the node catches up by itself and serves again.
        await eventually(lambda: _ready(node_a), timeout=30, what="node A ready again")
        for i in range(5):
            await history.send("bob", node_a.url, bob.token, cid, f"after-{i}")
        stored = await stored_messages(node_b, bob, cid)
        history.check(stored)
        assert history.outcomes()["ok"] == len(stored)
        total = len(stored)
        await dave_on_a.wait_for_messages(total, timeout=30)
        assert_in_order_once(dave_on_a.messages, after_pos=start)
        await alice_on_b.wait_for_messages(total - len(alice_on_a.messages), timeout=30)
        assert_in_order_once(alice_on_a.messages + alice_on_b.messages, after_pos=start)
        await bob_on_b.wait_for_messages(total)
        assert_in_order_once(bob_on_b.messages, after_pos=start)
        for reader in (alice_on_b, dave_on_a, bob_on_b):
            await reader.close()
    finally:
        await cluster.stop()


async def _not_any(probe: object) -> bool:
    return not await probe  # type: ignore[misc]


async def _ready(node: ServerProcess) -> bool:
    try:
        return (await readiness(node))["http_status"] == 200
    except httpx.HTTPError:
        return False


# -- Redis ---------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_paused_redis_sends_still_commit_delivery_falls_back_and_nothing_is_lost(
    postgres_databases: PostgresDatabases, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = await _make_cluster(await postgres_databases.fresh(), private_redis.url, tmp_path)
    try:
        node_a, node_b = await cluster.start(2)
        alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
        cid = await create_conversation(node_a, alice, bob)
        for node in (node_a, node_b):
            await eventually(lambda n=node: _status_is(n, "ok"), what="the bus to connect")
        alice_on_a = await WsReader(node_a.url, alice.token).opened()
        start = int(alice_on_a.hello["cursor"])
        history = History()
        for i in range(5):
            await history.send("bob", node_b.url, bob.token, cid, f"before-{i}")
        await alice_on_a.wait_for_messages(5)

        with private_redis.paused_for_a_while():
            paused_at = time.monotonic()
            for i in range(10):
                op = await history.send("bob", node_b.url, bob.token, cid, f"during-{i}")
                assert op.outcome == "ok", op  # the send path never waits for Redis
            # Delivery across nodes falls back to polling the database head.
            await alice_on_a.wait_for_messages(15, timeout=SERVER_PAUSE_SECONDS)
            for node in (node_a, node_b):
                await eventually(
                    lambda n=node: _status_is(n, "degraded"),
                    timeout=SERVER_PAUSE_SECONDS,
                    what="readyz: degraded",
                )
            # What needs Redis answers a retryable 503 in bounded time, not a hang or a 500.
            async with httpx.AsyncClient(
                base_url=node_a.url, headers=alice.headers, timeout=15
            ) as http:
                ticket = await http.post("/v1/stream/ticket")
            assert ticket.status_code == 503, ticket.text
            assert ticket.json()["error"]["code"] == "ERR_UNAVAILABLE"
            await asyncio.sleep(max(0.0, SERVER_PAUSE_SECONDS - (time.monotonic() - paused_at)))

        for node in (node_a, node_b):
            await eventually(
                lambda n=node: _status_is(n, "ok"), timeout=30, what="the bus to recover"
            )
        for i in range(5):
            await history.send("bob", node_b.url, bob.token, cid, f"after-{i}")
        stored = await stored_messages(node_b, bob, cid)
        history.check(stored)
        assert history.outcomes() == {"ok": 20}
        await alice_on_a.wait_for_messages(20)
        assert_in_order_once(alice_on_a.messages, after_pos=start)
        assert len(alice_on_a.messages) == 20
        await alice_on_a.close()
    finally:
        await cluster.stop()


async def _status_is(node: ServerProcess, status: str) -> bool:
    ready = await readiness(node)
    bus_ok = ready["checks"].get("bus") == "ok"
    return ready["http_status"] == 200 and ready["status"] == status and bus_ok == (status == "ok")


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_a_paused_postgres_sends_fail_cleanly_then_recover_with_nothing_lost(
    private_database: str, private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    cluster = await _make_cluster(private_database, redis_url, tmp_path)
    try:
        node_a, node_b = await cluster.start(2)
        alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
        cid = await create_conversation(node_a, alice, bob)
        alice_on_a = await WsReader(node_a.url, alice.token).opened()
        start = int(alice_on_a.hello["cursor"])
        history = History()
        for i in range(5):
            await history.send("bob", node_b.url, bob.token, cid, f"before-{i}")

        async def keep_sending(name: str, member: Member, node: ServerProcess) -> None:
            for i in range(1000):
                if stop.is_set():
                    return
                await history.send(name, node.url, member.token, cid, f"{name}-{i}", timeout=10)
                await asyncio.sleep(0.1)

        stop = asyncio.Event()
        senders = [
            asyncio.create_task(keep_sending("alice", alice, node_a)),
            asyncio.create_task(keep_sending("bob", bob, node_b)),
        ]
        await eventually(lambda: history.outcomes()["ok"] >= 15, what="sends before the pause")
        with private_postgres.paused_for_a_while():
            paused_at = time.monotonic()
            await eventually(
                lambda: _http_status_is(node_a, 503),
                timeout=SERVER_PAUSE_SECONDS,
                what="readyz 503 while the database is paused",
            )
            during = len(history.ops)
            await asyncio.sleep(max(0.0, SERVER_PAUSE_SECONDS - (time.monotonic() - paused_at)))
            answered_during = history.ops[during:]
        await eventually(lambda: _http_status_is(node_a, 200), timeout=30, what="readyz 200")
        ok_before = history.outcomes()["ok"]
        await eventually(
            lambda: history.outcomes()["ok"] >= ok_before + 10, timeout=30, what="sends again"
        )
        stop.set()
        await asyncio.gather(*senders)

        # While paused nothing was acknowledged, and nothing hung past the client's timeout.
        assert answered_during and all(op.outcome != "ok" for op in answered_during[:-2])
        assert all(op.ended is not None and op.ended - op.started < 12 for op in history.ops)
        for name, member, node in (("alice", alice, node_a), ("bob", bob, node_b)):
            await history.settle(name, node.url, member.token, cid)
        stored = await stored_messages(node_b, bob, cid)
        history.check(stored)
        await alice_on_a.wait_for_messages(len(stored), timeout=30)
        assert_in_order_once(alice_on_a.messages, after_pos=start)
        assert len(alice_on_a.messages) == len(stored)
        await alice_on_a.close()
    finally:
        await cluster.stop()


async def _http_status_is(node: ServerProcess, status: int) -> bool:
    try:
        return (await readiness(node))["http_status"] == status
    except httpx.HTTPError:
        return False
