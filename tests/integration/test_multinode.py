"""Several `parley serve` processes sharing one PostgreSQL and one Redis, and their faults:
cross-node delivery in order, kill -9 mid-stream, the same send to two nodes, Redis down,
SIGTERM drain, the `sse_only` switch, and PostgreSQL restart. The tests that stop Redis or
restart PostgreSQL do it to private servers of their own (tests/support/private_services.py),
so nothing here needs to run alone.

Every wait has a deadline and waits for a condition; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from parley.core.models import Role
from tests.conftest import PostgresDatabases
from tests.support.cluster import (
    Cluster,
    Member,
    assert_stored_once,
    create_conversation,
    post_message,
    readiness,
    send_frame,
    stored_messages,
)
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import (
    SseReader,
    WsReader,
    assert_in_order_once,
    eventually,
    poll_messages,
)

TRANSPORT_DISABLED = {"type": "control", "op": "transport", "mode": "sse_only", "reason": None}
RECONNECT = {"type": "control", "op": "reconnect", "mode": None, "reason": "shutdown"}
# The defaults: SQLite in ./var and the in-process bus, whatever the environment says.
EMBEDDED = {"PARLEY_DATABASE_URL": "", "PARLEY_REDIS_URL": ""}

# Stops Redis and restarts PostgreSQL: scripts/test.sh runs these alone, after the rest.


# -- the cluster -----------------------------------------------------------------------------------


@pytest.fixture
async def cluster(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    found = Cluster(
        database_url=await postgres_databases.fresh(),
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
    )
    try:
        yield found
    finally:
        await found.stop()


# -- cross-node delivery ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_user_on_one_node_gets_in_order_what_a_user_on_another_node_sends(
    cluster: Cluster,
) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    ws = await WsReader(node_a.url, alice.token).opened()
    sse = await SseReader(node_a.url, alice.token).open()
    start = ws.hello["cursor"]
    polled = asyncio.create_task(poll_messages(node_a.url, alice.token, 50, cursor=start))
    bob_ws = await WsReader(node_b.url, bob.token).opened()

    over_ws = [f"ws-{i}" for i in range(25)]
    over_rest = [f"rest-{i}" for i in range(25)]

    async def send_over_rest() -> None:
        for chunk in range(0, 25, 5):
            answers = await asyncio.gather(
                *(post_message(node_b, bob, cid, c) for c in over_rest[chunk : chunk + 5])
            )
            assert [a.status_code for a in answers] == [201] * 5

    async def send_over_ws() -> None:
        for client_msg_id in over_ws:
            await bob_ws.send(send_frame(cid, client_msg_id))
        await eventually(lambda: set(over_ws) <= set(bob_ws.acks()), what="bob's acks")

    await asyncio.gather(send_over_rest(), send_over_ws())

    await ws.wait_for_messages(50)
    await sse.wait_for_messages(50)
    by_poll = await polled
    for received in (ws.messages, sse.messages, by_poll):
        assert len(received) == 50
        assert_in_order_once(received, after_pos=int(start))
        assert [m["seq"] for m in received] == list(range(1, 51))
        assert {m["message"]["client_msg_id"] for m in received} == {*over_ws, *over_rest}
    assert sse.ids == [str(m["pos"]) for m in sse.messages]
    assert not [e for e in bob_ws.events if e["type"] == "error"]
    for reader in (ws, sse, bob_ws):
        await reader.close()


# -- kill -9 mid-stream ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_acknowledged_sends_survive_a_killed_node_and_are_stored_once(
    cluster: Cluster,
) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    watcher = await WsReader(node_b.url, bob.token).opened()
    sender = await WsReader(node_a.url, alice.token).opened()
    client_msg_ids = [f"k-{i}" for i in range(60)]

    async def send_until_the_connection_breaks() -> None:
        # Like a client with a send window: up to 8 sends in flight (maybe committed, not yet
        # acked) when the node dies, and never so far ahead that the kill comes after the last.
        for sent, client_msg_id in enumerate(client_msg_ids):
            await eventually(lambda n=sent: n - len(sender.acks()) < 8 or sender.ended.is_set())
            try:
                await sender.send(send_frame(cid, client_msg_id))
            except ConnectionClosed:
                return

    sending = asyncio.create_task(send_until_the_connection_breaks())
    await eventually(lambda: len(sender.acks()) >= 20, what="20 acks from node A")
    assert node_a.process is not None
    node_a.process.kill()
    await asyncio.to_thread(node_a.process.wait, 10)
    await sending
    await sender.wait_ended()
    acked_on_a = sender.acks()
    assert sender.close_code == 1006  # no closing handshake: the node just vanished

    resumed = await WsReader(node_b.url, alice.token, cursor=sender.cursor).opened()
    unacked = [c for c in client_msg_ids if c not in acked_on_a]
    # The unacknowledged ones, and one acknowledged one a client might be unsure of.
    last_acked = max(acked_on_a.values(), key=lambda ack: ack["pos"])
    resent = [*unacked, last_acked["ref"]]
    for client_msg_id in resent:
        await resumed.send(send_frame(cid, client_msg_id))
    await eventually(lambda: set(resent) <= set(resumed.acks()), what="acks from node B")

    stored = await stored_messages(node_b, alice, cid)
    assert_stored_once(stored, set(client_msg_ids))
    by_client_id = {m["client_msg_id"]: m for m in stored}
    for ack in [*acked_on_a.values(), *resumed.acks().values()]:
        message = by_client_id[ack["ref"]]
        assert [ack[k] for k in ("id", "seq", "pos")] == [message[k] for k in ("id", "seq", "pos")]
    assert resumed.acks()[last_acked["ref"]] == {**last_acked, "duplicate": True}
    await watcher.wait_for_messages(60)
    assert_in_order_once(watcher.messages, after_pos=0)
    assert sorted(watcher.client_msg_ids) == sorted(client_msg_ids)
    await resumed.wait_for_messages(60 - len(sender.messages))
    alice_saw = sender.messages + resumed.messages
    assert_in_order_once(alice_saw, after_pos=0)
    assert len(alice_saw) == 60
    assert not [e for e in resumed.events if e["type"] == "error"]
    for reader in (watcher, resumed):
        await reader.close()


# -- one client_msg_id, two nodes at once ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_the_same_send_to_two_nodes_at_once_is_stored_once(cluster: Cluster) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    client_msg_ids = [f"twice-{i}" for i in range(20)]

    pairs = await asyncio.gather(
        *(
            asyncio.gather(
                post_message(node_a, alice, cid, client_msg_id),
                post_message(node_b, alice, cid, client_msg_id),
            )
            for client_msg_id in client_msg_ids
        )
    )

    for on_a, on_b in pairs:
        assert sorted([on_a.status_code, on_b.status_code]) == [200, 201], (on_a.text, on_b.text)
        assert on_a.json() == on_b.json()
    assert_stored_once(await stored_messages(node_a, alice, cid), set(client_msg_ids))


# -- Redis down ------------------------------------------------------------------------------------


async def _not(probe: Any) -> bool:
    return not await probe


@pytest.mark.postgres
async def test_with_redis_down_sends_commit_and_delivery_falls_back_to_the_database(
    postgres_databases: PostgresDatabases, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    # Its own Redis: stopping the shared one would fail every other test running now.
    cluster = Cluster(
        database_url=await postgres_databases.fresh(),
        redis_url=private_redis.url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
    )
    try:
        await _redis_down(cluster, private_redis)
    finally:
        await cluster.stop()


async def _redis_down(cluster: Cluster, private_redis: PrivateRedis) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    for node in (node_a, node_b):
        await eventually(lambda n=node: _status_is(n, "ok"), what="the bus to connect")
    ws = await WsReader(node_a.url, alice.token).opened()
    acked: set[str] = set()
    acked |= await _send_retrying(node_b, bob, cid, [f"up-{i}" for i in range(5)])
    await ws.wait_for_messages(5)

    await asyncio.to_thread(private_redis.stop)
    try:
        for node in (node_a, node_b):
            await eventually(lambda n=node: _status_is(n, "degraded"), what="readyz: degraded")
        acked |= await _send_retrying(node_b, bob, cid, [f"down-{i}" for i in range(10)])
        await ws.wait_for_messages(15)
        # A reconnect with a cursor while Redis is down resumes too.
        resumed = await SseReader(node_a.url, alice.token, cursor="5").open()
        await resumed.wait_for_messages(10)
        await resumed.close()
        assert [m["pos"] for m in resumed.messages] == list(range(6, 16))
        # What does need Redis (browser tickets) answers a retryable 503, not a 500.
        async with httpx.AsyncClient(base_url=node_a.url, headers=alice.headers) as http:
            ticket = await http.post("/v1/stream/ticket")
        assert ticket.status_code == 503, ticket.text
        assert ticket.json()["error"]["code"] == "ERR_UNAVAILABLE"
    finally:
        await asyncio.to_thread(private_redis.start)

    for node in (node_a, node_b):
        await eventually(lambda n=node: _status_is(n, "ok"), what="the bus to reconnect")
    listener = aioredis.Redis.from_url(cluster.redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{cluster.prefix}events")
    try:
        after = [f"back-{i}" for i in range(5)]
        acked |= await _send_retrying(node_b, bob, cid, after)
        await ws.wait_for_messages(20)
        published = await _published_client_msg_ids(pubsub, set(after))
    finally:
        await pubsub.aclose()
        await listener.aclose()

    assert set(after) <= published
    assert_in_order_once(ws.messages, after_pos=0)
    assert len(ws.messages) == 20
    assert_stored_once(await stored_messages(node_b, bob, cid), acked)
    await ws.close()


async def _status_is(node: ServerProcess, status: str) -> bool:
    ready = await readiness(node)
    bus_ok = ready["checks"].get("bus") == "ok"
    return ready["http_status"] == 200 and ready["status"] == status and bus_ok == (status == "ok")


async def _send_retrying(
    node: ServerProcess, member: Member, conversation_id: int, client_msg_ids: list[str]
) -> set[str]:
    """Send each, retrying a retryable 503 with the same client_msg_id; the acked ids."""
    acked = set()
    for client_msg_id in client_msg_ids:

        async def answered(c: str = client_msg_id) -> httpx.Response | None:
            response = await post_message(node, member, conversation_id, c)
            assert response.status_code in (200, 201, 503), response.text
            return response if response.status_code != 503 else None

        await eventually(answered, timeout=20, what=f"{client_msg_id} to be stored")
        acked.add(client_msg_id)
    return acked


async def _published_client_msg_ids(pubsub: Any, wanted: set[str]) -> set[str]:
    """Read the bus channel until every wanted message was seen published on it."""
    seen: set[str] = set()
    async with asyncio.timeout(15):
        while not wanted <= seen:
            message = await pubsub.get_message(timeout=1)
            if message is None:
                continue
            for envelope in json.loads(message["data"])["envelopes"]:
                if envelope["type"] == "message":
                    seen.add(json.loads(envelope["data"])["message"]["client_msg_id"])
    return seen


# -- SIGTERM drains --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_sigterm_moves_streams_to_another_node_without_losing_anything(
    cluster: Cluster,
) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob, carol = [await cluster.add_user(n) for n in ("alice", "bob", "carol")]
    cid = await create_conversation(node_a, alice, bob, carol)
    ws = await WsReader(node_a.url, alice.token).opened()
    sse = await SseReader(node_a.url, carol.token).open()
    bob_ws = await WsReader(node_b.url, bob.token).opened()
    from_alice = [f"a-{i}" for i in range(10)]
    for client_msg_id in from_alice:
        await ws.send(send_frame(cid, client_msg_id))
    await eventually(lambda: set(from_alice) <= set(ws.acks()), what="alice's acks")
    from_bob = [f"b-{i}" for i in range(40)]

    async def bob_keeps_sending() -> None:
        for client_msg_id in from_bob:
            await bob_ws.send(send_frame(cid, client_msg_id))
            await asyncio.sleep(0.02)
        await eventually(lambda: set(from_bob) <= set(bob_ws.acks()), what="bob's acks")

    sending = asyncio.create_task(bob_keeps_sending())
    await eventually(lambda: len(bob_ws.acks()) >= 10, what="bob's first acks")
    assert node_a.process is not None
    node_a.process.send_signal(signal.SIGTERM)
    await ws.wait_ended()
    await sse.wait_ended()
    ws_again = await WsReader(node_b.url, alice.token, cursor=ws.cursor).opened()
    sse_again = await SseReader(node_b.url, carol.token, cursor=sse.cursor).open()
    await sending

    assert ws.close_code == 1012
    assert ws.events[-1] == RECONNECT
    assert sse.error is None and sse.events[-1] == RECONNECT
    everything = {*from_alice, *from_bob}
    for before, after in ((ws, ws_again), (sse, sse_again)):
        await after.wait_for_messages(50 - len(before.messages))
        saw = before.messages + after.messages
        assert_in_order_once(saw, after_pos=0)
        assert sorted(m["message"]["client_msg_id"] for m in saw) == sorted(everything)
    assert_stored_once(await stored_messages(node_b, bob, cid), everything)
    assert await asyncio.to_thread(node_a.process.wait, 20) in (0, -signal.SIGTERM)
    for reader in (ws_again, sse_again, bob_ws):
        await reader.close()


# -- the sse_only switch ---------------------------------------------------------------------------


async def check_the_sse_only_switch(
    switched_on: ServerProcess, other: ServerProcess, admin: Member, member: Member
) -> None:
    """Switching on one node moves WebSockets off every node; switching back lets them in."""
    watcher = await WsReader(other.url, member.token).opened()
    assert watcher.hello["mode"] == "auto"

    async with httpx.AsyncClient(base_url=switched_on.url, headers=admin.headers) as http:
        refused = await http.put(
            "/v1/admin/transport", json={"mode": "sse_only"}, headers=member.headers
        )
        switched = await http.put("/v1/admin/transport", json={"mode": "sse_only"})
    assert refused.status_code == 403
    assert switched.status_code == 200 and switched.json() == {"mode": "sse_only"}

    await watcher.wait_ended()
    assert watcher.events[-1] == TRANSPORT_DISABLED
    assert watcher.close_code == 4003
    nodes = [switched_on] if switched_on is other else [switched_on, other]
    for node in nodes:
        turned_away = await WsReader(node.url, member.token).opened()
        await turned_away.wait_ended()
        assert [e["type"] for e in turned_away.events] == ["error"]
        assert turned_away.events[0]["code"] == "ERR_TRANSPORT_DISABLED"
        assert turned_away.close_code == 4003
        sse = await SseReader(node.url, member.token).open()
        assert sse.hello["mode"] == "sse_only" and sse.hello["transport"] == "sse"
        await sse.close()
        async with httpx.AsyncClient(base_url=node.url, headers=admin.headers) as http:
            assert (await http.get("/v1/admin/transport")).json() == {"mode": "sse_only"}

    async with httpx.AsyncClient(base_url=other.url, headers=admin.headers) as http:
        assert (await http.put("/v1/admin/transport", json={"mode": "auto"})).status_code == 200
    for node in nodes:

        async def welcomed(url: str = node.url) -> WsReader | None:
            reader = await WsReader(url, member.token).opened()
            if reader.events and reader.events[0]["type"] == "hello":
                return reader
            await reader.close()
            return None

        again = await eventually(welcomed, what="WebSockets to be allowed again")
        assert again.hello["mode"] == "auto"
        await again.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_sse_only_on_one_node_moves_websockets_off_every_node(cluster: Cluster) -> None:
    node_a, node_b = await cluster.start(2)
    admin = await cluster.add_user("ops", Role.ADMIN)
    alice = await cluster.add_user("alice")

    await check_the_sse_only_switch(node_a, node_b, admin, alice)


def test_sse_only_switch_on_a_single_embedded_node(tmp_path: Path) -> None:
    admin = _cli_user(tmp_path, "ops", "--role", "admin")
    env = {**EMBEDDED, "PARLEY_DEMO": "true"}
    node = ServerProcess(port=free_port(), workdir=tmp_path, env=env).start()
    try:
        demo = httpx.post(f"{node.url}/demo/session", json={"name": "alice"}).json()
        alice = Member(demo["user"]["id"], "alice", demo["token"])
        asyncio.run(check_the_sse_only_switch(node, node, admin, alice))
    finally:
        node.stop()


def _cli_user(workdir: Path, name: str, *options: str) -> Member:
    result = subprocess.run(
        [sys.executable, "-m", "parley", "user", "add", name, *options],
        cwd=workdir,
        env={**os.environ, **EMBEDDED},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Member(0, name, result.stdout.strip().splitlines()[-1])


# -- PostgreSQL restart --------------------------------------------------------------------------


@pytest.mark.redis
async def test_after_a_postgres_restart_sends_succeed_again_without_a_process_restart(
    private_database: str, private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    # Its own PostgreSQL: restarting the shared one would fail every other test running now.
    cluster = Cluster(
        database_url=private_database,
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
    )
    try:
        await _postgres_restart(cluster, private_postgres)
    finally:
        await cluster.stop()


async def _postgres_restart(cluster: Cluster, private_postgres: PrivatePostgres) -> None:
    (node,) = await cluster.start(1)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node, alice, bob)
    ws = await WsReader(node.url, alice.token).opened()
    acked = await _send_retrying(node, bob, cid, ["before"])
    await ws.wait_for_messages(1)

    try:
        restart = asyncio.create_task(asyncio.to_thread(private_postgres.restart))
        attempt = 0
        while not restart.done():
            client_msg_id = f"during-{attempt}"
            attempt += 1
            response = await post_message(node, bob, cid, client_msg_id)
            assert response.status_code in (201, 503), response.text
            if response.status_code == 201:
                acked.add(client_msg_id)
            await asyncio.sleep(0.1)
        await restart
        acked |= await _send_retrying(node, bob, cid, ["after"])
    finally:
        await asyncio.to_thread(private_postgres.ensure_running)

    assert node.process is not None and node.process.poll() is None
    stored = await stored_messages(node, bob, cid)
    acked_and_stored = {m["client_msg_id"] for m in stored}
    assert acked <= acked_and_stored
    # A 503 may still have committed (the answer was lost, not the message): a retry finds it.
    assert_stored_once(stored, acked_and_stored)
    await ws.wait_for_messages(len(stored))
    assert_in_order_once(ws.messages, after_pos=0)
    assert len(ws.messages) == len(stored)
    await eventually(lambda: _status_is(node, "ok"), what="readyz ok again")
    await ws.close()
