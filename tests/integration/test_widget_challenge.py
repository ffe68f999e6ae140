"""Proof-of-work past the per-address threshold (docs/widget.md, "Proof of work")."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.settings import Settings
from tests.conftest import PeopleFactory, PostgresDatabases
from tests.integration.test_widget_api import SITE, TRUSTED_PROXY, Site, assert_error, make_inbox
from tests.support.widget_cluster import widget_cluster

SECRET_KEY = "challenge-test-key"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        trusted_proxies=["10.0.0.0/8"],
        widget_bootstrap_rate_per_ip="100/minute",
        widget_challenge_after_per_ip="2/minute",
        widget_challenge_difficulty=8,
        secret_key=SECRET_KEY,
    )


def solve(challenge: dict[str, Any]) -> str:
    """What the widget does: the first decimal nonce giving `difficulty` leading zero bits."""
    nonce = 0
    while True:
        digest = hashlib.sha256(f"{challenge['id']}:{nonce}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - challenge["difficulty"]) == 0:
            return str(nonce)
        nonce += 1


async def past_threshold(site: Site, widget_token: str, **extra: Any) -> dict[str, Any]:
    """Bootstrap until asked for proof of work; the challenge."""
    for _ in range(2):
        assert (await site.bootstrap(widget_token, **extra)).status_code == 200
    required = await site.bootstrap(widget_token, **extra)
    assert_error(required, 403, "ERR_CHALLENGE_REQUIRED")
    return dict(required.json()["error"]["details"]["challenge"])


async def test_past_the_threshold_bootstrap_asks_for_proof_of_work(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    for _ in range(2):
        assert (await site.bootstrap(inbox["widget_token"])).status_code == 200

    required = await site.bootstrap(inbox["widget_token"])

    assert_error(required, 403, "ERR_CHALLENGE_REQUIRED")
    challenge = required.json()["error"]["details"]["challenge"]
    assert challenge["difficulty"] == 8 and challenge["algorithm"] == "sha256"
    assert required.headers["Access-Control-Allow-Origin"] == SITE


async def test_a_solved_challenge_opens_a_session(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    challenge = await past_threshold(site, inbox["widget_token"])

    solved = await site.bootstrap(
        inbox["widget_token"], challenge={"id": challenge["id"], "nonce": solve(challenge)}
    )

    assert solved.status_code == 200, solved.text
    assert solved.json()["session"]


async def test_a_reused_solution_is_refused_with_a_fresh_challenge(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    challenge = await past_threshold(site, inbox["widget_token"])
    solution = {"id": challenge["id"], "nonce": solve(challenge)}
    assert (await site.bootstrap(inbox["widget_token"], challenge=solution)).status_code == 200

    reused = await site.bootstrap(inbox["widget_token"], challenge=solution)

    assert_error(reused, 403, "ERR_CHALLENGE_FAILED")
    fresh = reused.json()["error"]["details"]["challenge"]
    assert fresh["id"] != challenge["id"]


async def test_a_wrong_nonce_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    challenge = await past_threshold(site, inbox["widget_token"])
    right = int(solve(challenge))
    wrong = next(
        n
        for n in range(right + 1, right + 100_000)
        if hashlib.sha256(f"{challenge['id']}:{n}".encode()).digest()[0] != 0
    )

    response = await site.bootstrap(
        inbox["widget_token"], challenge={"id": challenge["id"], "nonce": str(wrong)}
    )

    assert_error(response, 403, "ERR_CHALLENGE_FAILED")


async def test_an_easier_forged_challenge_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    challenge = await past_threshold(site, inbox["widget_token"])
    prefix, expires, _, salt, signature = challenge["id"].split(".")
    forged = {"id": f"{prefix}.{expires}.1.{salt}.{signature}", "difficulty": 1}

    response = await site.bootstrap(
        inbox["widget_token"], challenge={"id": forged["id"], "nonce": solve(forged)}
    )

    assert_error(response, 403, "ERR_CHALLENGE_FAILED")


async def test_an_expired_challenge_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    await past_threshold(site, inbox["widget_token"])
    # Signed with the deployment's key, as the server would have done ten minutes ago.
    payload = f"c1.{int(time.time()) - 600}.8.00112233445566778899aabb"
    signature = hmac.new(
        SECRET_KEY.encode(), f"{payload}|127.0.0.1".encode(), hashlib.sha256
    ).hexdigest()[:32]
    expired = {"id": f"{payload}.{signature}", "difficulty": 8}

    response = await site.bootstrap(
        inbox["widget_token"], challenge={"id": expired["id"], "nonce": solve(expired)}
    )

    assert_error(response, 403, "ERR_CHALLENGE_FAILED")


async def test_a_challenge_solved_for_another_address_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer=TRUSTED_PROXY)
    first = {"X-Forwarded-For": "203.0.113.1"}
    challenge = await past_threshold(site, inbox["widget_token"], headers=first)

    response = await site.bootstrap(
        inbox["widget_token"],
        challenge={"id": challenge["id"], "nonce": solve(challenge)},
        headers={"X-Forwarded-For": "203.0.113.2"},
    )

    assert_error(response, 403, "ERR_CHALLENGE_FAILED")


async def test_other_addresses_are_not_challenged(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer=TRUSTED_PROXY)
    await past_threshold(site, inbox["widget_token"], headers={"X-Forwarded-For": "203.0.113.1"})

    other = await site.bootstrap(inbox["widget_token"], headers={"X-Forwarded-For": "203.0.113.9"})

    assert other.status_code == 200, other.text


@pytest.mark.parametrize(
    "challenge",
    [{"id": "x" * 201, "nonce": "1"}, {"id": "c1", "nonce": "12a"}, {"id": "c1", "nonce": ""}],
    ids=["long-id", "non-decimal-nonce", "empty-nonce"],
)
async def test_a_malformed_solution_is_refused_as_bad_input(
    people: PeopleFactory, challenge: dict[str, str]
) -> None:
    _, inbox = await make_inbox(people)

    response: httpx.Response = await Site(people).bootstrap(
        inbox["widget_token"], challenge=challenge
    )

    assert response.status_code == 422, response.text


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_challenge_from_one_node_is_solved_on_another_and_used_once(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    async with widget_cluster(
        postgres_databases,
        redis_url,
        tmp_path,
        PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP="1000/minute",
        PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP="2/minute",
        PARLEY_WIDGET_CHALLENGE_DIFFICULTY="8",
    ) as cluster:
        token = {"widget_token": cluster.inbox["widget_token"]}
        async with cluster.site(0) as first, cluster.site(1) as second:
            # The count is shared through Redis: two bootstraps on one node, the third on the other.
            assert (await first.post("/api/widget/bootstrap", json=token)).status_code == 200
            assert (await first.post("/api/widget/bootstrap", json=token)).status_code == 200
            required = await second.post("/api/widget/bootstrap", json=token)
            assert_error(required, 403, "ERR_CHALLENGE_REQUIRED")
            challenge = required.json()["error"]["details"]["challenge"]
            solution = {"id": challenge["id"], "nonce": solve(challenge)}

            solved = await first.post(
                "/api/widget/bootstrap", json={**token, "challenge": solution}
            )
            reused = await second.post(
                "/api/widget/bootstrap", json={**token, "challenge": solution}
            )

        assert solved.status_code == 200, solved.text
        assert_error(reused, 403, "ERR_CHALLENGE_FAILED")
