"""Changes to messages across nodes: an edit, a reaction and an unsend made on one `parley serve`
reach a member on another (PostgreSQL + Redis), live and after a resume there, in position
order among the messages. No faults here, so it runs beside the other tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration import test_multinode
from tests.integration.test_multinode import Cluster, create_conversation, post_message
from tests.support.streams import WsReader, eventually

cluster = test_multinode.cluster  # the fixture: nodes on this test's own database and prefix


def _positioned(reader: WsReader) -> list[dict[str, Any]]:
    return [e for e in reader.events if e.get("pos") is not None]


@pytest.mark.postgres
@pytest.mark.redis
async def test_changes_made_on_one_node_reach_members_on_another(cluster: Cluster) -> None:
    node_a, node_b = await cluster.start(2)
    alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
    cid = await create_conversation(node_a, alice, bob)
    bob_ws = await WsReader(node_b.url, bob.token).opened()
    sent = [(await post_message(node_a, alice, cid, f"m{n}")).json() for n in range(3)]
    await bob_ws.wait_for_messages(3)

    async with httpx.AsyncClient(base_url=node_a.url, headers=alice.headers) as http:
        url = f"/v1/conversations/{cid}/messages"
        assert (await http.patch(f"{url}/{sent[0]['id']}", json={"body": "m0!"})).is_success
        assert (await http.put(f"{url}/{sent[1]['id']}/reactions/ok")).is_success
        await eventually(lambda: len(bob_ws.of_type("message.updated")) == 2, what="2 changes")
        cursor = str(_positioned(bob_ws)[-1]["pos"])
        await bob_ws.close()
        assert (await http.delete(f"{url}/{sent[2]['id']}")).is_success
        await post_message(node_a, alice, cid, "m3")

    resumed = await WsReader(node_b.url, bob.token, cursor=cursor).opened()
    await eventually(lambda: len(_positioned(resumed)) == 2, what="the missed change and message")

    live = [(e["type"], e.get("change"), e["seq"]) for e in _positioned(bob_ws)]
    assert live == [
        ("message", None, 1),
        ("message", None, 2),
        ("message", None, 3),
        ("message.updated", "edited", 1),
        ("message.updated", "reactions", 2),
    ]
    missed = _positioned(resumed)
    assert [(e["type"], e.get("change"), e["seq"]) for e in missed] == [
        ("message.updated", "deleted", 3),
        ("message", None, 4),
    ]
    positions = [e["pos"] for e in _positioned(bob_ws) + missed]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    await resumed.close()
