"""Verified visitors (docs/widget.md, "Identity"): signed tokens, replays, sessions, races."""

from __future__ import annotations

import asyncio
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import func, select

from parley.assembly import Services
from parley.core.models import Role
from parley.features.widget.identity import hmac_token
from parley.settings import Settings
from parley.storage.schema import conversations, users, widget_identities, widget_sessions
from tests.conftest import PeopleFactory, PostgresDatabases
from tests.integration.test_widget_api import Site, assert_error, make_inbox
from tests.support.widget_cluster import database_services, widget_cluster


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        widget_bootstrap_rate_per_ip="1000/minute",
        widget_challenge_after_per_ip="",
    )


def token_for(secret: str, user_id: str, *, ttl: int = 600, nonce: str | None = None) -> str:
    nonce = nonce or secrets.token_urlsafe(12)
    return hmac_token(secret, user_id, int(time.time()) + ttl, nonce)


def jwt_for(secret: str, user_id: str, *, ttl: int = 600, algorithm: str = "HS256") -> str:
    claims = {"sub": user_id, "exp": int(time.time()) + ttl, "jti": secrets.token_urlsafe(12)}
    with warnings.catch_warnings():  # HS512 wants a longer key; the server refuses it anyway
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=algorithm)


async def verified_inbox(people: PeopleFactory) -> tuple[dict[str, Any], str]:
    """An inbox with identity verification on, and its secret."""
    _, inbox = await make_inbox(people)
    admin = await people.add(role=Role.ADMIN)
    response = await admin.http.post(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")
    assert response.status_code == 200, response.text
    return inbox, response.json()["identity_secret"]


async def count(services: Services, query: Any) -> int:
    async with services.db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def visitors_and_conversations(services: Services) -> tuple[int, int, int]:
    return (
        await count(services, select(func.count()).select_from(widget_sessions)),
        await count(
            services, select(func.count()).select_from(users).where(users.c.name.like("visitor-%"))
        ),
        await count(services, select(func.count()).select_from(conversations)),
    )


# -- tokens ----------------------------------------------------------------------------------


async def test_a_valid_hmac_token_opens_a_verified_session(people: PeopleFactory) -> None:
    inbox, secret = await verified_inbox(people)

    response = await Site(people).bootstrap(
        inbox["widget_token"], identity=token_for(secret, "user.42@example.com")
    )

    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True


async def test_a_valid_hs256_jwt_opens_a_verified_session(people: PeopleFactory) -> None:
    inbox, secret = await verified_inbox(people)

    response = await Site(people).bootstrap(inbox["widget_token"], identity=jwt_for(secret, "42"))

    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True


def _unsigned_jwt(user_id: str) -> str:
    claims = {"sub": user_id, "exp": int(time.time()) + 600, "jti": "nonce-none-1"}
    return jwt.encode(claims, None, algorithm="none")


def _tampered(token: str) -> str:
    """The token with its last signature digit changed (to a different one, always)."""
    return token[:-1] + ("1" if token.endswith("0") else "0")


@pytest.mark.parametrize(
    "make_identity",
    [
        pytest.param(lambda secret: None, id="missing"),
        pytest.param(lambda secret: token_for("not-the-secret", "42"), id="hmac-wrong-secret"),
        pytest.param(lambda secret: _tampered(token_for(secret, "42")), id="hmac-tampered"),
        # Expired by more than PARLEY_CLOCK_SKEW_SECONDS (60 s): within it a token still passes.
        pytest.param(lambda secret: token_for(secret, "42", ttl=-120), id="hmac-expired"),
        pytest.param(lambda secret: token_for(secret, "42", ttl=3 * 86400), id="hmac-too-long"),
        pytest.param(lambda secret: "v1.garbage", id="hmac-malformed"),
        pytest.param(
            lambda secret: jwt_for("not-the-secret-at-all-32-bytes-long", "42"), id="jwt-wrong"
        ),
        pytest.param(lambda secret: jwt_for(secret, "42", ttl=-120), id="jwt-expired"),
        pytest.param(lambda secret: jwt_for(secret, "42", algorithm="HS512"), id="jwt-hs512"),
        pytest.param(lambda secret: _unsigned_jwt("42"), id="jwt-alg-none"),
        pytest.param(lambda secret: "not a token at all", id="junk"),
    ],
)
async def test_a_bad_identity_is_refused_and_nothing_is_created(
    people: PeopleFactory, services: Services, make_identity: Any
) -> None:
    inbox, secret = await verified_inbox(people)
    before = await visitors_and_conversations(services)
    identity = make_identity(secret)

    response = await Site(people).bootstrap(
        inbox["widget_token"], **({"identity": identity} if identity else {})
    )

    assert_error(response, 401, "ERR_IDENTITY_INVALID")
    assert await visitors_and_conversations(services) == before


async def test_a_replayed_token_is_refused(people: PeopleFactory, services: Services) -> None:
    inbox, secret = await verified_inbox(people)
    identity = token_for(secret, "42")
    first = await Site(people).bootstrap(inbox["widget_token"], identity=identity)
    before = await visitors_and_conversations(services)

    replay = await Site(people).bootstrap(inbox["widget_token"], identity=identity)

    assert first.status_code == 200, first.text
    assert_error(replay, 401, "ERR_IDENTITY_INVALID")
    assert await visitors_and_conversations(services) == before


async def test_an_inbox_without_a_secret_ignores_identity(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)

    response = await Site(people).bootstrap(inbox["widget_token"], identity="anything")

    assert response.status_code == 200, response.text
    assert response.json()["verified"] is False


# -- one visitor per site user ---------------------------------------------------------------


async def test_the_same_site_user_gets_the_same_visitor_and_conversation(
    people: PeopleFactory,
) -> None:
    inbox, secret = await verified_inbox(people)

    first = await Site(people).bootstrap(inbox["widget_token"], identity=token_for(secret, "7"))
    other_device = await Site(people).bootstrap(
        inbox["widget_token"], identity=jwt_for(secret, "7")
    )

    assert first.status_code == other_device.status_code == 200
    assert other_device.json()["restored"] is False
    assert other_device.json()["visitor_id"] == first.json()["visitor_id"]
    assert other_device.json()["conversation_id"] == first.json()["conversation_id"]


async def test_a_verified_session_is_restored_with_a_token_for_the_same_user(
    people: PeopleFactory,
) -> None:
    inbox, secret = await verified_inbox(people)
    site = Site(people)
    first = (await site.bootstrap(inbox["widget_token"], identity=token_for(secret, "7"))).json()

    again = await site.bootstrap(
        inbox["widget_token"], session=first["session"], identity=token_for(secret, "7")
    )

    assert again.status_code == 200, again.text
    assert again.json()["restored"] is True
    assert again.json()["session"] == first["session"]


async def test_a_verified_session_is_not_restored_for_another_user(
    people: PeopleFactory,
) -> None:
    inbox, secret = await verified_inbox(people)
    site = Site(people)
    alice = (
        await site.bootstrap(inbox["widget_token"], identity=token_for(secret, "alice"))
    ).json()
    await site.send(alice["session"], "my order number is 1234")

    bob = await site.bootstrap(
        inbox["widget_token"], session=alice["session"], identity=token_for(secret, "bob")
    )

    assert bob.status_code == 200, bob.text
    assert bob.json()["restored"] is False
    assert bob.json()["visitor_id"] != alice["visitor_id"]
    assert bob.json()["conversation_id"] != alice["conversation_id"]
    history = await site.http.get("/api/widget/messages", params={"session": bob.json()["session"]})
    assert history.json()["messages"] == []


async def test_a_verified_session_without_identity_is_refused(people: PeopleFactory) -> None:
    inbox, secret = await verified_inbox(people)
    site = Site(people)
    first = (await site.bootstrap(inbox["widget_token"], identity=token_for(secret, "7"))).json()

    again = await site.bootstrap(inbox["widget_token"], session=first["session"])

    assert_error(again, 401, "ERR_IDENTITY_INVALID")


async def test_after_verification_is_off_a_verified_session_is_not_restored_anonymously(
    people: PeopleFactory,
) -> None:
    inbox, secret = await verified_inbox(people)
    site = Site(people)
    first = (await site.bootstrap(inbox["widget_token"], identity=token_for(secret, "7"))).json()
    await site.send(first["session"], "private")
    admin = await people.add(role=Role.ADMIN)
    off = await admin.http.delete(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")

    again = await site.bootstrap(inbox["widget_token"], session=first["session"])

    assert off.status_code == 204
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["restored"] is False and body["verified"] is False
    assert body["visitor_id"] != first["visitor_id"]
    history = await site.http.get("/api/widget/messages", params={"session": body["session"]})
    assert history.json()["messages"] == []


async def test_rotating_the_secret_invalidates_tokens_signed_with_the_old_one(
    people: PeopleFactory,
) -> None:
    inbox, old_secret = await verified_inbox(people)
    admin = await people.add(role=Role.ADMIN)
    rotated = await admin.http.post(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")
    new_secret = rotated.json()["identity_secret"]

    old = await Site(people).bootstrap(inbox["widget_token"], identity=token_for(old_secret, "7"))
    new = await Site(people).bootstrap(inbox["widget_token"], identity=token_for(new_secret, "7"))

    assert new_secret != old_secret
    assert_error(old, 401, "ERR_IDENTITY_INVALID")
    assert new.status_code == 200, new.text
    listed = await admin.http.get(f"/v1/admin/inboxes/{inbox['id']}")
    assert listed.json()["identity_verification"] is True
    assert "identity_secret" not in listed.json()


async def test_only_admins_set_the_identity_secret(people: PeopleFactory) -> None:
    operator, inbox = await make_inbox(people)

    response = await operator.http.post(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")

    assert_error(response, 403, "ERR_FORBIDDEN")


# -- races -----------------------------------------------------------------------------------


async def test_concurrent_bootstraps_of_one_site_user_make_one_visitor(
    people: PeopleFactory, services: Services
) -> None:
    inbox, secret = await verified_inbox(people)
    sites = [Site(people) for _ in range(6)]

    answers = await asyncio.gather(
        *(s.bootstrap(inbox["widget_token"], identity=token_for(secret, "7")) for s in sites)
    )

    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert len({a.json()["visitor_id"] for a in answers}) == 1
    assert len({a.json()["conversation_id"] for a in answers}) == 1
    assert await count(services, select(func.count()).select_from(widget_identities)) == 1
    visitors = select(func.count()).select_from(users).where(users.c.name.like("visitor-%"))
    assert await count(services, visitors) == 1


@pytest.mark.postgres
@pytest.mark.redis
async def test_bootstraps_of_one_site_user_on_two_nodes_make_one_visitor(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    async with widget_cluster(
        postgres_databases,
        redis_url,
        tmp_path,
        PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP="1000/minute",
        PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP="",
    ) as cluster:
        async with cluster.admin() as admin:
            rotated = await admin.post(f"/v1/admin/inboxes/{cluster.inbox['id']}/identity-secret")
        secret = rotated.json()["identity_secret"]

        async def bootstrap(node: int) -> httpx.Response:
            async with cluster.site(node) as site:
                return await site.post(
                    "/api/widget/bootstrap",
                    json={
                        "widget_token": cluster.inbox["widget_token"],
                        "identity": token_for(secret, "7"),
                    },
                )

        answers = await asyncio.gather(*(bootstrap(n % 2) for n in range(8)))

        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        assert len({a.json()["visitor_id"] for a in answers}) == 1
        assert len({a.json()["conversation_id"] for a in answers}) == 1
        async with database_services(cluster.database_url, tmp_path) as services:
            assert await count(services, select(func.count()).select_from(widget_identities)) == 1
            visitors = select(func.count()).select_from(users).where(users.c.name.like("visitor-%"))
            assert await count(services, visitors) == 1
