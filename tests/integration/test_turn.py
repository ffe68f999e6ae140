"""Parley's TURN credentials against a real TURN server (coturn with `use-auth-secret`): the ones
`GET /v1/calls/config` hands out allocate a relay and carry data between two clients; expired
ones, and ones made with another secret, are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import TurnTransport, create_turn_endpoint

from parley.features.calls.turn import turn_credentials
from parley.settings import Settings
from tests.conftest import PeopleFactory
from tests.support.turn import TurnServer, turn_server  # noqa: F401 - the fixture


@pytest.fixture
def backend() -> str:
    return "sqlite"  # TURN credentials do not touch the database


@pytest.fixture
def settings(database_url: str, tmp_path: Path, turn_server: TurnServer) -> Settings:  # noqa: F811
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        calls_turn_urls=[turn_server.url],
        calls_turn_secret=turn_server.secret,
    )


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))


@asynccontextmanager
async def allocation(
    server: TurnServer, username: str, password: str
) -> AsyncIterator[tuple[TurnTransport, Inbox]]:
    transport, inbox = await asyncio.wait_for(
        create_turn_endpoint(Inbox, server.address, username, password), 10
    )
    try:
        yield transport, inbox
    finally:
        transport.close()


async def refusal(server: TurnServer, username: str, password: str) -> int:
    """The error code the TURN server answers an allocation with these credentials."""
    with pytest.raises(stun.TransactionFailed) as failed:
        async with allocation(server, username, password):
            pass
    return int(failed.value.response.attributes["ERROR-CODE"][0])


async def test_credentials_from_parley_relay_data_between_two_clients(
    people: PeopleFactory,
    turn_server: TurnServer,  # noqa: F811
) -> None:
    alice, bob = await people.add(), await people.add()
    alice_turn = (await alice.http.get("/v1/calls/config")).json()["ice_servers"][0]
    bob_turn = (await bob.http.get("/v1/calls/config")).json()["ice_servers"][0]
    assert alice_turn["urls"] == [turn_server.url]

    async with (
        allocation(turn_server, alice_turn["username"], alice_turn["credential"]) as (a, _),
        allocation(turn_server, bob_turn["username"], bob_turn["credential"]) as (b, b_in),
    ):
        a_relay, b_relay = a.get_extra_info("sockname"), b.get_extra_info("sockname")
        # TURN lets through only peers an allocation has sent to: bob opens the way first.
        b.sendto(b"hello from bob", a_relay)
        a.sendto(b"hello from alice", b_relay)
        data, sender = await asyncio.wait_for(b_in.received.get(), 10)

    assert a_relay[0] == b_relay[0] == "127.0.0.1"
    assert (data, tuple(sender)) == (b"hello from alice", tuple(a_relay))


async def test_expired_or_foreign_credentials_are_refused(turn_server: TurnServer) -> None:  # noqa: F811
    expired = turn_credentials(turn_server.secret, 7, int(time.time()) - 5)
    valid_but_wrong_secret = turn_credentials("not-the-secret", 7, int(time.time()) + 600)
    fresh = turn_credentials(turn_server.secret, 7, int(time.time()) + 600)

    assert await refusal(turn_server, *expired) == 401
    assert await refusal(turn_server, *valid_but_wrong_secret) == 401
    async with allocation(turn_server, *fresh) as (transport, _):
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
