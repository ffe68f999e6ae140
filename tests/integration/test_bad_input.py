"""Bad input over REST: a 4xx with a stable error code, never a 500, and nothing stored changes.

Every test runs on SQLite and PostgreSQL; text the two databases would treat differently (NUL,
lone surrogates) is refused before it reaches either, so both answer alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from parley.core import limits
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.integration.stored import assert_error, what_is_stored

JSON = {"content-type": "application/json"}
VALIDATION, INVALID_TEXT, INVALID_JSON = "ERR_VALIDATION", "ERR_INVALID_TEXT", "ERR_INVALID_JSON"
TOO_LARGE = "ERR_PAYLOAD_TOO_LARGE"


@dataclass
class Room:
    """alice and bob share a conversation holding two messages; carol is not in it."""

    alice: Person
    bob: Person
    carol: Person
    cid: int

    @property
    def messages_url(self) -> str:
        return f"/v1/conversations/{self.cid}/messages"


@pytest.fixture
async def room(people: PeopleFactory) -> Room:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    for n in (1, 2):
        sent = await alice.http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": f"m{n}", "body": f"{n}"}
        )
        assert sent.status_code == 201
    return Room(alice, bob, carol, cid)


def encode(fields: dict[str, Any]) -> bytes:
    """JSON as a client would send it: non-ASCII, NUL and surrogates as `\\uXXXX` escapes."""
    return json.dumps(fields).encode()


def send(**fields: Any) -> bytes:
    return encode({"client_msg_id": "new", "body": "hello", **fields})


def metadata_of_size(size: int) -> dict[str, str]:
    """`{"k": "xx…"}`, `size` bytes long as JSON."""
    return {"k": "x" * (size - len('{"k": ""}'))}


def nested(depth: int, leaf: Any = 1) -> Any:
    """Objects `depth` deep around `leaf`."""
    for level in range(depth):
        leaf = {f"k{level}": leaf}
    return leaf


async def post_refused(room: Room, url: str, raw: bytes, status: int, code: str) -> dict[str, Any]:
    """POST `raw` as alice; assert the error and that what is stored did not change."""
    before = await what_is_stored(room.alice, room.cid)
    response = await room.alice.http.post(url, content=raw, headers=JSON)
    error = assert_error(response, status, code)
    assert await what_is_stored(room.alice, room.cid) == before
    return error


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(send(body="a\x00b"), 422, INVALID_TEXT, id="nul-in-body"),
        pytest.param(send(body="\ud800"), 422, INVALID_TEXT, id="lone-surrogate-in-body"),
        pytest.param(send(client_msg_id="a\x00"), 422, INVALID_TEXT, id="nul-in-client-msg-id"),
        pytest.param(send(client_msg_id="\udfff"), 422, INVALID_TEXT, id="surrogate-in-msg-id"),
        pytest.param(send(metadata={"k\x00": 1}), 422, INVALID_TEXT, id="nul-in-metadata-key"),
        pytest.param(send(metadata={"k": ["\ud83d"]}), 422, INVALID_TEXT, id="surrogate-metadata"),
        pytest.param(send(body="x" * 16_001), 422, VALIDATION, id="body-too-long"),
        pytest.param(send(client_msg_id="x" * 129), 422, VALIDATION, id="client-msg-id-too-long"),
        pytest.param(send(client_msg_id=""), 422, VALIDATION, id="empty-client-msg-id"),
        pytest.param(encode({"body": "no id"}), 422, VALIDATION, id="missing-client-msg-id"),
        pytest.param(send(body=5), 422, VALIDATION, id="int-for-body"),
        pytest.param(send(client_msg_id=7), 422, VALIDATION, id="int-for-client-msg-id"),
        pytest.param(send(body=True), 422, VALIDATION, id="bool-for-body"),
        pytest.param(send(body=None), 422, VALIDATION, id="null-body"),
        pytest.param(send(body="   "), 422, VALIDATION, id="blank-body-without-attachments"),
        pytest.param(send(attachments="att_1"), 422, VALIDATION, id="string-for-attachments"),
        pytest.param(send(attachments=["a"] * 11), 422, VALIDATION, id="eleven-attachments"),
        pytest.param(
            send(attachments=["att_nope"]), 422, "ERR_ATTACHMENT_UNAVAILABLE", id="unknown-file"
        ),
        pytest.param(send(attachments=["att_\x00"]), 422, VALIDATION, id="nul-in-attachment-id"),
        pytest.param(send(attachments=["a" * 41]), 422, VALIDATION, id="attachment-id-too-long"),
        pytest.param(send(metadata=["a"]), 422, VALIDATION, id="list-for-metadata"),
        pytest.param(
            send(metadata=metadata_of_size(4_097)), 422, VALIDATION, id="metadata-4097-bytes"
        ),
        pytest.param(send(metadata=nested(5)), 422, VALIDATION, id="metadata-depth-5"),
        pytest.param(send(colour="red"), 422, VALIDATION, id="unknown-field"),
        pytest.param(b"", 422, VALIDATION, id="empty-body"),
        pytest.param(b"[]", 422, VALIDATION, id="array-not-object"),
        pytest.param(b'"hello"', 422, VALIDATION, id="string-not-object"),
        pytest.param(b"null", 422, VALIDATION, id="null-not-object"),
        pytest.param(b'{"client_msg_id": "new",', 400, INVALID_JSON, id="truncated-json"),
        pytest.param(
            b'{"client_msg_id": "new", "body": "\xff\xfe"}', 400, INVALID_JSON, id="bad-utf8"
        ),
        pytest.param(
            b'{"client_msg_id": "new", "body": "\xc0\x80"}', 400, INVALID_JSON, id="overlong-nul"
        ),
        # Python's JSON decoder lets UTF-8-encoded surrogates through; the text check stops them.
        pytest.param(
            b'{"client_msg_id": "new", "body": "\xed\xa0\x80"}',
            422,
            INVALID_TEXT,
            id="utf8-surrogate",
        ),
        pytest.param(b"[" * 100_000, 400, INVALID_JSON, id="100000-open-brackets"),
        pytest.param(
            b'{"client_msg_id": "new", "metadata": {"k": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            400,
            INVALID_JSON,
            id="deeply-nested-metadata",
        ),
        pytest.param(
            b'{"client_msg_id": "new", "body": "x", "metadata": {"n": ' + b"9" * 5_000 + b"}}",
            400,
            INVALID_JSON,
            id="5000-digit-number",
        ),
        pytest.param(
            b'{"client_msg_id": "new", "body": "x", "metadata": {"n": NaN}}',
            400,
            INVALID_JSON,
            id="nan",
        ),
        pytest.param(
            b'{"client_msg_id": "new", "body": "x", "metadata": {"n": -Infinity}}',
            400,
            INVALID_JSON,
            id="infinity",
        ),
    ],
)
async def test_bad_message_is_refused_and_the_timeline_is_unchanged(
    room: Room, raw: bytes, status: int, code: str
) -> None:
    await post_refused(room, room.messages_url, raw, status, code)


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", send()),
        ("application/x-www-form-urlencoded", b"client_msg_id=new&body=hello"),
    ],
)
async def test_send_that_is_not_json_is_refused(room: Room, content_type: str, raw: bytes) -> None:
    before = await what_is_stored(room.alice, room.cid)

    response = await room.alice.http.post(
        room.messages_url, content=raw, headers={"content-type": content_type}
    )

    assert_error(response, 415, "ERR_UNSUPPORTED_MEDIA_TYPE")
    assert await what_is_stored(room.alice, room.cid) == before


async def test_fields_at_their_maximum_are_accepted(room: Room) -> None:
    response = await room.alice.http.post(
        room.messages_url,
        json={
            "client_msg_id": "c" * limits.CLIENT_MSG_ID_MAX_CHARS,
            "body": "é" * limits.MESSAGE_BODY_MAX_CHARS,
            "metadata": metadata_of_size(limits.METADATA_MAX_BYTES),
        },
    )
    deep = await room.alice.http.post(
        room.messages_url, json={"client_msg_id": "deep", "body": "d", "metadata": nested(4)}
    )
    titled = await room.alice.http.post(
        "/v1/conversations", json={"kind": "group", "title": "t" * limits.TITLE_MAX_CHARS}
    )

    assert response.status_code == 201, response.text
    assert len(response.json()["body"]) == limits.MESSAGE_BODY_MAX_CHARS
    assert deep.status_code == 201, deep.text
    assert deep.json()["metadata"] == nested(4)
    assert titled.status_code == 201, titled.text


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"title": "a\x00"}, INVALID_TEXT, id="nul-in-title"),
        pytest.param({"title": "\ud800"}, INVALID_TEXT, id="lone-surrogate-in-title"),
        pytest.param({"title": "t" * 201}, VALIDATION, id="title-too-long"),
        pytest.param({"title": 5}, VALIDATION, id="int-for-title"),
        pytest.param({"kind": "channel"}, VALIDATION, id="unknown-kind"),
        pytest.param({"kind": 1}, VALIDATION, id="int-for-kind"),
        pytest.param({"kind": None}, VALIDATION, id="null-kind"),
        pytest.param({"members": "bob"}, VALIDATION, id="string-for-members"),
        pytest.param({"members": [1]}, VALIDATION, id="int-member"),
        pytest.param({"members": ["n" * 65]}, VALIDATION, id="member-name-too-long"),
        pytest.param({"members": ["a\x00"]}, VALIDATION, id="nul-in-member-name"),
        pytest.param({"members": ["../etc"]}, VALIDATION, id="slash-in-member-name"),
        pytest.param({"members": ["nobody"]}, VALIDATION, id="unknown-member"),
        pytest.param({"members": [f"u{n}" for n in range(501)]}, VALIDATION, id="501-members"),
        pytest.param({"kind": "direct", "members": []}, VALIDATION, id="direct-alone"),
        pytest.param({"topic": "x"}, VALIDATION, id="unknown-field"),
    ],
)
async def test_bad_conversation_is_refused_and_none_is_created(
    room: Room, fields: dict[str, Any], code: str
) -> None:
    raw = encode({"kind": "group", "title": "new", **fields})
    await post_refused(room, "/v1/conversations", raw, 422, code)


async def test_more_than_500_members_is_refused_even_when_they_all_exist(room: Room) -> None:
    error = await post_refused(
        room,
        "/v1/conversations",
        encode({"kind": "group", "members": [room.bob.user.name] * 501}),
        422,
        VALIDATION,
    )

    assert error["message"].startswith("members:")
    assert str(limits.MEMBERS_PER_REQUEST_MAX) in error["message"]


@pytest.mark.parametrize(
    ("members", "code"),
    [
        pytest.param([], VALIDATION, id="none"),
        pytest.param("carol", VALIDATION, id="string-not-list"),
        pytest.param([None], VALIDATION, id="null-name"),
        pytest.param(["n" * 65], VALIDATION, id="name-too-long"),
        pytest.param(["a\x00b"], VALIDATION, id="nul-in-name"),
        pytest.param(["CAROL", "nobody"], VALIDATION, id="unknown-name"),
        pytest.param(["x"] * 501, VALIDATION, id="501-names"),
    ],
)
async def test_bad_member_addition_changes_no_membership(
    room: Room, members: Any, code: str
) -> None:
    await post_refused(
        room, f"/v1/conversations/{room.cid}/members", encode({"members": members}), 422, code
    )


async def test_one_unknown_name_refuses_the_whole_addition(room: Room) -> None:
    error = await post_refused(
        room,
        f"/v1/conversations/{room.cid}/members",
        encode({"members": [room.carol.user.name, "nobody"]}),
        422,
        VALIDATION,
    )

    assert "nobody" in error["message"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"read_seq": -1}, VALIDATION, id="negative"),
        pytest.param({"read_seq": limits.SEQ_MAX + 1}, VALIDATION, id="past-2^53"),
        pytest.param({"read_seq": 10**20}, VALIDATION, id="past-2^64"),
        pytest.param({"read_seq": "1"}, VALIDATION, id="string-for-int"),
        pytest.param({"read_seq": True}, VALIDATION, id="bool-for-int"),
        pytest.param({"read_seq": 1.0}, VALIDATION, id="float-for-int"),
        pytest.param({"delivered_seq": [1]}, VALIDATION, id="list-for-int"),
        pytest.param({"read_seq": 1, "seq": 2}, VALIDATION, id="unknown-field"),
        pytest.param({"read_seq": 3}, "ERR_RECEIPT_BEYOND_LAST_SEQ", id="past-last-seq"),
        pytest.param(
            {"delivered_seq": limits.SEQ_MAX}, "ERR_RECEIPT_BEYOND_LAST_SEQ", id="at-2^53-1"
        ),
    ],
)
async def test_bad_receipt_leaves_cursors_unchanged(
    room: Room, fields: dict[str, Any], code: str
) -> None:
    await post_refused(room, f"/v1/conversations/{room.cid}/receipts", encode(fields), 422, code)


BAD_PAGE_QUERIES = [
    {"after": "abc"},
    {"after": "-1"},
    {"after": ""},
    {"after": "1.5"},
    {"after": "1e3"},
    {"after": "0x10"},
    {"after": str(limits.SEQ_MAX + 1)},
    {"after": "99999999999999999999"},
    {"before": "x"},
    {"before": "-5"},
    {"limit": "0"},
    {"limit": "-1"},
    {"limit": "501"},
    {"limit": "100000"},
    {"limit": "ten"},
    {"limit": "true"},
]


async def test_garbage_or_out_of_range_page_query_is_refused(room: Room) -> None:
    answers = {}
    for params in BAD_PAGE_QUERIES:
        response = await room.bob.http.get(room.messages_url, params=params)
        error = response.json()["error"]
        answers[str(params)] = (response.status_code, error["code"], error["message"].split(":")[0])

    assert answers == {
        str(params): (422, VALIDATION, next(iter(params))) for params in BAD_PAGE_QUERIES
    }


async def test_page_query_at_its_limits_is_accepted(room: Room) -> None:
    everything = await room.bob.http.get(room.messages_url, params={"after": 0, "limit": 500})
    beyond = await room.bob.http.get(
        room.messages_url, params={"after": limits.SEQ_MAX, "limit": 1}
    )

    assert [m["seq"] for m in everything.json()["messages"]] == [1, 2]
    assert beyond.status_code == 200
    assert beyond.json() == {"messages": [], "last_seq": 2}


BAD_IDS = ["abc", "1.5", "-1", "0", "1e3", "%20", str(limits.SEQ_MAX + 1), "9" * 30]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/conversations/{id}", None),
        ("GET", "/v1/conversations/{id}/messages", None),
        ("POST", "/v1/conversations/{id}/messages", {"client_msg_id": "x", "body": "x"}),
        ("POST", "/v1/conversations/{id}/receipts", {"read_seq": 1}),
        ("GET", "/v1/conversations/{id}/members", None),
        ("POST", "/v1/conversations/{id}/members", {"members": ["x"]}),
        ("DELETE", "/v1/conversations/{id}/members/1", None),
        ("DELETE", "/v1/conversations/1/members/{id}", None),
    ],
)
async def test_non_integer_or_out_of_range_path_id_is_refused(
    room: Room, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = await what_is_stored(room.alice, room.cid)
    answers = {}
    for bad_id in BAD_IDS:
        response = await room.alice.http.request(method, path.format(id=bad_id), json=body)
        answers[bad_id] = (response.status_code, response.json()["error"]["code"])

    assert answers == dict.fromkeys(BAD_IDS, (422, VALIDATION))
    assert await what_is_stored(room.alice, room.cid) == before


async def test_malformed_attachment_id_is_refused_on_download(room: Room) -> None:
    bad_ids = ["%00", "att_%00", "a" * 41, "att%20x", "att%2Ex", "%C3%A9"]

    answers = [await room.bob.http.get(f"/v1/attachments/{bad}") for bad in bad_ids]

    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [
        (422, VALIDATION)
    ] * len(bad_ids)


async def test_declared_content_length_over_the_limit_is_refused_unread(
    room: Room, settings: Settings
) -> None:
    before = await what_is_stored(room.alice, room.cid)
    pulled = 0

    async def trickle() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield send()

    response = await room.alice.http.post(
        room.messages_url,
        content=trickle(),
        headers={**JSON, "content-length": str(settings.request_max_bytes + 1)},
    )

    error = assert_error(response, 413, TOO_LARGE)
    assert str(settings.request_max_bytes) in error["message"]
    assert response.headers["cache-control"] == "private, no-store"
    assert pulled == 0  # answered from the header alone
    assert await what_is_stored(room.alice, room.cid) == before


async def test_oversized_json_body_is_refused(room: Room, settings: Settings) -> None:
    raw = send(body="x" * settings.request_max_bytes)

    await post_refused(room, room.messages_url, raw, 413, TOO_LARGE)


async def test_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(
    room: Room, settings: Settings
) -> None:
    before = await what_is_stored(room.alice, room.cid)
    chunk, chunks_offered = 16 * 1024, 1024  # 16 MiB offered against a 256 KiB limit
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"client_msg_id": "new", "body": "'
        for _ in range(chunks_offered):
            pulled += 1
            yield b"x" * chunk

    response = await room.alice.http.post(room.messages_url, content=endless(), headers=JSON)

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, TOO_LARGE)
    assert pulled <= settings.request_max_bytes // chunk + 1
    assert await what_is_stored(room.alice, room.cid) == before


async def test_chunked_body_under_the_limit_is_accepted(room: Room) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        raw = send(body="y" * 1000)
        for start in range(0, len(raw), 100):
            yield raw[start : start + 100]

    response = await room.alice.http.post(room.messages_url, content=pieces(), headers=JSON)

    assert response.status_code == 201, response.text
    assert response.json()["seq"] == 3
