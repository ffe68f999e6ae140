"""The event stream over WebSocket, SSE and long-poll, against a real server process: messages,
and changes to them (edits, reactions, unsends), live and after a resume.

Each backend (SQLite + memory bus; PostgreSQL + memory bus) gets one server for the module;
each test makes its own conversation, so tests do not see each other's messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import eventually

TRANSPORTS = ["ws", "sse", "poll"]


@dataclass
class Node:
    server: ServerProcess
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://")

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def _add_user(workdir: Path, env: dict[str, str], name: str, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "parley", "user", "add", name, *extra],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp(f"stream-{request.param}")
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_RESUME_WINDOW_EVENTS": "1000",
        "PARLEY_RESUME_RATE": "1000/minute",
        "PARLEY_STREAM_MAX_PER_USER": "6",
        "PARLEY_WS_MAX_FRAME_BYTES": "65536",
    }
    if request.param == "postgres":
        env["PARLEY_DATABASE_URL"] = request.getfixturevalue("postgres_databases").fresh_blocking()
        subprocess.run(
            [sys.executable, "-m", "parley", "migrate"],
            cwd=workdir,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            timeout=60,
        )
    tokens = {name: _add_user(workdir, env, name) for name in ("ann", "ben", "cat", "dan")}
    tokens["root"] = _add_user(workdir, env, "root", "--role", "admin")
    server = ServerProcess(port=free_port(), workdir=workdir, env=env).start()
    yield Node(server, tokens)
    server.stop()


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
        yield client


async def _conversation(http: httpx.AsyncClient, node: Node, owner: str, *members: str) -> int:
    response = await http.post(
        "/v1/conversations",
        headers=node.auth(owner),
        json={"kind": "group", "title": uuid.uuid4().hex[:8], "members": list(members)},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _send(
    http: httpx.AsyncClient, node: Node, who: str, cid: int, body: str
) -> dict[str, Any]:
    response = await http.post(
        f"/v1/conversations/{cid}/messages",
        headers=node.auth(who),
        json={"client_msg_id": uuid.uuid4().hex, "body": body},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


class Listener:
    """Reads one user's stream over one transport and keeps every event it got."""

    def __init__(self, node: Node, user: str, transport: str, cursor: str | None = None) -> None:
        self.node, self.user, self.transport, self.cursor = node, user, transport, cursor
        self.events: list[dict[str, Any]] = []
        self.hello: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def _got(self, event: dict[str, Any]) -> None:
        if event["type"] == "hello":
            self.hello = event
            self._ready.set()
        else:
            self.events.append(event)
        if event["type"] == "message":
            self.cursor = str(event["pos"])

    async def _run(self) -> None:
        params = {"cursor": self.cursor} if self.cursor else {}
        headers = self.node.auth(self.user)
        if self.transport == "ws":
            query = f"?cursor={self.cursor}" if self.cursor else ""
            async with connect(
                f"{self.node.ws_url}/v1/stream/ws{query}", additional_headers=headers
            ) as ws:
                async for frame in ws:
                    self._got(json.loads(frame))
        elif self.transport == "sse":
            async with (
                httpx.AsyncClient(base_url=self.node.url, timeout=None) as client,
                client.stream("GET", "/v1/stream/sse", params=params, headers=headers) as r,
            ):
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        self._got(json.loads(line[6:]))
        else:
            async with httpx.AsyncClient(base_url=self.node.url, timeout=40) as client:
                first = (
                    await client.get(
                        "/v1/stream/poll", params={**params, "timeout": 0}, headers=headers
                    )
                ).json()
                self.hello = {"type": "hello", "cursor": first["cursor"]}
                for event in first["events"]:
                    self._got(event)
                self.cursor = first["cursor"]
                self._ready.set()
                while True:
                    page = (
                        await client.get(
                            "/v1/stream/poll",
                            params={"cursor": self.cursor, "timeout": 5},
                            headers=headers,
                        )
                    ).json()
                    for event in page["events"]:
                        self._got(event)
                    self.cursor = page["cursor"]

    def messages(self, cid: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message" and e["conversation_id"] == cid]

    async def wait_for_messages(self, cid: int, count: int, timeout: float = 15) -> None:
        async def enough() -> None:
            while len(self.messages(cid)) < count:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(enough(), timeout)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_members_receive_messages_in_order_and_outsiders_nothing(
    node: Node, http: httpx.AsyncClient, transport: str
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Listener(node, "ben", transport) as ben, Listener(node, "cat", transport) as cat:
        for n in range(5):
            await _send(http, node, "ann", cid, f"m{n}")
        await ben.wait_for_messages(cid, 5)
        await asyncio.sleep(0.3)

    assert [e["message"]["body"] for e in ben.messages(cid)] == [f"m{n}" for n in range(5)]
    assert [e["seq"] for e in ben.messages(cid)] == [1, 2, 3, 4, 5]
    assert cat.messages(cid) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_resume_with_cursor_delivers_exactly_what_was_missed(
    node: Node, http: httpx.AsyncClient, transport: str
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Listener(node, "ben", transport) as ben:
        for n in range(3):
            await _send(http, node, "ann", cid, f"before{n}")
        await ben.wait_for_messages(cid, 3)
    cursor = ben.cursor
    for n in range(4):
        await _send(http, node, "ann", cid, f"missed{n}")

    async with Listener(node, "ben", transport, cursor=cursor) as again:
        await _send(http, node, "ann", cid, "live")
        await again.wait_for_messages(cid, 5)
        await asyncio.sleep(0.3)

    bodies = [e["message"]["body"] for e in again.messages(cid)]
    assert bodies == ["missed0", "missed1", "missed2", "missed3", "live"]


async def test_resume_from_outside_the_window_is_refused_on_every_transport(
    node: Node, http: httpx.AsyncClient
) -> None:
    future = str(10**12)
    async with httpx.AsyncClient(base_url=node.url) as client:
        poll = await client.get(
            "/v1/stream/poll", params={"cursor": future}, headers=node.auth("ben")
        )
        sse = await client.get(
            "/v1/stream/sse", params={"cursor": future}, headers=node.auth("ben")
        )
    async with connect(
        f"{node.ws_url}/v1/stream/ws?cursor={future}", additional_headers=node.auth("ben")
    ) as ws:
        frame = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()

    assert poll.status_code == 409
    assert poll.json()["error"]["code"] == "ERR_RESYNC_RANGE_UNAVAILABLE"
    assert sse.json()["error"]["code"] == "ERR_RESYNC_RANGE_UNAVAILABLE"
    assert frame["code"] == "ERR_RESYNC_RANGE_UNAVAILABLE"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009


async def test_retried_sends_reach_the_stream_once_with_the_original_ack(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with (
        Listener(node, "ben", "sse") as ben,
        connect(f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("ann")) as ws,
    ):
        await ws.recv()  # hello
        frame = {"type": "send", "conversation_id": cid, "client_msg_id": "retry-me", "body": "x"}
        await ws.send(json.dumps(frame))
        await ws.send(json.dumps(frame))
        rest = await http.post(
            f"/v1/conversations/{cid}/messages",
            headers=node.auth("ann"),
            json={"client_msg_id": "retry-me", "body": "x"},
        )
        acks = await _acks(ws, 2)
        await ben.wait_for_messages(cid, 1)
        await asyncio.sleep(0.5)

    assert sorted(a["duplicate"] for a in acks) == [False, True]
    assert {a["id"] for a in acks} == {rest.json()["id"]}
    assert rest.status_code == 200
    assert len(ben.messages(cid)) == 1


async def _acks(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    acks: list[dict[str, Any]] = []
    while len(acks) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "ack":
            acks.append(frame)
    return acks


async def test_websocket_send_to_a_foreign_conversation_gets_an_error_frame(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with connect(f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("cat")) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {"type": "send", "conversation_id": cid, "client_msg_id": "x", "body": "intruder"}
            )
        )
        frame = await _next_reply(ws)

    assert frame == {
        "type": "error",
        "code": "ERR_NOT_FOUND",
        "message": "no such conversation",
        "ref": "x",
        "retry_after": None,
    }
    page = await http.get(f"/v1/conversations/{cid}/messages", headers=node.auth("ann"))
    assert page.json()["messages"] == []


async def test_browsers_authenticate_with_a_single_use_ticket(
    node: Node, http: httpx.AsyncClient
) -> None:
    ticket = (await http.post("/v1/stream/ticket", headers=node.auth("ann"))).json()["ticket"]

    async with connect(f"{node.ws_url}/v1/stream/ws?ticket={ticket}") as ws:
        hello = json.loads(await ws.recv())
    async with connect(f"{node.ws_url}/v1/stream/ws?ticket={ticket}") as ws:
        reused = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()

    assert hello["type"] == "hello"
    assert reused["code"] == "ERR_INVALID_CREDENTIALS"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_websocket_from_a_foreign_origin_is_refused(node: Node) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{node.ws_url}/v1/stream/ws",
            origin="https://evil.example",
            additional_headers=node.auth("ann"),
        ):
            pass
    assert refused.value.response.status_code == 403

    own_origin = node.url
    async with connect(
        f"{node.ws_url}/v1/stream/ws", origin=own_origin, additional_headers=node.auth("ann")
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_bad_frames_get_errors_and_the_connection_survives(node: Node) -> None:
    async with connect(f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("ann")) as ws:
        await ws.recv()
        await ws.send(b"\x00\x01binary")
        binary = await _next_reply(ws)
        await ws.send("{not json")
        garbage = await _next_reply(ws)
        await ws.send(json.dumps({"type": "teleport"}))
        unknown = await _next_reply(ws)
        await ws.send(json.dumps({"type": "ping"}))
        pong = await _next_reply(ws)

    assert binary["code"] == "ERR_BAD_REQUEST"
    assert garbage["code"] == "ERR_INVALID_JSON"
    assert unknown["code"] == "ERR_VALIDATION"
    assert pong == {"type": "pong"}


async def _next_reply(ws: ClientConnection) -> dict[str, Any]:
    """The next answer to what we sent (skipping stream events such as presence)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] in ("error", "pong", "ack"):
            return dict(frame)


async def _read_until_closed(ws: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 10)


async def test_oversized_frame_closes_with_1009(node: Node) -> None:
    async with connect(
        f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("ann"), max_size=None
    ) as ws:
        await ws.recv()
        await ws.send("x" * 70_000)
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_invalid_utf8_text_frame_closes_with_1007(node: Node) -> None:
    async with connect(f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("ann")) as ws:
        await ws.recv()
        # A text frame whose payload is not UTF-8, written below the library's checks.
        ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe bad"))
        ws.send_data()
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007


async def test_connections_per_user_are_limited(node: Node) -> None:
    opened = []
    try:
        for _ in range(6):
            ws = await connect(f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("dan"))
            await ws.recv()
            opened.append(ws)
        async with connect(
            f"{node.ws_url}/v1/stream/ws", additional_headers=node.auth("dan")
        ) as extra:
            refused = json.loads(await extra.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await extra.recv()
    finally:
        for ws in opened:
            await ws.close()
    assert refused["code"] == "ERR_TOO_MANY_CONNECTIONS"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029


async def test_typing_receipts_and_presence_reach_other_members(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Listener(node, "ann", "ws") as ann, Listener(node, "ben", "sse"):
        await http.post(f"/v1/conversations/{cid}/typing", headers=node.auth("ben"))
        sent = await _send(http, node, "ann", cid, "hello")
        await http.post(
            f"/v1/conversations/{cid}/receipts",
            headers=node.auth("ben"),
            json={"read_seq": sent["seq"]},
        )
        online = await http.get(
            "/v1/presence", params={"user_ids": "1,2,3"}, headers=node.auth("ann")
        )

        async def seen(kind: str) -> None:
            while not any(e["type"] == kind for e in ann.events):
                await asyncio.sleep(0.02)

        for kind in ("typing", "receipt", "presence"):
            await asyncio.wait_for(seen(kind), 10)

    typing = next(e for e in ann.events if e["type"] == "typing")
    receipt = [e for e in ann.events if e["type"] == "receipt"][-1]
    assert typing["conversation_id"] == cid and typing["expires_in_ms"] == 5000
    assert (receipt["read_seq"], receipt["delivered_seq"]) == (1, 1)
    assert len(online.json()["online"]) >= 2


# -- changes to messages: edits, reactions, unsends (docs/timeline.md) ---------------------------


class Follower(Listener):
    """A stream listener whose cursor follows every positioned event, changes included."""

    def _got(self, event: dict[str, Any]) -> None:
        super()._got(event)
        if event.get("pos") is not None:
            self.cursor = str(event["pos"])

    def changes(self, cid: int) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["type"] == "message.updated" and e["conversation_id"] == cid
        ]

    async def wait_for_changes(self, cid: int, count: int) -> list[dict[str, Any]]:
        await eventually(
            lambda: len(self.changes(cid)) >= count,
            what=f"{count} changes over {self.transport} (have {len(self.changes(cid))})",
        )
        return self.changes(cid)


async def _edit(
    http: httpx.AsyncClient, node: Node, who: str, cid: int, mid: int, body: str
) -> None:
    answer = await http.patch(
        f"/v1/conversations/{cid}/messages/{mid}",
        headers=node.auth(who),
        json={"body": body, "client_op_id": uuid.uuid4().hex},
    )
    assert answer.status_code == 200, answer.text


async def _unsend(http: httpx.AsyncClient, node: Node, who: str, cid: int, mid: int) -> None:
    answer = await http.delete(f"/v1/conversations/{cid}/messages/{mid}", headers=node.auth(who))
    assert answer.status_code == 200, answer.text


async def _react(http: httpx.AsyncClient, node: Node, who: str, cid: int, mid: int) -> None:
    answer = await http.put(
        f"/v1/conversations/{cid}/messages/{mid}/reactions/ok", headers=node.auth(who)
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_edits_reactions_and_unsends_arrive_live(
    node: Node, http: httpx.AsyncClient, transport: str
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Follower(node, "ben", transport) as ben:
        typo = await _send(http, node, "ann", cid, "helo")
        regret = await _send(http, node, "ann", cid, "something regrettable")
        await ben.wait_for_messages(cid, 2)
        await _edit(http, node, "ann", cid, typo["id"], "hello")
        await _react(http, node, "ben", cid, typo["id"])
        await _unsend(http, node, "ann", cid, regret["id"])
        changes = await ben.wait_for_changes(cid, 3)

    assert [(c["change"], c["seq"]) for c in changes] == [
        ("edited", typo["seq"]),
        ("reactions", typo["seq"]),
        ("deleted", regret["seq"]),
    ]
    assert changes[0]["message"]["body"] == "hello"
    assert changes[1]["message"]["reactions"][0]["emoji"] == "ok"
    tombstone = changes[2]["message"]
    assert tombstone["body"] == "" and tombstone["deleted_at"] is not None
    positions = [e["pos"] for e in ben.events if e.get("pos") is not None]
    assert positions == sorted(positions) and len(positions) == len(set(positions)) == 5


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_changes_missed_while_away_arrive_on_resume(
    node: Node, http: httpx.AsyncClient, transport: str
) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Follower(node, "ben", transport) as ben:
        sent = [await _send(http, node, "ann", cid, f"m{n}") for n in range(3)]
        await ben.wait_for_messages(cid, 3)
        await asyncio.sleep(0.2)  # let the poll transport's cursor catch up
    cursor = ben.cursor
    await _edit(http, node, "ann", cid, sent[0]["id"], "m0, edited")
    await _edit(http, node, "ann", cid, sent[1]["id"], "my card number is 4111")
    await _unsend(http, node, "ann", cid, sent[1]["id"])
    await _react(http, node, "ann", cid, sent[2]["id"])
    later = await _send(http, node, "ann", cid, "m3")

    async with Follower(node, "ben", transport, cursor=cursor) as again:
        await again.wait_for_messages(cid, 1)
        changes = await again.wait_for_changes(cid, 4)
        await asyncio.sleep(0.3)

    assert [e["message"]["body"] for e in again.messages(cid)] == ["m3"]
    assert [m["seq"] for m in (e["message"] for e in again.messages(cid))] == [later["seq"]]
    assert [(c["change"], c["seq"]) for c in again.changes(cid)] == [
        ("edited", sent[0]["seq"]),
        ("edited", sent[1]["seq"]),
        ("deleted", sent[1]["seq"]),
        ("reactions", sent[2]["seq"]),
    ]
    # Replayed changes carry the message as it is now: the unsent text is never re-sent.
    assert changes[0]["message"]["body"] == "m0, edited"
    assert all("4111" not in str(event) for event in again.events)
    assert changes[1]["message"]["deleted_at"] is not None
    positions = [e["pos"] for e in again.events if e.get("pos") is not None]
    assert positions == sorted(positions) and int(cursor) < positions[0]


async def test_outsiders_get_no_changes(node: Node, http: httpx.AsyncClient) -> None:
    cid = await _conversation(http, node, "ann", "ben")
    async with Follower(node, "dan", "ws") as dan, Follower(node, "ben", "ws") as ben:
        sent = await _send(http, node, "ann", cid, "private")
        await _edit(http, node, "ann", cid, sent["id"], "still private")
        await ben.wait_for_changes(cid, 1)
        await asyncio.sleep(0.3)

    assert dan.changes(cid) == [] and dan.messages(cid) == []
