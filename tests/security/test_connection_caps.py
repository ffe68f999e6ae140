"""Attack: exhaust a node with streams. Long-polls used to skip the per-user and per-address
caps, and concurrent opens raced past them. Every transport counts, the check and the count are
one step, and a refusal is 429 ERR_TOO_MANY_CONNECTIONS (WebSocket: error frame, close 4029)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.security.conftest import Deployment, deployment, error_code, metric
from tests.support.streams import SseReader, WsReader
from tests.support.waiting import eventually

PER_USER = 3
PER_IP = 5


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(
        tmp_path_factory.mktemp("caps"),
        PARLEY_STREAM_MAX_PER_USER=str(PER_USER),
        PARLEY_STREAM_MAX_PER_IP=str(PER_IP),
    ) as found:
        yield found


def _poll(client: httpx.AsyncClient, timeout: float = 8) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        client.get("/v1/stream/poll", params={"cursor": "0", "timeout": timeout})
    )


async def test_long_polls_count_against_the_per_user_cap(capped: Deployment) -> None:
    alice = capped.add()
    async with capped.client(alice, source="127.0.0.61") as curl:
        before = await metric(capped, 'parley_stream_opens_total{transport="poll"}')
        waiting = [_poll(curl) for _ in range(PER_USER)]
        await eventually(
            lambda: _opened(capped, before + PER_USER), what="the long-polls to be waiting"
        )
        refused = await curl.get("/v1/stream/poll", params={"cursor": "0", "timeout": 0})
        ws = await WsReader(capped.url, alice.token).opened()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    assert refused.status_code == 429
    assert error_code(refused) == "ERR_TOO_MANY_CONNECTIONS"
    assert int(refused.headers["Retry-After"]) >= 1
    assert ws.close_code == 4029
    assert ws.events[0]["code"] == "ERR_TOO_MANY_CONNECTIONS"
    await ws.close()


async def _opened(d: Deployment, count: float) -> bool:
    return await metric(d, 'parley_stream_opens_total{transport="poll"}') >= count


async def test_concurrent_websocket_opens_cannot_overshoot_the_cap(capped: Deployment) -> None:
    bob = capped.add()

    readers = await asyncio.gather(*(WsReader(capped.url, bob.token).opened() for _ in range(12)))

    accepted = [r for r in readers if r.events and r.events[0]["type"] == "hello"]
    refused = [r for r in readers if r.events and r.events[0]["type"] == "error"]
    assert len(accepted) == PER_USER
    assert len(refused) == 12 - PER_USER
    assert {r.events[0]["code"] for r in refused} == {"ERR_TOO_MANY_CONNECTIONS"}
    await asyncio.gather(*(r.close() for r in readers))


async def test_every_transport_counts_against_the_per_address_cap(capped: Deployment) -> None:
    people = [capped.add() for _ in range(PER_IP + 1)]
    clients = [capped.client(p, source="127.0.0.62") for p in people]
    before = await metric(capped, 'parley_stream_opens_total{transport="poll"}')
    waiting = [_poll(c) for c in clients[:PER_IP]]
    await eventually(lambda: _opened(capped, before + PER_IP), what="the long-polls to wait")

    refused = await clients[PER_IP].get("/v1/stream/poll", params={"cursor": "0", "timeout": 0})
    elsewhere = SseReader(capped.url, people[PER_IP].token)  # from 127.0.0.1: another address
    await elsewhere.open()

    assert refused.status_code == 429
    assert error_code(refused) == "ERR_TOO_MANY_CONNECTIONS"
    assert elsewhere.hello["type"] == "hello"
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await elsewhere.close()
    for client in clients:
        await client.aclose()
