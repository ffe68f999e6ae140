"""Replies, threads, mentions, unread counts and "mark all read" over REST, on SQLite and
PostgreSQL; and the events they emit, checked against their schemas."""

from __future__ import annotations

import json
from typing import Any

from parley.assembly import Services
from parley.core.events import MessageEvent, MessageUpdatedEvent, ThreadReceiptEvent
from parley.realtime.hub import Subscription
from tests.conftest import PeopleFactory, Person, create_conversation

_ids = iter(range(1, 10**9))


async def _send(person: Person, cid: int, body: str, **extra: Any) -> dict[str, Any]:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": f"c{next(_ids)}", "body": body, **extra},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _unread(person: Person, cid: int) -> dict[str, Any]:
    answer = await person.http.get("/v1/unread", params={"conversation_id": cid})
    assert answer.status_code == 200, answer.text
    (conversation,) = answer.json()["conversations"]
    return dict(conversation)


async def _listed(person: Person, cid: int) -> dict[str, Any]:
    answer = await person.http.get("/v1/conversations")
    return next(c for c in answer.json()["conversations"] if c["id"] == cid)


async def _events(sub: Subscription) -> list[dict[str, Any]]:
    return [json.loads(envelope.data) for envelope in await sub.wait(timeout=2)]


async def test_a_reply_quotes_a_message_of_the_same_conversation(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    other = await create_conversation(alice)
    question = await _send(alice, cid, "lunch?")
    elsewhere = await _send(alice, other, "private")

    reply = await _send(bob, cid, "yes", reply_to_id=question["id"])
    foreign = await bob.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": "x", "body": "peek", "reply_to_id": elsewhere["id"]},
    )

    assert reply["reply_to_id"] == question["id"] and reply["thread_root_id"] is None
    assert foreign.status_code == 422


async def test_thread_replies_count_on_their_root_and_join_its_thread(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    root = await _send(alice, cid, "plan for friday")
    first = await _send(bob, cid, "I'm in", thread_root_id=root["id"])
    # Naming a reply as the root means its thread.
    second = await _send(alice, cid, "great", thread_root_id=first["id"])

    thread = (await bob.http.get(f"/v1/conversations/{cid}/threads/{root['id']}")).json()

    assert second["thread_root_id"] == root["id"]
    assert thread["root"]["reply_count"] == 2
    assert thread["root"]["last_reply_seq"] == second["seq"]
    assert [r["body"] for r in thread["replies"]] == ["I'm in", "great"]
    listed = (await bob.http.get(f"/v1/conversations/{cid}/threads")).json()["threads"]
    assert [t["root"]["id"] for t in listed] == [root["id"]]
    await alice.http.delete(f"/v1/conversations/{cid}/messages/{second['id']}")
    again = (await bob.http.get(f"/v1/conversations/{cid}/messages/{root['id']}")).json()
    assert again["reply_count"] == 1


async def test_a_thread_has_its_own_unread_count_for_those_who_follow_it(
    people: PeopleFactory,
) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, carol)
    root = await _send(alice, cid, "design review")
    await _send(bob, cid, "looks good", thread_root_id=root["id"])
    await _send(bob, cid, "one nit", thread_root_id=root["id"])

    for_alice = await _unread(alice, cid)
    for_bob = await _unread(bob, cid)
    for_carol = await _unread(carol, cid)

    # The root's author follows the thread; replies count there, not in the conversation.
    assert for_alice["unread"] == 0
    assert [(t["root_id"], t["unread"]) for t in for_alice["threads"]] == [(root["id"], 2)]
    assert for_bob["threads"] == []  # his own replies
    assert for_carol["unread"] == 1 and for_carol["threads"] == []  # the root only

    mentioned = await _send(bob, cid, f"@{carol.user.name} thoughts?", thread_root_id=root["id"])
    for_carol = await _unread(carol, cid)
    assert [(t["unread"], t["mentions"]) for t in for_carol["threads"]] == [(3, 1)]
    assert for_carol["mentions"] == 1

    read = await carol.http.post(
        f"/v1/conversations/{cid}/threads/{root['id']}/read",
        json={"read_seq": mentioned["seq"]},
    )
    assert read.json() == {"read_seq": mentioned["seq"], "ignored": False}
    assert (await _unread(carol, cid))["threads"] == []
    assert (await _unread(carol, cid))["mentions"] == 0


async def test_thread_read_marks_only_move_forward(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    root = await _send(alice, cid, "root")
    replies = [await _send(bob, cid, f"r{n}", thread_root_id=root["id"]) for n in range(3)]
    url = f"/v1/conversations/{cid}/threads/{root['id']}/read"

    forward = await alice.http.post(url, json={"read_seq": replies[2]["seq"]})
    stale = await alice.http.post(url, json={"read_seq": replies[0]["seq"]})
    beyond = await alice.http.post(url, json={"read_seq": 10_000})
    not_a_root = await alice.http.post(
        f"/v1/conversations/{cid}/threads/{replies[0]['id']}/read", json={"read_seq": 1}
    )

    assert forward.json() == {"read_seq": replies[2]["seq"], "ignored": False}
    assert stale.json() == {"read_seq": replies[2]["seq"], "ignored": True}
    assert beyond.status_code == 422
    assert beyond.json()["error"]["code"] == "ERR_RECEIPT_BEYOND_LAST_SEQ"
    assert not_a_root.status_code == 404


async def test_mentions_count_until_read_and_only_name_members(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob, carol, eve = [await people.add() for _ in range(4)]
    cid = await create_conversation(alice, bob, carol)

    named = await _send(alice, cid, f"hi @{bob.user.name} and @{eve.user.name}.")
    everyone = await _send(alice, cid, "standup in 5 @here")

    assert named["mentions"] == [bob.user.id]  # eve is not a member
    assert everyone["mentions"] == [] and everyone["mentions_here"] is True
    assert (await _listed(bob, cid))["mentions"] == 2
    assert (await _listed(carol, cid))["mentions"] == 1
    assert (await _listed(alice, cid))["mentions"] == 0
    reached = await services.timeline.list_mentions(everyone["id"])
    assert {(m.user_id, m.via_here) for m in reached} == {
        (bob.user.id, True),
        (carol.user.id, True),
    }
    await bob.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": everyone["seq"]})
    assert (await _listed(bob, cid))["mentions"] == 0


async def test_editing_a_mention_in_or_out_updates_it(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, carol)
    sent = await _send(alice, cid, f"ask @{bob.user.name}")

    edited = await alice.http.patch(
        f"/v1/conversations/{cid}/messages/{sent['id']}",
        json={"body": f"ask @{carol.user.name}"},
    )

    assert edited.json()["mentions"] == [carol.user.id]
    assert (await _listed(bob, cid))["mentions"] == 0
    assert (await _listed(carol, cid))["mentions"] == 1


async def test_mark_all_read_clears_conversations_and_threads(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    one = await create_conversation(alice, bob)
    two = await create_conversation(alice, bob)
    root = await _send(alice, one, "root")
    await _send(bob, one, f"@{alice.user.name} reply", thread_root_id=root["id"])
    await _send(bob, two, "hello")
    await _send(bob, two, "again")
    before = (await alice.http.get("/v1/unread")).json()
    assert (before["unread"], before["mentions"]) == (3, 1)

    after = await alice.http.post("/v1/unread/read-all", json={})

    assert after.status_code == 200
    assert (after.json()["unread"], after.json()["mentions"]) == (0, 0)
    assert all(c["read_seq"] == c["last_seq"] for c in after.json()["conversations"])
    assert (await _listed(alice, two))["unread"] == 0


async def test_unread_and_threads_are_for_members_only(people: PeopleFactory) -> None:
    alice, eve = await people.add(), await people.add()
    cid = await create_conversation(alice)
    root = await _send(alice, cid, "root")

    for answer in (
        await eve.http.get("/v1/unread", params={"conversation_id": cid}),
        await eve.http.post("/v1/unread/read-all", json={"conversation_id": cid}),
        await eve.http.get(f"/v1/conversations/{cid}/threads"),
        await eve.http.get(f"/v1/conversations/{cid}/threads/{root['id']}"),
        await eve.http.post(
            f"/v1/conversations/{cid}/threads/{root['id']}/read", json={"read_seq": 1}
        ),
    ):
        assert answer.status_code == 404, answer.text


async def test_each_change_emits_its_event_to_members_and_thread_reads_to_the_reader(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    hub = services.stream.live_hub
    alice_sub = hub.subscribe(alice.user.id, [cid])
    bob_sub = hub.subscribe(bob.user.id, [cid])
    root = await _send(alice, cid, "root")
    reply = await _send(bob, cid, "reply", thread_root_id=root["id"])
    await alice.http.patch(f"/v1/conversations/{cid}/messages/{root['id']}", json={"body": "r!"})
    await bob.http.put(f"/v1/conversations/{cid}/messages/{root['id']}/reactions/ok")
    await bob.http.delete(f"/v1/conversations/{cid}/messages/{reply['id']}")
    await alice.http.post(
        f"/v1/conversations/{cid}/threads/{root['id']}/read", json={"read_seq": reply["seq"]}
    )

    seen: list[dict[str, Any]] = []
    while len(seen) < 6:
        got = await _events(alice_sub)
        assert got, f"only {seen}"
        seen += got
    bob_seen = await _events(bob_sub)

    models = {
        "message": MessageEvent,
        "message.updated": MessageUpdatedEvent,
        "thread.receipt": ThreadReceiptEvent,
    }
    for event in seen:
        models[event["type"]].model_validate(event)
    assert [e["type"] for e in seen] == [
        "message",
        "message",
        "message.updated",
        "message.updated",
        "message.updated",
        "thread.receipt",
    ]
    assert [e.get("change") for e in seen[2:5]] == ["edited", "reactions", "deleted"]
    positions = [e["pos"] for e in seen[:5]]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert "thread.receipt" not in {e["type"] for e in bob_seen}
    hub.unsubscribe(alice_sub)
    hub.unsubscribe(bob_sub)
