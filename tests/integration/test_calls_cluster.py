"""Call signalling relayed between users on two real nodes sharing PostgreSQL and Redis:
offer → answer → ICE → hangup, offer → reject (to an SSE client), the ring timeout, reconnecting
while it rings, and a node dying with a ringing call.

Node A rings for 2 s, node B for 60 s: a deadline is set by the node that takes the offer and
stored, so whichever node sweeps first ends the call.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from parley.assembly import Services
from parley.settings import Settings
from tests.conftest import PostgresDatabases
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import SseReader, StreamReader, WsReader

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

OFFER_SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=offer\r\nt=0 0\r\n"
ANSWER_SDP = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=answer\r\nt=0 0\r\n"


def candidate(port: int) -> dict[str, Any]:
    return {
        "candidate": f"candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }


@dataclass
class CallCluster:
    nodes: list[ServerProcess]
    tokens: dict[str, str]
    ids: dict[str, int]
    readers: list[StreamReader] = field(default_factory=list)

    def http(self, node: int, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.nodes[node].url,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
            timeout=15,
        )

    async def ws(self, node: int, name: str, cursor: str | None = None) -> WsReader:
        reader = await WsReader(self.nodes[node].url, self.tokens[name], cursor).opened()
        self.readers.append(reader)
        assert reader.events[0]["type"] == "hello", reader.events
        return reader

    async def sse(self, node: int, name: str) -> SseReader:
        reader = await SseReader(self.nodes[node].url, self.tokens[name]).open()
        self.readers.append(reader)
        return reader

    async def room(self, owner: str, *others: str) -> int:
        async with self.http(0, owner) as http:
            response = await http.post(
                "/v1/conversations",
                json={"kind": "room", "title": "call room", "members": list(others)},
            )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def close_readers(self) -> None:
        for reader in self.readers:
            await reader.close()  # type: ignore[attr-defined]
        self.readers.clear()


@pytest.fixture(scope="module")
def cluster_nodes(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[ServerProcess], dict[str, str], dict[str, int]]]:
    workdir = tmp_path_factory.mktemp("calls-cluster")
    database_url = postgres_databases.fresh_blocking()
    common = {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
        "PARLEY_LOG_JSON": "false",
        "PARLEY_CALLS_SWEEP_SECONDS": "0.2",
    }
    nodes = [
        ServerProcess(free_port(), workdir, {**common, "PARLEY_CALLS_RING_SECONDS": ring})
        for ring in ("2", "60")
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(ServerProcess.start, nodes))

    async def add_users() -> tuple[dict[str, str], dict[str, int]]:
        services = Services.build(
            Settings(database_url=database_url, redis_url="", data_dir=workdir / "cli")
        )
        tokens, ids = {}, {}
        try:
            for name in ("alice", "bob"):
                user = await services.identity.do_create_user(name)
                tokens[name] = await services.identity.do_issue_token(user)
                ids[name] = user.id
        finally:
            await services.db.dispose()
        return tokens, ids

    with ThreadPoolExecutor(max_workers=1) as pool:
        tokens, ids = pool.submit(asyncio.run, add_users()).result()
    try:
        yield nodes, tokens, ids
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def cluster(
    cluster_nodes: tuple[list[ServerProcess], dict[str, str], dict[str, int]],
) -> AsyncIterator[CallCluster]:
    nodes, tokens, ids = cluster_nodes
    found = CallCluster(nodes, tokens, ids)
    try:
        yield found
    finally:
        await found.close_readers()


def is_call(kind: str, call_id: str) -> Any:
    return lambda e: e["type"] == kind and e.get("call", {}).get("id") == call_id


def is_ack(ref: str) -> Any:
    return lambda e: e["type"] in ("call.ack", "error") and e.get("ref") == ref


def is_record(call_id: str) -> Any:
    return lambda e: e["type"] == "message" and e["message"]["client_msg_id"] == f"call:{call_id}"


def offer_frame(room: int, call_id: str, to: int, device: str, ref: str = "o") -> dict[str, Any]:
    return {
        "type": "call.offer",
        "ref": ref,
        "conversation_id": room,
        "call_id": call_id,
        "device_id": device,
        "sdp": OFFER_SDP,
        "to_user_id": to,
    }


def new_call_id() -> str:
    return "c" + uuid.uuid4().hex


async def test_offer_answer_ice_hangup_relay_between_nodes(cluster: CallCluster) -> None:
    room = await cluster.room("alice", "bob")
    alice, bob = await cluster.ws(1, "alice"), await cluster.ws(0, "bob")  # B rings for 60 s
    call_id = new_call_id()

    await alice.send(offer_frame(room, call_id, cluster.ids["bob"], "a1", ref="o1"))
    ack = await alice.wait_for_event(is_ack("o1"))
    offer = await bob.wait_for_event(is_call("call.offer", call_id))
    await alice.send({"type": "call.ice", "call_id": call_id, "device_id": "a1",
                      "candidate": candidate(50001)})  # fmt: skip
    ice_to_bob = await bob.wait_for_event(is_call("call.ice", call_id))
    await bob.send({"type": "call.answer", "ref": "a1", "call_id": call_id, "device_id": "b1",
                    "sdp": ANSWER_SDP})  # fmt: skip
    answer = await alice.wait_for_event(is_call("call.answer", call_id))
    await bob.send({"type": "call.ice", "call_id": call_id, "device_id": "b1",
                    "candidate": candidate(50002)})  # fmt: skip
    ice_to_alice = await alice.wait_for_event(
        lambda e: is_call("call.ice", call_id)(e) and e["from_device"] == "b1"
    )
    await alice.send({"type": "call.hangup", "ref": "h1", "call_id": call_id, "device_id": "a1"})
    hangup = await bob.wait_for_event(is_call("call.hangup", call_id))
    records = [await r.wait_for_event(is_record(call_id)) for r in (alice, bob)]

    assert ack["type"] == "call.ack" and ack["call"]["state"] == "ringing", ack
    assert (offer["sdp"], offer["from_user_id"], offer["from_device"]) == (
        OFFER_SDP,
        cluster.ids["alice"],
        "a1",
    )
    assert offer["call"]["callee_id"] == cluster.ids["bob"]
    assert ice_to_bob["candidate"] == candidate(50001)
    assert answer["sdp"] == ANSWER_SDP and answer["call"]["state"] == "active"
    assert answer["call"]["callee_device"] == "b1"
    assert ice_to_alice["candidate"] == candidate(50002)
    assert (hangup["call"]["state"], hangup["call"]["end_reason"]) == ("ended", "hangup")
    assert {r["message"]["seq"] for r in records} == {1}
    assert all(r["message"]["metadata"]["call"]["id"] == call_id for r in records)
    # No SDP or candidate leaked to an error, and no one else's frames were refused.
    assert not [e for e in alice.events + bob.events if e["type"] == "error"]


async def test_offer_then_reject_reaches_the_caller_and_an_sse_callee(
    cluster: CallCluster,
) -> None:
    room = await cluster.room("alice", "bob")
    alice, bob = await cluster.ws(1, "alice"), await cluster.sse(0, "bob")
    call_id = new_call_id()

    await alice.send(offer_frame(room, call_id, cluster.ids["bob"], "a2"))
    await bob.wait_for_event(is_call("call.offer", call_id))
    async with cluster.http(0, "bob") as http:
        rejected = await http.post(f"/v1/calls/{call_id}/reject", json={"device_id": "b2"})
    reject = await alice.wait_for_event(is_call("call.reject", call_id))
    seen_by_bob = await bob.wait_for_event(is_call("call.reject", call_id))

    assert rejected.status_code == 200, rejected.text
    assert reject["call"]["end_reason"] == "rejected" and reject["from_device"] == "b2"
    assert seen_by_bob["call"]["state"] == "ended"
    record = await alice.wait_for_event(is_record(call_id))
    assert record["message"]["body"] == "📞 Call declined"


async def test_an_unanswered_call_is_missed_on_every_node(cluster: CallCluster) -> None:
    room = await cluster.room("alice", "bob")
    alice, bob = await cluster.ws(0, "alice"), await cluster.ws(1, "bob")
    call_id = new_call_id()

    await alice.send(offer_frame(room, call_id, cluster.ids["bob"], "a3"))  # node A: 2 s ring
    await bob.wait_for_event(is_call("call.offer", call_id))
    missed = [await r.wait_for_event(is_call("call.missed", call_id)) for r in (alice, bob)]
    record = await bob.wait_for_event(is_record(call_id))
    await bob.send({"type": "call.answer", "ref": "late", "call_id": call_id, "device_id": "b3",
                    "sdp": ANSWER_SDP})  # fmt: skip
    late = await bob.wait_for_event(is_ack("late"))

    assert all(m["call"]["state"] == "missed" for m in missed)
    assert missed[0]["call"]["end_reason"] == "timeout"
    assert record["message"]["body"] == "📞 Missed call"
    assert (late["type"], late["code"]) == ("error", "ERR_CALL_ENDED")


async def test_reconnecting_while_it_rings_gets_the_call_back_on_any_node(
    cluster: CallCluster,
) -> None:
    room = await cluster.room("alice", "bob")
    alice = await cluster.ws(1, "alice")
    call_id = new_call_id()
    await alice.send(offer_frame(room, call_id, cluster.ids["bob"], "a4", ref="o4"))
    await alice.wait_for_event(is_ack("o4"))
    for port in (50011, 50012):
        await alice.send({"type": "call.ice", "call_id": call_id, "device_id": "a4",
                          "candidate": candidate(port)})  # fmt: skip

    # bob was offline when it started ringing; he comes online on node A, drops, comes back on B.
    async def offered_candidates() -> list[dict[str, Any]]:
        probe = await cluster.ws(0, "bob")
        offer = await probe.wait_for_event(is_call("call.offer", call_id))
        await probe.close()
        return list(offer["candidates"])

    first_offer_candidates = await offered_candidates()
    while len(first_offer_candidates) < 2:  # the ICE frames may still be on their way
        first_offer_candidates = await offered_candidates()
    bob = await cluster.ws(1, "bob")
    again = await bob.wait_for_event(is_call("call.offer", call_id))
    # alice drops while it rings; bob answers meanwhile; alice comes back on the other node.
    await alice.close()
    await bob.send({"type": "call.answer", "ref": "a", "call_id": call_id, "device_id": "b4",
                    "sdp": ANSWER_SDP})  # fmt: skip
    await bob.wait_for_event(is_ack("a"))
    await bob.send({"type": "call.ice", "call_id": call_id, "device_id": "b4",
                    "candidate": candidate(50013)})  # fmt: skip
    async with cluster.http(1, "bob") as http:  # the ICE frame is stored before this answers
        assert (await http.get(f"/v1/calls/{call_id}")).status_code == 200
    back = await cluster.ws(0, "alice")
    sync = await back.wait_for_event(is_call("call.sync", call_id))

    assert first_offer_candidates == [candidate(50011), candidate(50012)]
    assert again["sdp"] == OFFER_SDP and again["call"]["state"] == "ringing"
    assert sync["call"]["state"] == "active" and sync["sdp"] == ANSWER_SDP
    assert sync["from_device"] == "b4"
    await back.send({"type": "call.hangup", "ref": "h", "call_id": call_id, "device_id": "a4"})
    assert (await bob.wait_for_event(is_call("call.hangup", call_id)))["call"]["state"] == "ended"


async def test_a_call_placed_on_a_node_that_dies_is_still_missed(cluster: CallCluster) -> None:
    """Last in the module: it kills node A."""
    room = await cluster.room("alice", "bob")
    bob = await cluster.ws(1, "bob")
    call_id = new_call_id()
    async with cluster.http(0, "alice") as http:  # node A: 2 s ring
        placed = await http.post(
            f"/v1/conversations/{room}/calls",
            json={"call_id": call_id, "device_id": "a5", "sdp": OFFER_SDP,
                  "to_user_id": cluster.ids["bob"]},
        )  # fmt: skip
    assert placed.status_code == 201, placed.text
    await bob.wait_for_event(is_call("call.offer", call_id))

    cluster.nodes[0].stop(signal.SIGKILL)
    missed = await bob.wait_for_event(is_call("call.missed", call_id))
    record = await bob.wait_for_event(is_record(call_id))

    assert missed["call"]["state"] == "missed"
    assert record["message"]["body"] == "📞 Missed call"
