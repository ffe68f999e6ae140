"""The send path's membership cache across nodes (PostgreSQL + Redis): a member removed on one
`parley serve` is refused there at once, and on another node as soon as that node's hub has
seen the `conversation.updated` event. The nodes keep memberships for a minute, longer than
any wait here, so only the event can refuse the send in time. No faults: runs beside the rest.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration import test_multinode
from tests.integration.test_multinode import Cluster, create_conversation, post_message
from tests.support.cluster import send_frame
from tests.support.servers import ServerProcess
from tests.support.streams import WsReader, eventually

cluster = test_multinode.cluster  # the fixture: nodes on this test's own database and prefix

_HITS = re.compile(r'^parley_membership_cache_total\{result="hit"\} (\S+)$', re.MULTILINE)


async def _cache_hits(node: ServerProcess) -> float:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        found = _HITS.search((await http.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_member_removed_on_one_node_is_refused_on_every_node(cluster: Cluster) -> None:
    node_a, node_b = await cluster.start(2, PARLEY_MEMBERSHIP_CACHE_SECONDS="60")
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    bob_ws = await WsReader(node_a.url, bob.token).opened()

    # Bob's membership is in both nodes' caches: sends over WebSocket on A, over REST on B.
    for n in range(2):
        assert (await post_message(node_b, bob, cid, f"b{n}")).status_code == 201
        await bob_ws.send(send_frame(cid, f"a{n}"))
        await eventually(lambda n=n: f"a{n}" in bob_ws.acks(), what=f"the ack of a{n}")
    assert await _cache_hits(node_a) >= 1
    assert await _cache_hits(node_b) >= 1

    async with httpx.AsyncClient(base_url=node_a.url, headers=alice.headers) as http:
        removed = await http.delete(f"/v1/conversations/{cid}/members/{bob.id}")
    assert removed.status_code == 204

    # The node that removed him: his very next send is refused.
    await bob_ws.send(send_frame(cid, "a-after"))
    error = await eventually(
        lambda: next((e for e in bob_ws.of_type("error") if e.get("ref") == "a-after"), None),
        what="the refusal of a-after",
    )
    assert error["code"] == "ERR_NOT_FOUND"
    assert "a-after" not in bob_ws.acks()

    # The other node: refused once its hub has the change, long before the cache's TTL.
    async def refused_on_b() -> bool:
        return (await post_message(node_b, bob, cid, "b-after")).status_code == 404

    await eventually(refused_on_b, what="node B to refuse bob's send")
    async with httpx.AsyncClient(base_url=node_b.url, headers=alice.headers) as http:
        stored = (await http.get(f"/v1/conversations/{cid}/messages")).json()["messages"]
    assert "a-after" not in {m["client_msg_id"] for m in stored}
    await bob_ws.close()
