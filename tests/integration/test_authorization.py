"""Authorization over REST: only members read or write a conversation.

Anyone else gets the 404 a missing conversation gets, byte for byte, so ids cannot be probed;
callers without a live token get 401 before anything is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from parley.core import limits
from parley.core.models import Role
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.integration.stored import assert_error, what_is_stored


@dataclass
class Room:
    """alice owns a conversation with bob holding two messages; carol is in another one."""

    alice: Person
    bob: Person
    carol: Person
    cid: int
    first: int = 0  # alice's first message


@pytest.fixture
async def room(people: PeopleFactory) -> Room:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    ids = []
    for n in (1, 2):
        sent = await alice.http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": f"m{n}", "body": f"{n}"}
        )
        assert sent.status_code == 201
        ids.append(sent.json()["id"])
    await create_conversation(carol)
    return Room(alice, bob, carol, cid, ids[0])


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: dict[str, Any] | None = None

    async def call(self, client: httpx.AsyncClient, cid: int, room: Room) -> httpx.Response:
        path = self.path.format(cid=cid, owner=room.alice.user.id, first=room.first)
        return await client.request(self.method, path, json=self.body)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


CONVERSATION_ENDPOINTS = [
    Endpoint("GET", "/v1/conversations/{cid}"),
    Endpoint("GET", "/v1/conversations/{cid}/messages"),
    Endpoint("POST", "/v1/conversations/{cid}/messages", {"client_msg_id": "in", "body": "hi"}),
    Endpoint("POST", "/v1/conversations/{cid}/receipts", {"read_seq": 2}),
    Endpoint("GET", "/v1/conversations/{cid}/members"),
    Endpoint("POST", "/v1/conversations/{cid}/members", {"members": ["nobody-else"]}),
    Endpoint("DELETE", "/v1/conversations/{cid}/members/{owner}"),
    Endpoint("POST", "/v1/conversations/{cid}/typing"),
    # The rich timeline (docs/timeline.md).
    Endpoint("GET", "/v1/conversations/{cid}/messages/{first}"),
    Endpoint("PATCH", "/v1/conversations/{cid}/messages/{first}", {"body": "changed"}),
    Endpoint("DELETE", "/v1/conversations/{cid}/messages/{first}"),
    Endpoint("GET", "/v1/conversations/{cid}/messages/{first}/history"),
    Endpoint("GET", "/v1/conversations/{cid}/messages/{first}/reactions"),
    Endpoint("PUT", "/v1/conversations/{cid}/messages/{first}/reactions/ok"),
    Endpoint("DELETE", "/v1/conversations/{cid}/messages/{first}/reactions/ok"),
    Endpoint("GET", "/v1/conversations/{cid}/threads"),
    Endpoint("GET", "/v1/conversations/{cid}/threads/{first}"),
    Endpoint("POST", "/v1/conversations/{cid}/threads/{first}/read", {"read_seq": 1}),
]
endpoints = pytest.mark.parametrize("endpoint", CONVERSATION_ENDPOINTS, ids=str)


async def outsider(room: Room, people: PeopleFactory, who: str) -> Person:
    """Someone who is not a member of the room, in one of the ways that can happen."""
    if who == "never a member":
        return room.carol
    if who == "admin, not a member":
        return await people.add(role=Role.ADMIN)
    removed = await room.alice.http.delete(
        f"/v1/conversations/{room.cid}/members/{room.bob.user.id}"
    )
    assert removed.status_code == 204
    return room.bob


outsiders = pytest.mark.parametrize(
    "who", ["never a member", "admin, not a member", "removed member"]
)


@endpoints
@outsiders
async def test_non_member_gets_404_and_changes_nothing(
    room: Room, people: PeopleFactory, endpoint: Endpoint, who: str
) -> None:
    stranger = await outsider(room, people, who)
    before = await what_is_stored(room.alice, room.cid)

    response = await endpoint.call(stranger.http, room.cid, room)

    assert_error(response, 404, "ERR_NOT_FOUND")
    assert await what_is_stored(room.alice, room.cid) == before


@endpoints
@outsiders
async def test_foreign_and_missing_conversation_look_the_same(
    room: Room, people: PeopleFactory, endpoint: Endpoint, who: str
) -> None:
    stranger = await outsider(room, people, who)

    foreign = await endpoint.call(stranger.http, room.cid, room)
    missing = [
        await endpoint.call(stranger.http, missing_id, room)
        for missing_id in (room.cid + 100, limits.SEQ_MAX)
    ]

    for other in missing:
        assert other.status_code == foreign.status_code == 404
        assert other.headers.multi_items() == foreign.headers.multi_items()
        assert other.content == foreign.content


async def test_members_can_use_every_conversation_endpoint(room: Room) -> None:
    statuses = {
        str(endpoint): (await endpoint.call(room.bob.http, room.cid, room)).status_code
        for endpoint in CONVERSATION_ENDPOINTS
        if endpoint.method != "DELETE"
    }
    bob_deletes_alices = await room.bob.http.delete(
        f"/v1/conversations/{room.cid}/messages/{room.first}"
    )
    owner_removes_bob = await room.alice.http.delete(
        f"/v1/conversations/{room.cid}/members/{room.bob.user.id}"
    )

    assert statuses == {
        "GET /v1/conversations/{cid}": 200,
        "GET /v1/conversations/{cid}/messages": 200,
        "POST /v1/conversations/{cid}/messages": 201,
        "POST /v1/conversations/{cid}/receipts": 200,
        "GET /v1/conversations/{cid}/members": 200,
        # The endpoint is open to members; the name itself is unknown.
        "POST /v1/conversations/{cid}/members": 422,
        "POST /v1/conversations/{cid}/typing": 204,
        "GET /v1/conversations/{cid}/messages/{first}": 200,
        # Only its author edits a message (bob is a member, alice wrote it).
        "PATCH /v1/conversations/{cid}/messages/{first}": 403,
        "GET /v1/conversations/{cid}/messages/{first}/history": 200,
        "GET /v1/conversations/{cid}/messages/{first}/reactions": 200,
        "PUT /v1/conversations/{cid}/messages/{first}/reactions/ok": 200,
        "GET /v1/conversations/{cid}/threads": 200,
        "GET /v1/conversations/{cid}/threads/{first}": 200,
        "POST /v1/conversations/{cid}/threads/{first}/read": 200,
    }
    assert_error(bob_deletes_alices, 403, "ERR_FORBIDDEN")
    assert owner_removes_bob.status_code == 204


async def test_conversation_list_shows_only_your_own(room: Room) -> None:
    carols = (await room.carol.http.get("/v1/conversations")).json()["conversations"]
    bobs = (await room.bob.http.get("/v1/conversations")).json()["conversations"]

    assert room.cid not in [c["id"] for c in carols]
    assert [c["id"] for c in bobs] == [room.cid]


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        pytest.param(None, "ERR_UNAUTHENTICATED", id="no-header"),
        pytest.param("", "ERR_UNAUTHENTICATED", id="empty"),
        pytest.param("Bearer", "ERR_UNAUTHENTICATED", id="scheme-only"),
        pytest.param("Bearer ", "ERR_UNAUTHENTICATED", id="scheme-and-space"),
        pytest.param("Basic YWxpY2U6cHc=", "ERR_UNAUTHENTICATED", id="basic-auth"),
        pytest.param("Token pk_abc", "ERR_UNAUTHENTICATED", id="other-scheme"),
        pytest.param("Bearer pk_abc", "ERR_INVALID_CREDENTIALS", id="unknown-token"),
        pytest.param("bearer pk_" + "A" * 43, "ERR_INVALID_CREDENTIALS", id="token-shaped"),
        pytest.param("Bearer " + "x" * 8_000, "ERR_INVALID_CREDENTIALS", id="huge-token"),
        pytest.param("Bearer pk_\x00", "ERR_INVALID_CREDENTIALS", id="nul-in-token"),
    ],
)
async def test_missing_or_invalid_token_gets_401_everywhere(
    room: Room, people: PeopleFactory, authorization: str | None, code: str
) -> None:
    anonymous = people.client()
    headers = {} if authorization is None else {"Authorization": authorization}
    anonymous.headers.update(headers)
    before = await what_is_stored(room.alice, room.cid)
    responses = [
        await anonymous.get("/v1/me"),
        await anonymous.get("/v1/conversations"),
        await anonymous.post("/v1/conversations", json={"kind": "group", "title": "x"}),
    ]
    for endpoint in CONVERSATION_ENDPOINTS:
        for cid in (room.cid, limits.SEQ_MAX):
            responses.append(await endpoint.call(anonymous, cid, room))

    for response in responses:
        assert_error(response, 401, code)
        assert response.content == responses[0].content
    assert await what_is_stored(room.alice, room.cid) == before


async def test_tampered_token_is_refused(room: Room) -> None:
    tampered = room.bob.token[:-1] + ("A" if room.bob.token[-1] != "A" else "B")
    room.bob.http.headers["Authorization"] = f"Bearer {tampered}"

    response = await room.bob.http.get(f"/v1/conversations/{room.cid}")

    assert_error(response, 401, "ERR_INVALID_CREDENTIALS")


async def test_api_responses_are_private_and_never_stored(
    room: Room, people: PeopleFactory
) -> None:
    url = f"/v1/conversations/{room.cid}"
    responses = {
        "me": await room.bob.http.get("/v1/me"),
        "list": await room.bob.http.get("/v1/conversations"),
        "page": await room.bob.http.get(f"{url}/messages"),
        "send": await room.bob.http.post(f"{url}/messages", json={"client_msg_id": "c"}),
        "sent": await room.bob.http.post(
            f"{url}/messages", json={"client_msg_id": "c", "body": "b"}
        ),
        "not member": await room.carol.http.get(url),
        "bad cursor": await room.bob.http.get(f"{url}/messages", params={"after": "x"}),
        "no token": await people.client().get("/v1/me"),
        "no route": await room.bob.http.get("/v1/nothing-here"),
        "wrong method": await room.bob.http.put(url),
    }

    assert {name: r.status_code for name, r in responses.items()} == {
        "me": 200,
        "list": 200,
        "page": 200,
        "send": 422,
        "sent": 201,
        "not member": 404,
        "bad cursor": 422,
        "no token": 401,
        "no route": 404,
        "wrong method": 405,
    }
    assert {r.headers.get("cache-control") for r in responses.values()} == {"private, no-store"}


async def test_unknown_routes_and_methods_answer_in_the_error_format(room: Room) -> None:
    no_route = await room.bob.http.get("/v1/nothing-here")
    wrong_method = await room.bob.http.put(f"/v1/conversations/{room.cid}")

    assert_error(no_route, 404, "ERR_NOT_FOUND")
    assert_error(wrong_method, 405, "ERR_METHOD_NOT_ALLOWED")
