"""Sign-in over REST: a name and password buy a bearer token; logout revokes it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from parley.assembly import Services
from parley.core import limits
from tests.conftest import PeopleFactory
from tests.integration.stored import assert_error

JSON = {"content-type": "application/json"}


async def login(people: PeopleFactory, name: str, password: str) -> Any:
    return await people.client().post("/v1/auth/login", json={"name": name, "password": password})


async def test_login_returns_a_token_that_works(people: PeopleFactory) -> None:
    alice = await people.add()

    response = await login(people, alice.user.name, "pw-" + alice.user.name)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    body = response.json()
    assert body["user"]["id"] == alice.user.id
    assert body["token"].startswith("pk_") and body["token"] != alice.token
    me = await people.client(body["token"]).get("/v1/me")
    assert me.status_code == 200
    assert me.json()["name"] == alice.user.name


async def test_password_of_the_maximum_length_works(
    people: PeopleFactory, services: Services
) -> None:
    password = "p" * limits.PASSWORD_MAX_CHARS
    await services.identity.do_create_user("longpw", password=password)

    response = await login(people, "longpw", password)

    assert response.status_code == 200, response.text


async def test_wrong_password_and_unknown_name_get_the_same_401(people: PeopleFactory) -> None:
    alice = await people.add()

    wrong_password = await login(people, alice.user.name, "pw-wrong")
    unknown_name = await login(people, "nobody", "pw-nobody")

    assert_error(wrong_password, 401, "ERR_INVALID_CREDENTIALS")
    assert unknown_name.status_code == 401
    assert unknown_name.content == wrong_password.content


async def test_user_without_a_password_cannot_log_in(
    people: PeopleFactory, services: Services
) -> None:
    await services.identity.do_create_user("tokenonly", password=None)

    response = await login(people, "tokenonly", "anything")

    assert_error(response, 401, "ERR_INVALID_CREDENTIALS")


async def test_logout_revokes_only_that_token(people: PeopleFactory) -> None:
    alice = await people.add()
    token = (await login(people, alice.user.name, "pw-" + alice.user.name)).json()["token"]
    session = people.client(token)

    logout = await session.post("/v1/auth/logout")
    after = await session.get("/v1/me")
    again = await session.post("/v1/auth/logout")
    other = await alice.http.get("/v1/me")

    assert logout.status_code == 204
    assert_error(after, 401, "ERR_INVALID_CREDENTIALS")
    assert_error(again, 401, "ERR_INVALID_CREDENTIALS")
    assert other.status_code == 200


async def test_requests_arriving_together_each_get_the_user_of_their_own_token(
    people: PeopleFactory,
) -> None:
    """Token look-ups that arrive together share one query; each caller still gets its own."""
    everyone = [await people.add() for _ in range(6)]
    alice = everyone[0]
    revoked = (await login(people, alice.user.name, "pw-" + alice.user.name)).json()["token"]
    await people.client(revoked).post("/v1/auth/logout")

    answers = await asyncio.gather(
        *(person.http.get("/v1/me") for person in everyone),
        people.client("pk_not-a-token").get("/v1/me"),
        people.client(revoked).get("/v1/me"),
        *(person.http.get("/v1/me") for person in reversed(everyone)),
    )

    names = [answer.json()["name"] for answer in answers[:6] + answers[8:]]
    assert names == [p.user.name for p in everyone] + [p.user.name for p in reversed(everyone)]
    assert_error(answers[6], 401, "ERR_INVALID_CREDENTIALS")
    assert_error(answers[7], 401, "ERR_INVALID_CREDENTIALS")


async def test_revoked_token_cannot_read_or_write_a_conversation(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = (await alice.http.post("/v1/conversations", json={"kind": "group"})).json()["id"]
    await alice.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "1", "body": "x"}
    )
    token = (await login(people, alice.user.name, "pw-" + alice.user.name)).json()["token"]
    session = people.client(token)
    await session.post("/v1/auth/logout")

    read = await session.get(f"/v1/conversations/{cid}/messages")
    write = await session.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "2", "body": "y"}
    )

    assert_error(read, 401, "ERR_INVALID_CREDENTIALS")
    assert_error(write, 401, "ERR_INVALID_CREDENTIALS")
    page = await alice.http.get(f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in page.json()["messages"]] == ["x"]


async def test_expired_token_is_refused(people: PeopleFactory, services: Services) -> None:
    alice = await people.add()
    expired = await services.identity.do_issue_token(
        alice.user, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    current = await services.identity.do_issue_token(
        alice.user, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )

    refused = await people.client(expired).get("/v1/me")
    accepted = await people.client(current).get("/v1/me")

    assert_error(refused, 401, "ERR_INVALID_CREDENTIALS")
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"name": "n" * 65, "password": "x"}, 422, "ERR_VALIDATION", id="long-name"),
        pytest.param({"name": "", "password": "x"}, 422, "ERR_VALIDATION", id="empty-name"),
        pytest.param({"name": "a\x00", "password": "x"}, 422, "ERR_VALIDATION", id="nul-in-name"),
        pytest.param({"name": "a b", "password": "x"}, 422, "ERR_VALIDATION", id="space-in-name"),
        pytest.param({"name": "a", "password": ""}, 422, "ERR_VALIDATION", id="empty-password"),
        pytest.param(
            {"name": "a", "password": "p" * 257}, 422, "ERR_VALIDATION", id="long-password"
        ),
        pytest.param({"name": "a", "password": "\x00"}, 422, "ERR_INVALID_TEXT", id="nul-password"),
        pytest.param(
            {"name": "a", "password": "\udc00"}, 422, "ERR_INVALID_TEXT", id="surrogate-password"
        ),
        pytest.param({"name": 1, "password": "x"}, 422, "ERR_VALIDATION", id="int-for-name"),
        pytest.param({"name": "a", "password": 1}, 422, "ERR_VALIDATION", id="int-for-password"),
        pytest.param({"name": "a"}, 422, "ERR_VALIDATION", id="no-password"),
        pytest.param(
            {"name": "a", "password": "x", "remember": True}, 422, "ERR_VALIDATION", id="unknown"
        ),
        pytest.param(["a", "x"], 422, "ERR_VALIDATION", id="array"),
    ],
)
async def test_bad_login_body_is_refused(
    people: PeopleFactory, body: Any, status: int, code: str
) -> None:
    response = await people.client().post(
        "/v1/auth/login", content=json.dumps(body).encode(), headers=JSON
    )

    assert_error(response, status, code)


async def test_login_body_that_is_not_json_is_refused(people: PeopleFactory) -> None:
    client = people.client()

    broken = await client.post("/v1/auth/login", content=b'{"name": "a",', headers=JSON)
    form = await client.post("/v1/auth/login", data={"name": "a", "password": "x"})

    assert_error(broken, 400, "ERR_INVALID_JSON")
    assert_error(form, 415, "ERR_UNSUPPORTED_MEDIA_TYPE")
