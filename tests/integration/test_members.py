"""Conversation membership over REST: direct pairs, adding, removing and leaving."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from parley.assembly import Services
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.waiting import eventually


async def create(owner: Person, *names: str, kind: str = "group") -> httpx.Response:
    return await owner.http.post(
        "/v1/conversations", json={"kind": kind, "title": "t", "members": list(names)}
    )


async def member_ids(person: Person, cid: int) -> list[int]:
    response = await person.http.get(f"/v1/conversations/{cid}/members")
    assert response.status_code == 200, response.text
    return [m["user_id"] for m in response.json()["members"]]


async def conversation_ids(person: Person) -> list[int]:
    response = await person.http.get("/v1/conversations")
    return [c["id"] for c in response.json()["conversations"]]


async def say(person: Person, cid: int, body: str) -> httpx.Response:
    return await person.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": body, "body": body}
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# Direct conversations ------------------------------------------------------------------------


async def test_direct_conversation_is_created_once_per_pair(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()

    first = await create(alice, bob.user.name, kind="direct")
    again = await create(alice, bob.user.name, kind="direct")
    from_bob = await create(bob, alice.user.name, kind="direct")

    assert first.status_code == 201
    assert (again.status_code, from_bob.status_code) == (200, 200)
    assert first.json()["id"] == again.json()["id"] == from_bob.json()["id"]
    assert await conversation_ids(alice) == await conversation_ids(bob) == [first.json()["id"]]


async def test_concurrent_direct_creation_from_both_sides_makes_one_conversation(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()

    responses = await asyncio.gather(
        *(create(alice, bob.user.name, kind="direct") for _ in range(5)),
        *(create(bob, alice.user.name, kind="direct") for _ in range(5)),
    )

    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await conversation_ids(alice)) == 1


async def test_direct_conversations_of_different_pairs_are_different(
    people: PeopleFactory,
) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()

    with_bob = await create(alice, bob.user.name, kind="direct")
    with_carol = await create(alice, carol.user.name, kind="direct")

    assert (with_bob.status_code, with_carol.status_code) == (201, 201)
    assert with_bob.json()["id"] != with_carol.json()["id"]


async def test_direct_conversation_needs_exactly_one_other_member(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()

    alone = await create(alice, kind="direct")
    with_self = await create(alice, alice.user.name, kind="direct")
    three = await create(alice, bob.user.name, carol.user.name, kind="direct")

    for response in (alone, with_self, three):
        assert response.status_code == 422
        assert error_code(response) == "ERR_VALIDATION"
    assert await conversation_ids(alice) == []


async def test_unknown_member_names_are_refused(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()

    group = await create(alice, bob.user.name, "nobody-by-this-name")
    direct = await create(alice, "nobody-by-this-name", kind="direct")

    for response in (group, direct):
        assert response.status_code == 422
        assert error_code(response) == "ERR_VALIDATION"
        assert "nobody-by-this-name" in response.json()["error"]["message"]
    assert await conversation_ids(alice) == await conversation_ids(bob) == []


async def test_direct_conversation_members_cannot_change(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")

    add = await alice.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [carol.user.name]}
    )
    remove = await alice.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")
    leave = await bob.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")

    for response in (add, remove, leave):
        assert response.status_code == 409
        assert error_code(response) == "ERR_CONFLICT"
    assert await member_ids(alice, cid) == sorted([alice.user.id, bob.user.id])


# Groups --------------------------------------------------------------------------------------


async def test_added_member_sees_the_history(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    await say(alice, cid, "before carol")
    assert (await carol.http.get(f"/v1/conversations/{cid}/messages")).status_code == 404

    response = await alice.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [carol.user.name]}
    )

    assert response.status_code == 200
    assert carol.user.id in [m["user_id"] for m in response.json()["members"]]
    page = await carol.http.get(f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in page.json()["messages"]] == ["before carol"]
    assert (await say(carol, cid, "hello all")).status_code == 201
    assert cid in await conversation_ids(carol)


async def test_adding_an_existing_member_changes_nothing(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)

    response = await alice.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [bob.user.name, alice.user.name]}
    )

    assert response.status_code == 200
    assert sorted(m["user_id"] for m in response.json()["members"]) == sorted(
        [alice.user.id, bob.user.id]
    )


async def test_adding_an_unknown_name_is_refused(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice)

    response = await alice.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [bob.user.name, "no-such-user"]}
    )

    assert response.status_code == 422
    assert error_code(response) == "ERR_VALIDATION"
    assert await member_ids(alice, cid) == [alice.user.id]


async def test_non_member_cannot_add_members(people: PeopleFactory) -> None:
    alice, eve = await people.add(), await people.add()
    cid = await create_conversation(alice)

    response = await eve.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [eve.user.name]}
    )

    assert response.status_code == 404
    assert await member_ids(alice, cid) == [alice.user.id]


async def test_plain_member_cannot_remove_others(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, carol)

    remove_peer = await bob.http.delete(f"/v1/conversations/{cid}/members/{carol.user.id}")
    remove_owner = await bob.http.delete(f"/v1/conversations/{cid}/members/{alice.user.id}")

    for response in (remove_peer, remove_owner):
        assert response.status_code == 403
        assert error_code(response) == "ERR_FORBIDDEN"
    assert await member_ids(alice, cid) == sorted([alice.user.id, bob.user.id, carol.user.id])


async def test_owner_removes_a_member_who_then_gets_404(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    await say(alice, cid, "secret")

    response = await alice.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")

    assert response.status_code == 204
    assert await member_ids(alice, cid) == [alice.user.id]
    for answer in (
        await bob.http.get(f"/v1/conversations/{cid}"),
        await bob.http.get(f"/v1/conversations/{cid}/messages"),
        await bob.http.get(f"/v1/conversations/{cid}/members"),
        await say(bob, cid, "still here?"),
        await bob.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": 1}),
    ):
        assert answer.status_code == 404
        assert error_code(answer) == "ERR_NOT_FOUND"
    assert await conversation_ids(bob) == []


async def test_any_member_can_leave(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, carol)

    response = await carol.http.delete(f"/v1/conversations/{cid}/members/{carol.user.id}")

    assert response.status_code == 204
    assert await member_ids(alice, cid) == sorted([alice.user.id, bob.user.id])
    assert (await carol.http.get(f"/v1/conversations/{cid}/messages")).status_code == 404
    assert (await say(bob, cid, "carol left")).status_code == 201


async def test_removing_someone_who_is_not_a_member_is_not_found(people: PeopleFactory) -> None:
    alice, stranger = await people.add(), await people.add()
    cid = await create_conversation(alice)

    response = await alice.http.delete(f"/v1/conversations/{cid}/members/{stranger.user.id}")

    assert response.status_code == 404


# The send path's membership cache (per node) ----------------------------------------------------


def count_membership_queries(services: Services) -> list[int]:
    """How many keys each membership query asked for, from now on."""
    lookup = services.timeline._memberships
    fetch = lookup._fetch
    asked: list[int] = []

    async def counting(keys: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        asked.append(len(keys))
        return await fetch(keys)

    lookup._fetch = counting  # type: ignore[method-assign]
    return asked


async def test_repeated_sends_check_membership_with_one_query(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    asked = count_membership_queries(services)

    for n in range(3):
        assert (await say(bob, cid, f"hello {n}")).status_code == 201

    assert asked == [1]


async def test_a_removed_member_whose_membership_was_cached_is_refused_at_once(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    assert (await say(bob, cid, "one")).status_code == 201
    assert services.timeline.member_cache.get(cid, bob.user.id) is not None

    removed = await alice.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")

    assert removed.status_code == 204
    refused = await say(bob, cid, "two")
    assert refused.status_code == 404 and error_code(refused) == "ERR_NOT_FOUND"
    assert (await say(alice, cid, "still mine")).status_code == 201


async def test_a_member_who_leaves_and_is_added_again_sends_again(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    assert (await say(bob, cid, "one")).status_code == 201
    assert (await bob.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")).is_success
    assert (await say(bob, cid, "two")).status_code == 404  # not remembered as a non-member

    added = await alice.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [bob.user.name]}
    )

    assert added.status_code == 200, added.text
    assert (await say(bob, cid, "three")).status_code == 201


async def test_a_removal_that_commits_while_a_check_is_reading_is_not_cached_over(
    people: PeopleFactory, services: Services
) -> None:
    """A membership read just before the removal committed must not be cached after it."""
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    lookup = services.timeline._memberships
    fetch = lookup._fetch

    async def read_then_removed(keys: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        found = await fetch(keys)  # bob is still a member here
        await services.timeline.conversations.remove_member(cid, bob.user.id)
        return found

    lookup._fetch = read_then_removed  # type: ignore[method-assign]
    assert (await say(bob, cid, "raced the removal")).status_code == 201
    lookup._fetch = fetch  # type: ignore[method-assign]

    assert services.timeline.member_cache.get(cid, bob.user.id) is None
    assert (await say(bob, cid, "after")).status_code == 404


async def test_a_node_whose_bus_is_unhealthy_forgets_cached_memberships(
    people: PeopleFactory, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other nodes' removals may be lost with the bus: the node stops trusting its cache."""
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    assert (await say(bob, cid, "one")).status_code == 201
    assert services.timeline.member_cache.get(cid, bob.user.id) is not None

    monkeypatch.setattr(type(services.stream.bus), "healthy", property(lambda _bus: False))

    await eventually(lambda: len(services.timeline.member_cache) == 0, what="the cache cleared")
