"""A stream client that stops reading while thousands of events flow: its buffer stays bounded,
it gets the documented close (WS 4008, or an SSE `error` ERR_TOO_SLOW and the stream's end), or,
if it takes nothing for PARLEY_STREAM_SEND_TIMEOUT_SECONDS, it is dropped; either way it resumes
from its cursor with nothing lost and nothing twice. Real server processes on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ServerProcess, free_port
from tests.support.stalled import StalledSse, StalledWebSocket
from tests.support.streams import WsReader, assert_in_order_once, eventually

QUEUE_LIMIT = 300
# 1,000 messages of 16,000 characters: 16 MB, far more than the queue limit, the writer's slice,
# and the kernel's socket buffers (4 MB at most here) hold together.
FLOOD = 1000
BODY = "x" * 16000


def _server(tmp_path: Path, send_timeout: float) -> ServerProcess:
    env = {
        "PARLEY_DATABASE_URL": "",
        "PARLEY_REDIS_URL": "",
        "PARLEY_DEMO": "true",
        "PARLEY_SQLITE_SYNCHRONOUS": "NORMAL",
        "PARLEY_STREAM_QUEUE_LIMIT": str(QUEUE_LIMIT),
        "PARLEY_STREAM_SEND_TIMEOUT_SECONDS": str(send_timeout),
    }
    return ServerProcess(port=free_port(), workdir=tmp_path, env=env).start()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Waits a minute for a stalled client before dropping it."""
    node = _server(tmp_path_factory.mktemp("patient"), send_timeout=60)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Drops a client that takes nothing for 2 s."""
    node = _server(tmp_path_factory.mktemp("impatient"), send_timeout=2)
    yield node
    node.stop()


async def _sign_in(node: ServerProcess, name: str) -> str:
    async with httpx.AsyncClient(base_url=node.url) as http:
        response = await http.post("/demo/session", json={"name": name})
    return str(response.json()["token"])


async def _room(node: ServerProcess, token: str) -> int:
    async with httpx.AsyncClient(
        base_url=node.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        response = await http.post(
            "/v1/conversations", json={"kind": "group", "title": "flood", "members": ["alice"]}
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _flood(node: ServerProcess, token: str, conversation_id: int, tag: str) -> set[str]:
    """Bob sends FLOOD messages over his own WebSocket, at most 10 unacknowledged; the acked."""
    bob = await WsReader(node.url, token).opened()
    ids = [f"{tag}-{i}" for i in range(FLOOD)]
    try:
        for sent, client_msg_id in enumerate(ids):
            await eventually(lambda n=sent: n - len(bob.acks()) < 10, what="bob's acks")
            await bob.send(
                {
                    "type": "send",
                    "conversation_id": conversation_id,
                    "client_msg_id": client_msg_id,
                    "body": BODY,
                }
            )
        await eventually(lambda: len(bob.acks()) == FLOOD, timeout=30, what="every ack")
    finally:
        await bob.close()
    assert not bob.of_type("error")
    return set(bob.acks())


async def _metrics(node: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=node.url) as http:
        text = (await http.get("/metrics")).text
    found = {}
    for name, labels, value in re.findall(r"^(parley_[a-z_]+)(\{[^}]*\})? (\S+)$", text, re.M):
        found[name + labels] = float(value)
    return found


async def _resume_and_check(
    node: ServerProcess,
    token: str,
    before: list[dict[str, Any]],
    start: int,
    acked: set[str],
) -> None:
    """Reconnect from the last position received; together, every acked message once."""
    cursor = max([start, *(m["pos"] for m in before)])
    again = await WsReader(node.url, token, cursor=str(cursor)).opened()
    try:
        await again.wait_for_messages(len(acked) - len(before), timeout=30)
        saw = before + again.messages
        assert_in_order_once(saw, after_pos=start)
        assert sorted(m["message"]["client_msg_id"] for m in saw) == sorted(acked)
    finally:
        await again.close()


async def test_a_websocket_that_stops_reading_gets_4008_then_resumes_with_nothing_lost(
    patient: ServerProcess,
) -> None:
    alice_token, bob_token = await _sign_in(patient, "alice"), await _sign_in(patient, "bob")
    cid = await _room(patient, bob_token)
    alice = await StalledWebSocket(patient.url, alice_token).open()
    start = int(alice.events[0]["cursor"])
    slow_before = (await _metrics(patient)).get(
        'parley_slow_consumer_disconnects_total{transport="ws"}', 0
    )

    acked = await _flood(patient, bob_token, cid, "ws")
    seen = await _metrics(patient)
    # Bounded: what waits for alice never exceeds her queue's limit.
    assert seen['parley_stream_queued_events{of="largest"}'] <= QUEUE_LIMIT
    await alice.read_until_closed()

    assert alice.close_code == 4008
    assert 0 < len(alice.messages) < FLOOD
    assert_in_order_once(alice.messages, after_pos=start)
    after = await _metrics(patient)
    assert after['parley_slow_consumer_disconnects_total{transport="ws"}'] == slow_before + 1
    await alice.close()
    await _resume_and_check(patient, alice_token, alice.messages, start, acked)


async def test_an_sse_stream_that_stops_reading_ends_with_err_too_slow_then_resumes(
    patient: ServerProcess,
) -> None:
    alice_token, bob_token = await _sign_in(patient, "alice"), await _sign_in(patient, "bob")
    cid = await _room(patient, bob_token)
    alice = await StalledSse(patient.url, alice_token).open()
    start = int(alice.events[0]["cursor"])

    acked = await _flood(patient, bob_token, cid, "sse")
    await alice.read_until_ended()

    assert alice.events[-1]["type"] == "error"
    assert alice.events[-1]["code"] == "ERR_TOO_SLOW"
    assert 0 < len(alice.messages) < FLOOD
    assert_in_order_once(alice.messages, after_pos=start)
    await alice.close()
    await _resume_and_check(patient, alice_token, alice.messages, start, acked)


async def test_a_websocket_that_takes_nothing_for_the_send_timeout_is_dropped_then_resumes(
    impatient: ServerProcess,
) -> None:
    alice_token, bob_token = await _sign_in(impatient, "alice"), await _sign_in(impatient, "bob")
    cid = await _room(impatient, bob_token)
    alice = await StalledWebSocket(impatient.url, alice_token).open()
    start = int(alice.events[0]["cursor"])

    acked = await _flood(impatient, bob_token, cid, "gone")

    async def dropped() -> bool:
        # Only bob's flood connection was ever closed normally; alice's is gone when the node
        # holds no WebSocket at all.
        return (await _metrics(impatient))['parley_stream_connections{transport="ws"}'] == 0

    await eventually(dropped, timeout=30, what="the stalled connection to be dropped")
    await alice.read_until_closed()
    assert alice.close_code == 1006  # aborted: no room was left for a closing handshake
    assert len(alice.messages) < FLOOD
    await alice.close()
    await _resume_and_check(impatient, alice_token, alice.messages, start, acked)
