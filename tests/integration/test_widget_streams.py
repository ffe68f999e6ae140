"""Visitor streams on a real server: SSE and WebSocket under the widget's defences, and typing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.servers import ServerProcess, free_port
from tests.support.streams import eventually

SITE = "https://shop.example.com"
EVIL = "https://evil.example.net"


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


def _parley(workdir: Any, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "parley", *args],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp(f"widget-streams-{request.param}")
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP": "1000/minute",
        "PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP": "",
        "PARLEY_WIDGET_POLL_RATE_PER_SESSION": "1000/minute",
        "PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS": "0",
        "PARLEY_WIDGET_TYPING_RATE_PER_SESSION": "3/minute",
    }
    if request.param == "postgres":
        env["PARLEY_DATABASE_URL"] = request.getfixturevalue("postgres_databases").fresh_blocking()
        _parley(workdir, env, "migrate")
    tokens = {"operator": _parley(workdir, env, "user", "add", "operator")}
    tokens["root"] = _parley(workdir, env, "user", "add", "root", "--role", "admin")
    server = ServerProcess(port=free_port(), workdir=workdir, env=env).start()
    yield Node(server, tokens)
    server.stop()


@pytest.fixture
async def site(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, headers={"Origin": SITE}, timeout=30) as http:
        yield http


@dataclass
class Visit:
    widget_token: str
    inbox_id: int
    session: str
    conversation_id: int


async def new_visit(node: Node, site: httpx.AsyncClient) -> Visit:
    async with httpx.AsyncClient(base_url=node.url, headers=node.auth("root")) as admin:
        inbox = await admin.post(
            "/v1/admin/inboxes",
            json={
                "name": "Shop",
                "allowed_domains": ["shop.example.com"],
                "operators": ["operator"],
            },
        )
    assert inbox.status_code == 201, inbox.text
    token = inbox.json()["widget_token"]
    started = await site.post("/api/widget/bootstrap", json={"widget_token": token})
    assert started.status_code == 200, started.text
    body = started.json()
    return Visit(token, inbox.json()["id"], body["session"], body["conversation_id"])


async def operator_says(node: Node, visit: Visit, text: str) -> None:
    async with httpx.AsyncClient(base_url=node.url, headers=node.auth("operator")) as http:
        sent = await http.post(
            f"/v1/conversations/{visit.conversation_id}/messages",
            json={"client_msg_id": text, "body": text},
        )
    assert sent.status_code == 201, sent.text


class VisitorSse:
    """The widget's EventSource: every `data:` it received, parsed."""

    def __init__(self, node: Node, session: str, origin: str = SITE) -> None:
        self.url = f"{node.url}/api/widget/sse"
        self.params = {"session": session}
        self.origin = origin
        self.events: list[dict[str, Any]] = []
        self.response: httpx.Response | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    async def __aenter__(self) -> VisitorSse:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), 15)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(timeout=None, headers={"Origin": self.origin}) as http,
            http.stream("GET", self.url, params=self.params) as response,
        ):
            self.response = response
            self._opened.set()
            if response.status_code != 200:
                await response.aread()
                return
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: ") :]))

    def bodies(self) -> list[str]:
        return [e["message"]["body"] for e in self.events if e.get("type") == "message"]


@contextlib.asynccontextmanager
async def visitor_ws(
    node: Node, session: str, origin: str = SITE
) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"{node.ws_url}/api/widget/ws?session={session}", origin=origin, open_timeout=10
    ) as ws:
        yield ws


async def next_frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of this type (frames of other types are skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame.get("type") == kind:
            return dict(frame)


# -- SSE -------------------------------------------------------------------------------------


async def test_visitor_sse_gets_the_operators_reply(node: Node, site: httpx.AsyncClient) -> None:
    visit = await new_visit(node, site)

    async with VisitorSse(node, visit.session) as stream:
        await eventually(lambda: stream.events, what="hello")
        await operator_says(node, visit, "Hello from the shop")
        await eventually(lambda: stream.bodies(), what="the reply")

    assert stream.response is not None
    assert stream.response.headers["Access-Control-Allow-Origin"] == SITE
    assert stream.events[0]["type"] == "hello"
    assert stream.bodies() == ["Hello from the shop"]


async def test_visitor_sse_from_a_foreign_origin_is_refused(
    node: Node, site: httpx.AsyncClient
) -> None:
    visit = await new_visit(node, site)

    async with httpx.AsyncClient(base_url=node.url, headers={"Origin": EVIL}) as evil:
        response = await evil.get("/api/widget/sse", params={"session": visit.session})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_ORIGIN_NOT_ALLOWED"


async def test_visitor_sse_with_the_inbox_switched_off_answers_503(
    node: Node, site: httpx.AsyncClient
) -> None:
    visit = await new_visit(node, site)
    async with httpx.AsyncClient(base_url=node.url, headers=node.auth("root")) as admin:
        await admin.patch(f"/v1/admin/inboxes/{visit.inbox_id}", json={"enabled": False})

    response = await site.get("/api/widget/sse", params={"session": visit.session})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ERR_MESSENGER_DISABLED"


# -- WebSocket -------------------------------------------------------------------------------


async def test_visitor_websocket_gets_the_operators_reply(
    node: Node, site: httpx.AsyncClient
) -> None:
    visit = await new_visit(node, site)

    async with visitor_ws(node, visit.session) as ws:
        hello = await next_frame(ws, "hello")
        await operator_says(node, visit, "We ship tomorrow")
        message = await next_frame(ws, "message")

    assert hello["transport"] == "ws"
    assert message["message"]["body"] == "We ship tomorrow"


@pytest.mark.parametrize("origin", [EVIL, None], ids=["foreign", "none"])
async def test_visitor_websocket_from_a_page_the_inbox_does_not_allow_is_refused(
    node: Node, site: httpx.AsyncClient, origin: str | None
) -> None:
    visit = await new_visit(node, site)

    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{node.ws_url}/api/widget/ws?session={visit.session}", origin=origin, open_timeout=10
        ):
            pass

    assert refused.value.response.status_code == 403


async def test_visitor_websocket_is_receive_only(node: Node, site: httpx.AsyncClient) -> None:
    visit = await new_visit(node, site)

    async with visitor_ws(node, visit.session) as ws:
        await next_frame(ws, "hello")
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation_id": visit.conversation_id,
                    "client_msg_id": "sneaky",
                    "body": "past the rate limits",
                }
            )
        )
        refused_send = await next_frame(ws, "error")
        await ws.send(json.dumps({"type": "typing", "conversation_id": visit.conversation_id}))
        refused_typing = await next_frame(ws, "error")
        await ws.send(json.dumps({"type": "ping"}))
        pong = await next_frame(ws, "pong")

    assert refused_send["code"] == refused_typing["code"] == "ERR_FORBIDDEN"
    assert pong == {"type": "pong"}
    history = await site.get("/api/widget/messages", params={"session": visit.session})
    assert history.json()["messages"] == []


async def test_visitor_websocket_with_an_unknown_session_gets_an_error_and_closes(
    node: Node,
) -> None:
    async with visitor_ws(node, "vs_no-such-session-token") as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 15))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)

    assert error["type"] == "error" and error["code"] == "ERR_NOT_FOUND"
    assert ws.close_code == 1008


async def test_visitor_websocket_with_the_inbox_switched_off_is_refused(
    node: Node, site: httpx.AsyncClient
) -> None:
    visit = await new_visit(node, site)
    async with httpx.AsyncClient(base_url=node.url, headers=node.auth("root")) as admin:
        await admin.patch(f"/v1/admin/inboxes/{visit.inbox_id}", json={"enabled": False})

    async with visitor_ws(node, visit.session) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 15))

    assert error["code"] == "ERR_MESSENGER_DISABLED"


# -- typing ----------------------------------------------------------------------------------


async def test_visitor_typing_reaches_the_operator_and_is_rate_limited(
    node: Node, site: httpx.AsyncClient
) -> None:
    visit = await new_visit(node, site)
    ws_url = f"{node.ws_url}/v1/stream/ws"

    async with connect(ws_url, additional_headers=node.auth("operator")) as operator:
        await next_frame(operator, "hello")
        statuses = [
            (await site.post("/api/widget/typing", json={"session": visit.session})).status_code
            for _ in range(4)
        ]
        typing = await next_frame(operator, "typing")
    limited = await site.post("/api/widget/typing", json={"session": visit.session})

    assert statuses == [204, 204, 204, 429]
    assert typing["conversation_id"] == visit.conversation_id
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["Access-Control-Allow-Origin"] == SITE
