"""The Python client against real server processes, on each transport (WebSocket, SSE, poll).

What a user of `ParleyClient` observes: messages reach the other member; an ack means stored;
a dropped connection or a restarted server loses nothing and duplicates nothing; a retried
`client_msg_id` is stored once; the read mark only moves forward; a deployment that switches
WebSocket off, or a node that drains, moves the client without losing its place.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.client import Event, EventStream, ParleyClient, TransportName
from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import eventually

TRANSPORTS: list[TransportName] = ["ws", "sse", "poll"]
P0 = ("ack_without_receipt_10s", "timeline_duplicate_detected", "read_rollback_detected")
BASE_ENV = {
    "PARLEY_LOG_JSON": "false",
    "PARLEY_RESUME_RATE": "1000/minute",
    # Small, so a test can miss more than a resume re-sends and force a full-state load.
    "PARLEY_RESUME_MAX_MESSAGES": "20",
}


@dataclass
class Deployment:
    """Server processes sharing one workdir (one database), and users with tokens."""

    workdir: Path
    env: dict[str, str]
    servers: list[ServerProcess] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    clients: list[ParleyClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start_node(self) -> ServerProcess:
        server = ServerProcess(port=free_port(), workdir=self.workdir, env=self.env).start()
        self.servers.append(server)
        return server

    def add_user(self, name: str, *extra: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "parley", "user", "add", name, *extra],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.tokens[name] = result.stdout.strip().splitlines()[-1]
        me = httpx.get(f"{self.url}/v1/me", headers=self.auth(name), timeout=10)
        self.user_ids[name] = int(me.json()["id"])

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def client(self, name: str, transport: TransportName, **options: Any) -> ParleyClient:
        options.setdefault("base_url", self.url)
        client = ParleyClient(token=self.tokens[name], transport=transport, **options)
        self.clients.append(client)
        return client

    async def call(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, headers=self.auth(name)) as http:
            response = await http.request(method, path, **kwargs)
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    async def conversation(self, owner: str, *members: str) -> int:
        created = await self.call(
            owner,
            "POST",
            "/v1/conversations",
            json={"kind": "group", "title": "t", "members": list(members)},
        )
        return int(created["id"])

    async def stored(self, name: str, conversation_id: int) -> list[dict[str, Any]]:
        page = await self.call(
            name, "GET", f"/v1/conversations/{conversation_id}/messages", params={"limit": 500}
        )
        return list(page["messages"])

    async def send_rest(self, name: str, conversation_id: int, bodies: list[str]) -> None:
        async with httpx.AsyncClient(base_url=self.url, headers=self.auth(name)) as http:
            for index, body in enumerate(bodies):
                response = await http.post(
                    f"/v1/conversations/{conversation_id}/messages",
                    json={"client_msg_id": f"rest-{time.time_ns()}-{index}", "body": body},
                )
                assert response.status_code == 201, response.text

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _deployment(workdir: Path, env: dict[str, str]) -> Deployment:
    deployment = Deployment(workdir=workdir, env={**BASE_ENV, **env})
    deployment.start_node()
    deployment.add_user("alice")
    deployment.add_user("bob")
    deployment.add_user("root", "--role", "admin")
    return deployment


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server for the tests that do not stop it; each test makes its own conversation."""
    deployment = _deployment(tmp_path_factory.mktemp("python-client"), {})
    yield deployment
    deployment.stop()


@pytest.fixture
async def deployment(shared: Deployment) -> AsyncIterator[Deployment]:
    yield shared
    await shared.close_clients()


@pytest.fixture
async def own_deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    """A server this test may stop, restart, or join with a second node."""
    deployment = _deployment(tmp_path, {})
    yield deployment
    await deployment.close_clients()
    deployment.stop()


def bounded(seconds: float) -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Fail a test that runs longer than `seconds` instead of hanging the suite."""

    def decorate(test: Callable[..., Awaitable[None]]) -> Any:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            async with asyncio.timeout(seconds):
                await test(*args, **kwargs)

        return run

    return decorate


async def next_message(events: EventStream, conversation_id: int, timeout: float = 10) -> Event:
    while True:
        event = await events.next(timeout=timeout)
        if event.type == "message" and event.conversation_id == conversation_id:
            return event


def bodies(client: ParleyClient, conversation_id: int) -> list[str]:
    return [message.body for message in client.timeline(conversation_id)]


def seqs(client: ParleyClient, conversation_id: int) -> list[int]:
    return [message.seq for message in client.timeline(conversation_id)]


def assert_no_p0_breach(*clients: ParleyClient) -> None:
    for client in clients:
        stats = client.stats()
        assert {name: stats.total(name) for name in P0} == dict.fromkeys(P0, 0)


# ---- delivery, acks, retries ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_a_message_sent_by_one_client_reaches_the_other(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport)
    await alice.connect()
    await bob.connect()
    events = bob.events()
    own_events = alice.events()

    ack = await alice.send(cid, "hello bob", metadata={"k": "v"})
    event = await next_message(events, cid)

    assert event.message is not None
    assert (event.message.body, event.message.seq) == ("hello bob", ack.seq)
    assert event.message.sender_id == deployment.user_ids["alice"]
    assert event.message.metadata == {"k": "v"}
    await eventually(lambda: alice.stats().awaiting_receipt == 0)
    assert bodies(alice, cid) == bodies(bob, cid) == ["hello bob"]
    assert alice.timeline(cid)[0].sender_id == deployment.user_ids["alice"]
    assert len(alice.stats().by_transport[transport].write_receipt_ms) == 1
    assert alice.transport == bob.transport == transport
    own = await next_message(own_events, cid)  # from its ack or the stream, whichever came first
    assert own.source in ("ack", "stream") and own.message and own.message.seq == ack.seq
    with pytest.raises(TimeoutError):  # the second copy is the write receipt, not news
        await next_message(own_events, cid, timeout=0.3)
    assert_no_p0_breach(alice, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_send_is_acknowledged_only_once_the_message_is_stored(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    await alice.connect()

    acks = [await alice.send(cid, f"m{i}") for i in range(3)]
    stored = await deployment.stored("bob", cid)

    assert [a.seq for a in acks] == [1, 2, 3]
    assert [(m["seq"], m["client_msg_id"], m["body"]) for m in stored] == [
        (a.seq, a.client_msg_id, f"m{i}") for i, a in enumerate(acks)
    ]
    assert not any(a.duplicate for a in acks)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_retrying_a_client_msg_id_stores_the_message_once(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport)
    await alice.connect()
    await bob.connect()

    first = await alice.send(cid, "once", client_msg_id="retry-me")
    again = await alice.send(cid, "once", client_msg_id="retry-me")
    both = await asyncio.gather(
        *(alice.send(cid, "twice?", client_msg_id="burst") for _ in range(5))
    )

    assert (again.id, again.seq, again.duplicate) == (first.id, first.seq, True)
    assert len({(ack.id, ack.seq) for ack in both}) == 1
    assert sum(not ack.duplicate for ack in both) == 1
    assert [m["body"] for m in await deployment.stored("bob", cid)] == ["once", "twice?"]
    await eventually(lambda: bodies(bob, cid) == ["once", "twice?"])
    await asyncio.sleep(0.3)  # a duplicate delivery would arrive about now
    assert bodies(bob, cid) == bodies(alice, cid) == ["once", "twice?"]
    assert_no_p0_breach(alice, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_mark_read_only_moves_forward(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport)
    await alice.connect()
    await bob.connect()
    for i in range(3):
        await bob.send(cid, f"m{i}")

    assert await alice.mark_read(cid, 3) is True
    assert await alice.mark_read(cid, 1) is False  # whatever is on screen: not a rollback
    assert await alice.mark_read(cid, 3) is False

    assert alice.read_mark(cid) == 3
    alice_id = deployment.user_ids["alice"]
    await eventually(lambda: alice_id in bob.receipts(cid))
    await eventually(lambda: bob.receipts(cid)[alice_id].read_seq == 3)
    members = await deployment.call("bob", "GET", f"/v1/conversations/{cid}/members")
    assert {m["name"]: m["read_seq"] for m in members["members"]}["alice"] == 3
    assert_no_p0_breach(alice, bob)


# ---- the rich timeline: edits, reactions, unsends, threads, unread, search -----------


def updates(received: list[Event], conversation_id: int) -> list[tuple[str, str, int]]:
    return [
        (e.source, e.data.get("change", "-"), e.message.seq)
        for e in received
        if e.type == "message.updated" and e.conversation_id == conversation_id and e.message
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_edits_reactions_and_unsends_reach_the_other_client_live_and_after_resume(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport)
    seen_by_alice: list[Event] = []
    seen_by_bob: list[Event] = []
    alice.on(seen_by_alice.append)
    bob.on(seen_by_bob.append)
    await alice.connect()
    await bob.connect()
    typo = await alice.send(cid, "helo")
    regret = await alice.send(cid, "card 4111")
    await eventually(lambda: len(bob.timeline(cid)) == 2)

    await alice.edit(cid, typo.id, "hello")
    await bob.react(cid, typo.id, "ok")
    await alice.unsend(cid, regret.id)
    await eventually(lambda: len(updates(seen_by_bob, cid)) == 3, what="bob's 3 updates")
    await eventually(lambda: len(updates(seen_by_alice, cid)) == 3, what="alice's 3 updates")

    # Each change shows once: one's own from its answer or the stream, whichever came first.
    assert [(source, seq) for source, _, seq in updates(seen_by_bob, cid)] in (
        [("stream", 1), ("update", 1), ("stream", 2)],
        [("stream", 1), ("stream", 1), ("stream", 2)],
    )
    assert [seq for _, _, seq in updates(seen_by_alice, cid)] == [1, 1, 2]
    assert updates(seen_by_alice, cid)[1][:2] == ("stream", "reactions")
    for client in (alice, bob):
        first, second = client.timeline(cid)
        assert first.body == "hello" and first.edited_at is not None
        assert [r["emoji"] for r in first.reactions] == ["ok"]
        assert second.deleted and second.body == "" and second.seq == 2
    assert_no_p0_breach(alice, bob)

    saved = bob.cursor
    await bob.close()
    await alice.edit(cid, typo.id, "hello, Bob")
    again = deployment.client("bob", transport, cursor=saved)
    events = again.events()
    await again.connect()
    missed = await events.next(timeout=10)
    while missed.type != "message.updated":
        missed = await events.next(timeout=10)
    assert missed.message is not None and missed.message.body == "hello, Bob"
    assert missed.data["change"] == "edited"


@bounded(60)
async def test_threads_unread_and_search_through_the_client(deployment: Deployment) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", "ws")
    bob = deployment.client("bob", "ws")
    await alice.connect()
    await bob.connect()
    root = await alice.send(cid, "release checklist for friday")
    reply = await bob.send(cid, "@alice canary looks green", thread_root_id=root.id)

    unread = await alice.unread(cid)
    (conversation,) = unread["conversations"]
    (thread,) = conversation["threads"]
    assert (thread["root_id"], thread["unread"], thread["mentions"]) == (root.id, 1, 1)
    assert (await alice.thread(cid, root.id))["replies"][0].id == reply.id
    assert await alice.mark_thread_read(cid, root.id, reply.seq) == reply.seq
    assert (await alice.unread(cid))["mentions"] == 0
    found = await bob.search("canary", conversation_id=cid)
    assert [r["message"].id for r in found["results"]] == [reply.id]
    assert [f["text"] for f in found["results"][0]["snippet"] if f["hit"]] == ["canary"]
    await alice.send(cid, "one more")
    assert (await bob.mark_all_read())["unread"] == 0
    assert [v["body"] for v in await alice.history(cid, root.id)] == [
        "release checklist for friday"
    ]


# ---- resume ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_resuming_from_a_saved_cursor_delivers_exactly_what_was_missed(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    first = deployment.client("bob", transport)
    await first.connect()
    saved = first.cursor
    await first.close()
    await deployment.send_rest("alice", cid, [f"missed {i}" for i in range(4)])

    bob = deployment.client("bob", transport, cursor=saved)
    events = bob.events()
    await bob.connect()
    hello = await events.next(timeout=5)
    await eventually(lambda: len(bob.timeline(cid)) == 4)

    assert hello.type == "hello" and hello.data["resumed"] == 4
    assert bodies(bob, cid) == [f"missed {i}" for i in range(4)]
    assert bob.stats().total("forced_resyncs") == 0
    assert_no_p0_breach(bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_dropped_connections_lose_nothing_and_duplicate_nothing(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport, reconnect_delay=0.05)
    await alice.connect()
    await bob.connect()
    expected = [f"m{i}" for i in range(30)]

    async def drop_now_and_then() -> None:
        for _ in range(4):
            await asyncio.sleep(0.1)
            await eventually(lambda: bob.connected)
            await bob.reconnect()

    sending = asyncio.gather(*(alice.send(cid, body) for body in expected[:15]))
    await asyncio.gather(sending, drop_now_and_then())
    for body in expected[15:]:
        await alice.send(cid, body)
    await eventually(lambda: len(bob.timeline(cid)) >= 30)
    await asyncio.sleep(0.3)

    assert seqs(bob, cid) == list(range(1, 31))
    assert sorted(bodies(bob, cid)) == sorted(expected)
    assert bob.stats().reconnects >= 4
    assert_no_p0_breach(alice, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_a_server_restart_loses_nothing_and_duplicates_nothing(
    own_deployment: Deployment, transport: TransportName
) -> None:
    deployment = own_deployment
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", transport)
    bob = deployment.client("bob", transport, reconnect_delay=0.5)
    await alice.connect()
    await bob.connect()
    await alice.send(cid, "before")
    await eventually(lambda: bodies(bob, cid) == ["before"])

    deployment.servers[0].stop()
    during = asyncio.create_task(alice.send(cid, "sent while down"))
    await asyncio.sleep(1.0)
    assert not during.done()
    deployment.servers[0].start()
    await deployment.send_rest("alice", cid, [f"after {i}" for i in range(5)])
    ack = await asyncio.wait_for(during, 30)
    await eventually(lambda: len(bob.timeline(cid)) >= 7, timeout=30)
    await asyncio.sleep(0.3)

    assert seqs(bob, cid) == list(range(1, 8))
    assert bob.timeline(cid)[ack.seq - 1].body == "sent while down"
    assert [m["body"] for m in await deployment.stored("bob", cid)].count("sent while down") == 1
    assert bob.stats().reconnects >= 1 and alice.stats().reconnects >= 1
    assert bob.stats().total("timeline_duplicate_detected") == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_a_cursor_beyond_what_resume_resends_forces_a_full_state_load(
    deployment: Deployment, transport: TransportName
) -> None:
    cid = await deployment.conversation("alice", "bob")
    first = deployment.client("bob", transport)
    await first.connect()
    saved = first.cursor
    await first.close()
    await deployment.send_rest("alice", cid, [f"m{i}" for i in range(25)])  # over 20

    bob = deployment.client("bob", transport, cursor=saved)
    await bob.connect()
    await eventually(lambda: len(bob.timeline(cid)) == 25)
    await deployment.send_rest("alice", cid, ["live"])
    await eventually(lambda: len(bob.timeline(cid)) == 26)

    stats = bob.stats().by_transport
    assert seqs(bob, cid) == list(range(1, 27))
    assert sum(s.counters["forced_resyncs"] for s in stats.values()) == 1
    assert sum(s.counters["full_state_loads"] for s in stats.values()) == 1
    assert bob.transport == transport
    assert_no_p0_breach(bob)


# ---- fallback and failover ------------------------------------------------------------


async def _set_mode(deployment: Deployment, mode: str) -> None:
    await deployment.call("root", "PUT", "/v1/admin/transport", json={"mode": mode})


@bounded(90)
async def test_websocket_falls_back_to_sse_when_the_server_disables_it(
    deployment: Deployment,
) -> None:
    cid = await deployment.conversation("alice", "bob")
    await _set_mode(deployment, "sse_only")
    try:
        alice = deployment.client("alice", "ws")
        started = time.monotonic()
        await alice.connect()
        connected_after = time.monotonic() - started
        ack = await alice.send(cid, "over sse")
    finally:
        await _set_mode(deployment, "auto")

    assert alice.transport == "sse"
    assert connected_after < 3
    assert ack.transport == "sse"
    assert [m["body"] for m in await deployment.stored("bob", cid)] == ["over sse"]


@bounded(90)
async def test_a_connected_websocket_moves_to_sse_when_told_and_keeps_its_place(
    deployment: Deployment,
) -> None:
    cid = await deployment.conversation("alice", "bob")
    alice = deployment.client("alice", "ws")
    bob = deployment.client("bob", "ws")
    await alice.connect()
    await bob.connect()
    await alice.send(cid, "over ws")
    await _set_mode(deployment, "sse_only")
    try:
        await eventually(lambda: bob.transport == "sse" and bob.connected)
        await eventually(lambda: alice.transport == "sse" and alice.connected)
        ack = await alice.send(cid, "over sse")
        await eventually(lambda: len(bob.timeline(cid)) == 2)
    finally:
        await _set_mode(deployment, "auto")

    assert ack.transport == "sse"
    assert bodies(bob, cid) == ["over ws", "over sse"]
    assert bob.stats().fallbacks == 1
    assert_no_p0_breach(alice, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
@bounded(90)
async def test_a_client_fails_over_to_the_next_node_when_its_node_drains(
    own_deployment: Deployment, transport: TransportName
) -> None:
    deployment = own_deployment
    node_a, node_b = deployment.servers[0], deployment.start_node()
    cid = await deployment.conversation("alice", "bob")
    bob = deployment.client("bob", transport, base_url=[node_a.url, node_b.url])
    alice = deployment.client("alice", transport, base_url=node_b.url)
    await bob.connect()
    await alice.connect()
    await alice.send(cid, "before")
    await eventually(lambda: bodies(bob, cid) == ["before"])

    node_a.stop()
    await alice.send(cid, "during")
    await eventually(lambda: bob.base_url == node_b.url and bob.connected)
    await alice.send(cid, "after")
    await eventually(lambda: len(bob.timeline(cid)) == 3)

    assert bodies(bob, cid) == ["before", "during", "after"]
    assert_no_p0_breach(alice, bob)
