"""Receipts over REST: cursors only move forward, never past last_seq, and rollbacks are counted."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PeopleFactory, Person, create_conversation


async def conversation_with_messages(
    people: PeopleFactory, count: int
) -> tuple[Person, Person, int]:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    for n in range(count):
        response = await alice.http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(n), "body": str(n)}
        )
        assert response.status_code == 201
    return alice, bob, cid


async def receipt(person: Person, cid: int, **cursors: int) -> httpx.Response:
    return await person.http.post(f"/v1/conversations/{cid}/receipts", json=cursors)


async def cursors_of(person: Person, cid: int, viewer: Person) -> tuple[int, int]:
    """`person`'s (delivered_seq, read_seq) as `viewer` sees them in the member list."""
    response = await viewer.http.get(f"/v1/conversations/{cid}/members")
    assert response.status_code == 200
    (member,) = [m for m in response.json()["members"] if m["user_id"] == person.user.id]
    return member["delivered_seq"], member["read_seq"]


async def rollbacks_counted(http: httpx.AsyncClient) -> float:
    """`parley_read_rollback_detected_total{transport="rest"}` as /metrics shows it."""
    text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "parley_read_rollback_detected_total" and sample.labels == {
                "transport": "rest"
            }:
                return sample.value
    raise AssertionError("parley_read_rollback_detected_total{transport='rest'} is not exported")


async def test_receipt_moves_cursors_and_members_show_them(people: PeopleFactory) -> None:
    alice, bob, cid = await conversation_with_messages(people, 5)

    response = await receipt(bob, cid, delivered_seq=4, read_seq=2)

    assert response.status_code == 200
    assert response.json() == {"delivered_seq": 4, "read_seq": 2, "ignored": False}
    assert await cursors_of(bob, cid, viewer=alice) == (4, 2)
    assert await cursors_of(alice, cid, viewer=alice) == (0, 0)


async def test_read_implies_delivered(people: PeopleFactory) -> None:
    alice, bob, cid = await conversation_with_messages(people, 5)

    response = await receipt(bob, cid, read_seq=3)

    assert response.json() == {"delivered_seq": 3, "read_seq": 3, "ignored": False}
    assert await cursors_of(bob, cid, viewer=alice) == (3, 3)


async def test_delivered_alone_leaves_read_where_it_was(people: PeopleFactory) -> None:
    _alice, bob, cid = await conversation_with_messages(people, 5)
    await receipt(bob, cid, read_seq=2)

    response = await receipt(bob, cid, delivered_seq=5)

    assert response.json() == {"delivered_seq": 5, "read_seq": 2, "ignored": False}


async def test_receipt_up_to_last_seq_is_accepted(people: PeopleFactory) -> None:
    _alice, bob, cid = await conversation_with_messages(people, 3)

    response = await receipt(bob, cid, delivered_seq=3, read_seq=3)

    assert response.status_code == 200
    assert response.json() == {"delivered_seq": 3, "read_seq": 3, "ignored": False}


async def test_receipt_past_last_seq_is_refused_and_changes_nothing(
    people: PeopleFactory,
) -> None:
    alice, bob, cid = await conversation_with_messages(people, 3)
    await receipt(bob, cid, delivered_seq=2, read_seq=1)

    past_read = await receipt(bob, cid, read_seq=4)
    past_delivered = await receipt(bob, cid, delivered_seq=99, read_seq=2)

    for response in (past_read, past_delivered):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "ERR_RECEIPT_BEYOND_LAST_SEQ"
    assert await cursors_of(bob, cid, viewer=alice) == (2, 1)


async def test_receipt_in_an_empty_conversation_is_refused(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)

    response = await receipt(bob, cid, read_seq=1)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ERR_RECEIPT_BEYOND_LAST_SEQ"


async def test_lower_receipt_is_ignored_and_counted(people: PeopleFactory) -> None:
    alice, bob, cid = await conversation_with_messages(people, 5)
    await receipt(bob, cid, delivered_seq=4, read_seq=4)
    counted_before = await rollbacks_counted(bob.http)

    response = await receipt(bob, cid, read_seq=2)

    assert response.status_code == 200
    assert response.json() == {"delivered_seq": 4, "read_seq": 4, "ignored": True}
    assert await cursors_of(bob, cid, viewer=alice) == (4, 4)
    assert await rollbacks_counted(bob.http) == counted_before + 1


async def test_lower_delivered_is_ignored_while_a_higher_read_applies(
    people: PeopleFactory,
) -> None:
    alice, bob, cid = await conversation_with_messages(people, 5)
    await receipt(bob, cid, delivered_seq=4, read_seq=1)
    counted_before = await rollbacks_counted(bob.http)

    response = await receipt(bob, cid, delivered_seq=2, read_seq=3)

    assert response.json() == {"delivered_seq": 4, "read_seq": 3, "ignored": True}
    assert await cursors_of(bob, cid, viewer=alice) == (4, 3)
    assert await rollbacks_counted(bob.http) == counted_before + 1


async def test_repeating_the_same_receipt_is_not_a_rollback(people: PeopleFactory) -> None:
    _alice, bob, cid = await conversation_with_messages(people, 5)
    await receipt(bob, cid, read_seq=3)
    counted_before = await rollbacks_counted(bob.http)

    response = await receipt(bob, cid, read_seq=3)

    assert response.json() == {"delivered_seq": 3, "read_seq": 3, "ignored": False}
    assert await rollbacks_counted(bob.http) == counted_before


async def test_concurrent_receipts_end_at_the_highest(people: PeopleFactory) -> None:
    alice, bob, cid = await conversation_with_messages(people, 40)
    values = [7, 31, 3, 40, 12, 25, 1, 38, 19, 33, 2, 28, 9, 36, 14, 22, 5, 30, 11, 17]

    responses = await asyncio.gather(
        *(receipt(bob, cid, delivered_seq=v, read_seq=v // 2) for v in values)
    )

    assert all(r.status_code == 200 for r in responses)
    assert await cursors_of(bob, cid, viewer=alice) == (40, 20)
    # Each answer already includes its own values, whatever order the receipts landed in.
    for response, value in zip(responses, values, strict=True):
        answer = response.json()
        assert answer["delivered_seq"] >= value and answer["read_seq"] >= value // 2


async def test_non_member_receipt_is_not_found(people: PeopleFactory) -> None:
    _alice, _bob, cid = await conversation_with_messages(people, 2)
    eve = await people.add()

    response = await receipt(eve, cid, read_seq=1)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
