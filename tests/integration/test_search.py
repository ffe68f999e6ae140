"""Search over REST, on SQLite (FTS5) and PostgreSQL (tsvector + GIN): words, filters and
snippets; and, as a property over random conversations, that results are exactly the matching
messages the searcher can read — never another conversation's, never a tombstone."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.assembly import Services
from parley.core.models import ConversationKind, User
from parley.services.search import SearchFilters
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation

_ids = itertools.count(1)


async def _send(person: Person, cid: int, body: str, **extra: Any) -> dict[str, Any]:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": f"c{next(_ids)}", "body": body, **extra},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _search(person: Person, q: str = "", **params: Any) -> list[dict[str, Any]]:
    answer = await person.http.get("/v1/search", params={"q": q, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def _bodies(results: list[dict[str, Any]]) -> list[str]:
    return [r["message"]["body"] for r in results]


async def test_search_finds_every_word_in_any_case_newest_first(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    await _send(alice, cid, "The invoice is ready")
    await _send(bob, cid, "Which INVOICE? the March one")
    await _send(alice, cid, "Счёт за март готов")
    await _send(alice, cid, "nothing to see")

    assert _bodies(await _search(bob, "invoice")) == [
        "Which INVOICE? the March one",
        "The invoice is ready",
    ]
    assert _bodies(await _search(bob, "invoice march")) == ["Which INVOICE? the March one"]
    assert _bodies(await _search(bob, "МАРТ")) == ["Счёт за март готов"]  # noqa: RUF001
    assert _bodies(await _search(bob, "inv*")) == _bodies(await _search(bob, "invoice"))
    assert await _search(bob, "invoices") == []


async def test_snippets_mark_hits_as_plain_text(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    long_start = "word " * 60
    await _send(alice, cid, long_start + "<b>deploy</b> now, deploy later")

    (result,) = await _search(bob, "deploy")

    fragments = result["snippet"]
    assert [f["text"] for f in fragments if f["hit"]] == ["deploy", "deploy"]
    assert fragments[0] == {"text": "…", "hit": False}
    joined = "".join(f["text"] for f in fragments)
    assert "<b>deploy</b> now, deploy later" in joined  # text as written, never markup


async def test_filters_narrow_by_conversation_author_date_and_attachment(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    one = await create_conversation(alice, bob)
    two = await create_conversation(alice, bob)
    upload = await alice.http.post(
        f"/v1/conversations/{one}/attachments", files={"file": ("r.txt", b"report")}
    )
    await _send(alice, one, "report attached", attachments=[upload.json()["id"]])
    await _send(bob, one, "report received")
    await _send(bob, two, "report elsewhere")
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()

    assert _bodies(await _search(bob, "report", conversation_id=two)) == ["report elsewhere"]
    assert _bodies(await _search(bob, f"report in:{two}")) == ["report elsewhere"]
    assert _bodies(await _search(bob, f"report from:{alice.user.name}")) == ["report attached"]
    assert _bodies(await _search(bob, "report", **{"from": alice.user.name})) == ["report attached"]
    assert _bodies(await _search(bob, "report has:attachment")) == ["report attached"]
    assert _bodies(await _search(bob, "", has="attachment")) == ["report attached"]
    assert len(await _search(bob, f"report after:{today.isoformat()}")) == 3
    assert await _search(bob, f"report after:{tomorrow}") == []
    assert len(await _search(bob, "report", before=tomorrow)) == 3
    assert await _search(bob, "report from:nobody-by-that-name") == []


async def test_search_never_returns_what_the_user_cannot_read(people: PeopleFactory) -> None:
    alice, bob, eve = await people.add(), await people.add(), await people.add()
    shared = await create_conversation(alice, bob, eve)
    private = await create_conversation(alice, bob)
    await _send(alice, private, "secret plan")
    gone = await _send(alice, shared, "secret to unsend")
    await alice.http.delete(f"/v1/conversations/{shared}/messages/{gone['id']}")
    edited = await _send(alice, shared, "secret old words")
    await alice.http.patch(
        f"/v1/conversations/{shared}/messages/{edited['id']}", json={"body": "new words"}
    )

    assert await _search(eve, "secret") == []
    assert await _search(eve, f"secret in:{private}") == []
    assert _bodies(await _search(eve, "words")) == ["new words"]
    assert _bodies(await _search(bob, "secret")) == ["secret plan"]
    await bob.http.delete(f"/v1/conversations/{private}/members/{bob.user.id}")
    assert await _search(bob, "secret") == []


async def test_results_page_with_the_cursor(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    for n in range(5):
        await _send(alice, cid, f"page item {n}")

    first = (await bob.http.get("/v1/search", params={"q": "item", "limit": 2})).json()
    second = (
        await bob.http.get(
            "/v1/search", params={"q": "item", "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()

    assert _bodies(first["results"]) == ["page item 4", "page item 3"]
    assert _bodies(second["results"]) == ["page item 2", "page item 1"]


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": "   "},
        {"q": "x after:yesterday"},
        {"q": "x from:no/slash"},
        {"q": "x has:link"},
        {"q": "x" * 501},
        {"q": " ".join(f"w{n}" for n in range(11))},
        {"q": "x", "limit": 0},
        {"q": "x", "cursor": "abc"},
        {"q": "x", "after": "31/01/2026"},
        {"q": "\x00"},
    ],
)
async def test_bad_searches_get_a_clear_422(people: PeopleFactory, params: dict[str, Any]) -> None:
    alice = await people.add()

    answer = await alice.http.get("/v1/search", params=params)

    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in {"ERR_VALIDATION", "ERR_INVALID_TEXT"}


async def test_search_needs_a_signed_in_user(people: PeopleFactory) -> None:
    anonymous = people.client()

    answer = await anonymous.get("/v1/search", params={"q": "x"})

    assert answer.status_code == 401


# -- the property: results are exactly the readable matches ------------------------------------

WORDS = ["alpha", "bravo", "charlie", "delta"]
USERS = 3


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """Three users, up to three conversations with any membership, messages by members, some
    deleted, and some members who left afterwards."""
    conversations = []
    for _ in range(draw(st.integers(1, 3))):
        members = draw(st.sets(st.integers(0, USERS - 1), min_size=1))
        owner = min(members)
        messages = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(sorted(members)),
                    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
                    st.booleans(),  # deleted afterwards
                ),
                max_size=5,
            )
        )
        leavers = (
            draw(st.sets(st.sampled_from(sorted(members - {owner})))) if len(members) > 1 else set()
        )
        conversations.append(
            {"owner": owner, "members": members, "messages": messages, "leavers": leavers}
        )
    return {"conversations": conversations}


async def _check_world(services: Services, users: list[User], world: dict[str, Any]) -> None:
    timeline = services.timeline
    readable: dict[int, set[int]] = {n: set() for n in range(USERS)}
    words_of: dict[int, set[str]] = {}
    for spec in world["conversations"]:
        owner = users[spec["owner"]]
        others = [users[n].name for n in spec["members"] if n != spec["owner"]]
        conversation, _ = await timeline.do_create_conversation(
            owner, kind=ConversationKind.GROUP, title="t", member_names=others
        )
        for sender, words, deleted in spec["messages"]:
            appended = await timeline.do_send(
                users[sender],
                conversation.id,
                client_msg_id=f"p{next(_ids)}",
                body=" ".join(words),
                attachment_ids=[],
                metadata={},
            )
            message = appended.message
            if deleted:
                await timeline.do_delete_message(users[sender], conversation.id, message.id)
                continue
            words_of[message.id] = set(words)
            for n in spec["members"] - spec["leavers"]:
                readable[n].add(message.id)
        for n in spec["leavers"]:
            await timeline.do_remove_member(users[n], conversation.id, users[n].id)
    for n, user in enumerate(users):
        for word in WORDS:
            query = services.search.check_query(word, SearchFilters())
            page = await services.search.search(user, query, cursor=None, limit=100)
            found = {hit.message.id for hit in page.hits}
            expected = {mid for mid in readable[n] if word in words_of[mid]}
            assert found == expected, (user.name, word)


def test_search_results_are_exactly_the_readable_matches(settings_: Settings) -> None:
    with asyncio.Runner() as runner:
        services = Services.build(settings_)
        runner.run(services.start())
        try:
            counter = itertools.count(1)

            @settings(
                max_examples=25,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            )
            @given(world=worlds())
            def check(world: dict[str, Any]) -> None:
                # Fresh users per example: what they can read is only this example's world.
                round_ = next(counter)
                users = [
                    runner.run(services.identity.do_create_user(f"p{round_}u{n}"))
                    for n in range(USERS)
                ]
                runner.run(_check_world(services, users, world))

            check()
        finally:
            runner.run(services.stop())


@pytest.fixture
def settings_(settings: Settings) -> Settings:
    return settings
