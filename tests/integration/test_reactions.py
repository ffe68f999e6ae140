"""Reactions over REST, on SQLite and PostgreSQL: counts and who, idempotent under retries."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from parley.assembly import Services
from parley.core import limits
from tests.conftest import PeopleFactory, Person, create_conversation

THUMBS = "\N{THUMBS UP SIGN}"
PARTY = "\N{PARTY POPPER}"
FAMILY = "\N{MAN}\N{ZERO WIDTH JOINER}\N{WOMAN}\N{ZERO WIDTH JOINER}\N{GIRL}"


async def _message(person: Person, cid: int) -> dict[str, Any]:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "m", "body": "ship it?"}
    )
    return dict(response.json())


def _url(cid: int, mid: int, emoji: str = "") -> str:
    tail = f"/{quote(emoji, safe='')}" if emoji else ""
    return f"/v1/conversations/{cid}/messages/{mid}/reactions{tail}"


async def test_reactions_show_counts_and_who(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, carol)
    message = await _message(alice, cid)

    await bob.http.put(_url(cid, message["id"], THUMBS))
    await carol.http.put(_url(cid, message["id"], PARTY))
    last = await carol.http.put(_url(cid, message["id"], THUMBS))
    family = await alice.http.put(_url(cid, message["id"], FAMILY))

    assert last.status_code == 200
    assert last.json()["reactions"] == [
        {"emoji": THUMBS, "count": 2, "user_ids": [bob.user.id, carol.user.id]},
        {"emoji": PARTY, "count": 1, "user_ids": [carol.user.id]},
    ]
    assert family.json()["reactions"][-1]["emoji"] == FAMILY
    listed = (await alice.http.get(_url(cid, message["id"]))).json()["reactions"]
    assert [(r["emoji"], r["count"]) for r in listed] == [(THUMBS, 2), (PARTY, 1), (FAMILY, 1)]


async def test_retried_reactions_count_once_and_change_once(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    message = await _message(alice, cid)
    head = await services.stream.store.get_head()

    added = await asyncio.gather(
        *(bob.http.put(_url(cid, message["id"], THUMBS)) for _ in range(10))
    )
    after_add = await services.stream.store.get_head()
    removed = await asyncio.gather(
        *(bob.http.delete(_url(cid, message["id"], THUMBS)) for _ in range(10))
    )

    assert {r.status_code for r in added} == {r.status_code for r in removed} == {200}
    assert added[-1].json()["reactions"] == [
        {"emoji": THUMBS, "count": 1, "user_ids": [bob.user.id]}
    ]
    assert after_add == head + 1  # one reaction, one change
    assert await services.stream.store.get_head() == head + 2
    page = await alice.http.get(f"/v1/conversations/{cid}/messages")
    assert page.json()["messages"][0]["reactions"] == []


async def test_a_reaction_must_look_like_one(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    message = await _message(alice, cid)

    for bad in ("two words", "x" * (limits.EMOJI_MAX_CHARS + 1), "bell\u0007"):
        answer = await bob.http.put(_url(cid, message["id"], bad))
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["code"] == "ERR_VALIDATION"


async def test_a_message_takes_a_bounded_number_of_different_reactions(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    message = await _message(alice, cid)
    for n in range(limits.REACTIONS_PER_MESSAGE_MAX):
        assert (await bob.http.put(_url(cid, message["id"], f":e{n}:"))).status_code == 200

    one_more = await bob.http.put(_url(cid, message["id"], ":new:"))
    existing = await alice.http.put(_url(cid, message["id"], ":e0:"))

    assert one_more.status_code == 409
    assert one_more.json()["error"]["code"] == "ERR_TOO_MANY_REACTIONS"
    assert existing.status_code == 200


async def test_only_members_react(people: PeopleFactory) -> None:
    alice, eve = await people.add(), await people.add()
    cid = await create_conversation(alice)
    message = await _message(alice, cid)

    put = await eve.http.put(_url(cid, message["id"], THUMBS))
    listed = await eve.http.get(_url(cid, message["id"]))

    assert put.status_code == listed.status_code == 404
