"""The timeline contract over REST, on SQLite and PostgreSQL: seq, idempotency, paging."""

from __future__ import annotations

import asyncio

from parley.assembly import Services
from tests.conftest import PeopleFactory, create_conversation


async def test_send_returns_201_with_seq_once_durable(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)

    response = await alice.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "m1", "body": "hello"}
    )

    assert response.status_code == 201
    message = response.json()
    assert message["seq"] == 1 and message["body"] == "hello"
    page = await bob.http.get(f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in page.json()["messages"]] == ["hello"]


async def test_retry_with_same_client_msg_id_returns_original(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    url = f"/v1/conversations/{cid}/messages"
    first = await alice.http.post(url, json={"client_msg_id": "same", "body": "one"})

    retry = await alice.http.post(url, json={"client_msg_id": "same", "body": "one"})

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json() == first.json()
    page = await alice.http.get(url)
    assert len(page.json()["messages"]) == 1


async def test_concurrent_retries_store_exactly_one_message(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    url = f"/v1/conversations/{cid}/messages"

    responses = await asyncio.gather(
        *(alice.http.post(url, json={"client_msg_id": "burst", "body": "x"}) for _ in range(20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    page = await alice.http.get(url)
    assert [m["seq"] for m in page.json()["messages"]] == [1]


async def test_same_client_msg_id_from_two_senders_are_two_messages(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    url = f"/v1/conversations/{cid}/messages"

    a = await alice.http.post(url, json={"client_msg_id": "1", "body": "from alice"})
    b = await bob.http.post(url, json={"client_msg_id": "1", "body": "from bob"})

    assert (a.status_code, b.status_code) == (201, 201)
    assert (a.json()["seq"], b.json()["seq"]) == (1, 2)


async def test_many_concurrent_senders_get_gapless_seq(
    people: PeopleFactory, services: Services
) -> None:
    senders = [await people.add() for _ in range(8)]
    cid = await create_conversation(senders[0], *senders[1:])
    url = f"/v1/conversations/{cid}/messages"

    async def send_all(index: int) -> list[int]:
        seqs = []
        for n in range(25):
            response = await senders[index].http.post(
                url, json={"client_msg_id": f"{index}-{n}", "body": f"{index}:{n}"}
            )
            assert response.status_code == 201, response.text
            seqs.append(response.json()["seq"])
        return seqs

    per_sender = await asyncio.gather(*(send_all(i) for i in range(len(senders))))

    for seqs in per_sender:  # each sender's messages keep the order they were sent in
        assert seqs == sorted(seqs)
    everything = sorted(seq for seqs in per_sender for seq in seqs)
    assert everything == list(range(1, 201))
    stored = []
    after = 0
    while True:
        page = (await senders[0].http.get(url, params={"after": after, "limit": 64})).json()
        if not page["messages"]:
            break
        stored += page["messages"]
        after = page["messages"][-1]["seq"]
    assert [m["seq"] for m in stored] == list(range(1, 201))
    assert page["last_seq"] == 200


async def test_paging_after_and_before_is_ordered_by_seq(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)
    url = f"/v1/conversations/{cid}/messages"
    for n in range(1, 11):
        await alice.http.post(url, json={"client_msg_id": str(n), "body": str(n)})

    after = await alice.http.get(url, params={"after": 3, "limit": 4})
    before = await alice.http.get(url, params={"before": 8, "limit": 3})
    window = await alice.http.get(url, params={"after": 2, "before": 6})

    assert [m["seq"] for m in after.json()["messages"]] == [4, 5, 6, 7]
    assert [m["seq"] for m in before.json()["messages"]] == [5, 6, 7]
    assert [m["seq"] for m in window.json()["messages"]] == [3, 4, 5]


async def test_list_conversations_shows_last_seq_and_unread(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    for n in range(3):
        await alice.http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(n), "body": "hi"}
        )

    bobs = (await bob.http.get("/v1/conversations")).json()["conversations"]
    alices = (await alice.http.get("/v1/conversations")).json()["conversations"]

    assert [(c["id"], c["last_seq"], c["unread"]) for c in bobs] == [(cid, 3, 3)]
    assert alices[0]["unread"] == 0  # your own messages are not unread
    await bob.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": 2})
    bobs = (await bob.http.get("/v1/conversations")).json()["conversations"]
    assert bobs[0]["unread"] == 1


async def test_concurrent_sends_to_many_conversations_keep_each_gapless(
    people: PeopleFactory,
) -> None:
    alice = await people.add()
    conversations = [await create_conversation(alice) for _ in range(4)]

    responses = await asyncio.gather(
        *(
            alice.http.post(
                f"/v1/conversations/{cid}/messages",
                json={"client_msg_id": f"{cid}-{n}", "body": "x"},
            )
            for n in range(15)
            for cid in conversations
        )
    )

    assert all(r.status_code == 201 for r in responses)
    for cid in conversations:
        seqs = sorted(r.json()["seq"] for r in responses if r.json()["conversation_id"] == cid)
        assert seqs == list(range(1, 16))
    positions = sorted(r.json()["pos"] for r in responses)
    assert positions == list(range(positions[0], positions[0] + 60))
