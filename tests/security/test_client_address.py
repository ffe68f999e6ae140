"""Attack: pose as many clients (or as another one) with X-Forwarded-For. Only a configured
proxy (PARLEY_TRUSTED_PROXIES) may name the client; a local client is not a proxy. The widget's
limits and the stream caps key on that one address."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from parley.core.models import Role
from tests.security.conftest import (
    SITE,
    Deployment,
    deployment,
    error_code,
    make_inbox,
    metric,
)
from tests.support.waiting import eventually

PROXY = "127.0.0.42"
LIMITS = {
    "PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP": "3/minute",
    "PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP": "",
    "PARLEY_STREAM_MAX_PER_IP": "2",
}


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """No proxy configured (the default)."""
    with deployment(tmp_path_factory.mktemp("direct"), **LIMITS) as found:
        yield found


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Behind one trusted proxy at 127.0.0.42."""
    with deployment(
        tmp_path_factory.mktemp("proxied"), PARLEY_TRUSTED_PROXIES=f'["{PROXY}"]', **LIMITS
    ) as found:
        yield found


async def _bootstraps(
    d: Deployment, widget_token: str, source: str, forwarded: list[str]
) -> list[int]:
    statuses = []
    async with d.client(source=source, Origin=SITE) as page:
        for hop in forwarded:
            response = await page.post(
                "/api/widget/bootstrap",
                json={"widget_token": widget_token},
                headers={"X-Forwarded-For": hop} if hop else {},
            )
            statuses.append(response.status_code)
    return statuses


async def test_a_local_client_cannot_rotate_forwarded_for_to_dodge_the_limit(
    direct: Deployment,
) -> None:
    inbox = await make_inbox(direct, direct.add(Role.ADMIN))
    forged = [f"203.0.113.{n}" for n in range(6)]

    assert await _bootstraps(direct, inbox["widget_token"], "127.0.0.1", forged) == [
        200,
        200,
        200,
        429,
        429,
        429,
    ]


async def test_a_trusted_proxy_names_each_client(proxied: Deployment) -> None:
    inbox = await make_inbox(proxied, proxied.add(Role.ADMIN))
    token = inbox["widget_token"]

    one = await _bootstraps(proxied, token, PROXY, ["203.0.113.1"] * 4)
    # What the client wrote comes first; the proxy appends the address it saw.
    two = await _bootstraps(proxied, token, PROXY, ["6.6.6.6, 203.0.113.2"] * 3)
    not_a_proxy = await _bootstraps(proxied, token, "127.0.0.43", ["203.0.113.3"] * 4)

    assert one == [200, 200, 200, 429]
    assert two == [200, 200, 200]
    assert not_a_proxy == [200, 200, 200, 429]  # keyed by its own address, header ignored


async def _open_polls(
    d: Deployment, token: str, source: str, forwarded: str, count: int
) -> tuple[list[asyncio.Task[httpx.Response]], httpx.AsyncClient]:
    client = d.client(source=source, Authorization=f"Bearer {token}")
    client.headers["X-Forwarded-For"] = forwarded
    polls = [
        asyncio.create_task(client.get("/v1/stream/poll", params={"cursor": "0", "timeout": 8}))
        for _ in range(count)
    ]
    return polls, client


async def test_the_stream_cap_keys_on_the_same_client_address(proxied: Deployment) -> None:
    users = [proxied.add() for _ in range(3)]
    waiting, first = await _open_polls(proxied, users[0].token, PROXY, "203.0.113.7", 2)
    await eventually(
        lambda: _polls_open(proxied, 2), what="both long-polls to be waiting on the server"
    )

    async with (
        proxied.client(users[1], source=PROXY) as same,
        proxied.client(users[2], source=PROXY) as other,
    ):
        refused = await same.get(
            "/v1/stream/poll",
            params={"cursor": "0", "timeout": 0},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        allowed = await other.get(
            "/v1/stream/poll",
            params={"cursor": "0", "timeout": 0},
            headers={"X-Forwarded-For": "203.0.113.8"},
        )

    assert refused.status_code == 429
    assert error_code(refused) == "ERR_TOO_MANY_CONNECTIONS"
    assert allowed.status_code == 200
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await first.aclose()


async def _polls_open(d: Deployment, count: int) -> bool:
    return await metric(d, 'parley_stream_opens_total{transport="poll"}') >= count
