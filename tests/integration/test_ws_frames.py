"""WebSocket frames made once per event and written as they are to every connection.

An uncompressed connection gets the envelope's own frame bytes (`Envelope.ws_frame`), written
straight to the socket by the hub's fan-out; a connection that negotiated permessage-deflate
(`PARLEY_WS_COMPRESSION=true`) goes through the WebSocket library as before. Either way a member
reads every message, whole and in order. Real server processes on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from parley.core.limits import MESSAGE_BODY_MAX_CHARS
from parley.realtime.envelope import Envelope
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import WsReader, eventually

# Bodies (in characters of 4 UTF-8 bytes) whose frames take each length encoding, the last
# one the longest body a message may have.
SIZES = [4, 100, 126, 5_000, MESSAGE_BODY_MAX_CHARS]


def test_an_envelope_frame_reads_back_as_its_text_for_every_length_encoding() -> None:
    for size in [0, 1, 125, 126, 65_535, 65_536, 300_000]:
        data = '{"type":"message","body":"' + "é" * size + '"}'
        client = ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN)
        client.receive_data(Envelope("message", data).ws_frame())
        [frame] = client.events_received()
        assert isinstance(frame, Frame)
        assert frame.opcode is Opcode.TEXT and frame.fin
        assert frame.data.decode() == data


def _server(tmp_path: Path, **env: str) -> ServerProcess:
    base = {
        "PARLEY_DATABASE_URL": "",
        "PARLEY_REDIS_URL": "",
        "PARLEY_DEMO": "true",
        "PARLEY_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    return ServerProcess(port=free_port(), workdir=tmp_path, env={**base, **env}).start()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    node = _server(tmp_path_factory.mktemp("plain"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def compressing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    node = _server(tmp_path_factory.mktemp("deflate"), PARLEY_WS_COMPRESSION="true")
    yield node
    node.stop()


async def _sign_in(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post("/demo/session", json={"name": name})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def _members_read_every_message(node: ServerProcess, *, compressed: bool) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        alice, bob = await _sign_in(http, "alice"), await _sign_in(http, "bob")
        room = await http.post(
            "/v1/conversations",
            json={"kind": "group", "title": "frames", "members": ["alice"]},
            headers={"Authorization": f"Bearer {bob}"},
        )
        assert room.status_code == 201, room.text
        cid = room.json()["id"]
        readers = [
            await WsReader(node.url, alice).opened(),
            await WsReader(node.url, alice).opened(),
        ]
        try:
            for reader in readers:  # browsers offer permessage-deflate, as this client does
                assert reader._ws is not None
                assert bool(reader._ws.protocol.extensions) is compressed
            bodies = [f"{n}:" + "𝄞" * (size - 3) for n, size in enumerate(SIZES * 5)]
            for n, body in enumerate(bodies):
                sent = await http.post(
                    f"/v1/conversations/{cid}/messages",
                    json={"client_msg_id": f"frame-{n}", "body": body},
                    headers={"Authorization": f"Bearer {bob}"},
                )
                assert sent.status_code == 201, sent.text
            for reader in readers:
                await reader.wait_for_messages(len(bodies))
                assert [m["message"]["body"] for m in reader.messages] == bodies
                assert not reader.ended.is_set()
        finally:
            for reader in readers:
                await reader.close()
        await eventually(lambda: all(r.ended.is_set() for r in readers), what="closed")


async def test_uncompressed_connections_read_every_message_from_the_shared_frame(
    plain: ServerProcess,
) -> None:
    await _members_read_every_message(plain, compressed=False)


async def test_compressed_connections_still_read_every_message(
    compressing: ServerProcess,
) -> None:
    await _members_read_every_message(compressing, compressed=True)
