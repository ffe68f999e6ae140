"""The browser JS client (static/client.js) in Chromium against a real server.

Each test drives `ParleyClient` on a page the server serves (/static/testing/client.html) and
checks what a user would see: the timeline, the transport, the counters the client reports.
Blocking is done in the browser for real: the page's WebSocket is pointed at a closed port (the
connection is refused) or at a socket that accepts and never answers (a black hole), and SSE,
long-poll and sends are cut with `page.route`. Connections are dropped by restarting the server.
Fallback times are measured and printed (run with -s to see them), never asserted.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route

from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import settled

TRANSPORTS = ["ws", "sse", "poll"]
T = TypeVar("T")

# Installed before any page script: `window.__gate.ws` decides where the page's WebSockets go.
GATE_SCRIPT = """
(() => {
  const RealWebSocket = window.WebSocket;
  const gate = { ws: "open", ports: {}, sockets: [], dropAfterSend: false };
  window.__gate = gate;
  gate.drop = () => gate.sockets.forEach((socket) => socket.close(4000, "dropped by the test"));
  window.WebSocket = function WebSocket(url, protocols) {
    const target = new URL(url);
    if (gate.ws !== "open") target.host = `127.0.0.1:${gate.ports[gate.ws]}`;
    const socket = new RealWebSocket(target.toString(), protocols);
    gate.sockets.push(socket);
    return socket;
  };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket.prototype = RealWebSocket.prototype;
  // Lose the connection right after a `send` frame leaves, before its ack can come back.
  const realSend = RealWebSocket.prototype.send;
  RealWebSocket.prototype.send = function (data) {
    realSend.call(this, data);
    if (gate.dropAfterSend && String(data).includes('"type":"send"')) {
      gate.dropAfterSend = false;
      this.close(4000, "dropped after send");
    }
  };
})();
"""

# One client per page, with everything it emitted recorded for the assertions.
HARNESS = """
window.harness = {
  events: [],
  create(token, options) {
    const client = new ParleyClient({ token, reconnectMaxMs: 1000, ...options });
    window.client = client;
    const record = (event) => harness.events.push(event);
    client.on("message", (m, { source }) => record({ event: "message", body: m.body, source }));
    client.on("message.updated", (m, { source, change }) => {
      const deleted = Boolean(m.deleted_at);
      record({ event: "message.updated", seq: m.seq, body: m.body, deleted, source, change });
    });
    client.on("transport", (name, change) => record({ event: "transport", ...change }));
    client.on("resync", () => record({ event: "resync" }));
  },
  async connect(token, options) {
    if (token) harness.create(token, options);
    await client.connect();
    return client.transport;
  },
};
"""


@dataclass
class Chat:
    """Alice and Bob in the demo room, seen through REST (Bob is the other side)."""

    url: str
    alice: str
    bob: str
    room: int

    def send_as_bob(self, body: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/v1/conversations/{self.room}/messages",
            json={"client_msg_id": f"bob-{body}", "body": body},
            headers={"Authorization": f"Bearer {self.bob}"},
        )
        response.raise_for_status()
        return dict(response.json())

    def change_as_bob(self, method: str, message_id: int, tail: str = "", **json: Any) -> None:
        response = httpx.request(
            method,
            f"{self.url}/v1/conversations/{self.room}/messages/{message_id}{tail}",
            json=json or None,
            headers={"Authorization": f"Bearer {self.bob}"},
        )
        response.raise_for_status()

    def stored(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/v1/conversations/{self.room}/messages",
            params={"limit": 500},
            headers={"Authorization": f"Bearer {self.bob}"},
        )
        response.raise_for_status()
        return list(response.json()["messages"])

    def read_seq_of_alice(self) -> int:
        response = httpx.get(
            f"{self.url}/v1/conversations/{self.room}/members",
            headers={"Authorization": f"Bearer {self.bob}"},
        )
        (alice,) = [m for m in response.json()["members"] if m["name"] == "alice"]
        return int(alice["read_seq"])


# How long to wait for the client to reach a state: on two busy cores (two workers, each with a
# browser and servers) a fallback round whose handshakes time out may need a few more rounds.
WAIT_MS = 30_000


class BrowserClient:
    """The page's `window.client`, driven from Python."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def create(self, token: str, **options: Any) -> None:
        self.page.evaluate("([t, o]) => harness.create(t, o)", [token, options])

    def connect(self, token: str | None = None, **options: Any) -> str:
        return str(self.page.evaluate("([t, o]) => harness.connect(t, o)", [token, options]))

    def send(self, conversation_id: int, body: str) -> dict[str, Any]:
        return dict(self.page.evaluate("([c, b]) => client.send(c, b)", [conversation_id, body]))

    def timeline(self, conversation_id: int) -> list[dict[str, Any]]:
        return list(
            self.page.evaluate(
                "(c) => client.timeline(c).map(({id, seq, body}) => ({id, seq, body}))",
                conversation_id,
            )
        )

    def wait_for_bodies(self, conversation_id: int, bodies: list[str]) -> None:
        self.page.wait_for_function(
            """([c, bodies]) => {
                const have = new Set(client.timeline(c).map((m) => m.body));
                return bodies.every((b) => have.has(b));
            }""",
            arg=[conversation_id, bodies],
            timeout=WAIT_MS,
        )

    def wait_for_transport(self, name: str) -> None:
        self.page.wait_for_function(
            "(name) => client.transport === name && client.state === 'open'",
            arg=name,
            timeout=WAIT_MS,
        )

    @property
    def transport(self) -> str:
        return str(self.page.evaluate("() => client.transport"))

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("() => client.stats()"))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return list(self.page.evaluate("(k) => harness.events.filter((e) => e.event === k)", kind))

    def close(self) -> None:
        self.page.evaluate("() => client.close()")


def p0_counters(stats: dict[str, Any]) -> dict[str, int]:
    names = ("ack_without_receipt_10s", "timeline_duplicate_detected", "read_rollback_detected")
    return {name: stats[name] for name in names}


def assert_timeline_is_the_servers(client: BrowserClient, chat: Chat) -> None:
    """The client holds every stored message once, in seq order, and nothing else."""
    timeline = client.timeline(chat.room)
    stored = [{"id": m["id"], "seq": m["seq"], "body": m["body"]} for m in chat.stored()]
    assert timeline == stored
    assert [m["seq"] for m in timeline] == list(range(1, len(stored) + 1))


def block(page: Page, transport: str) -> None:
    """Make new connections over `transport` fail in the browser."""
    if transport == "ws":
        page.evaluate("() => { __gate.ws = 'refuse'; }")
    else:
        page.route(f"**/v1/stream/{transport}**", lambda route: route.abort())


def unblock(page: Page, transport: str) -> None:
    if transport == "ws":
        page.evaluate("() => { __gate.ws = 'open'; }")
    else:
        page.unroute(f"**/v1/stream/{transport}**")


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers, like a proxy eating upgrades."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def demo_chat(server: ServerProcess) -> Chat:
    def token(name: str) -> str:
        response = httpx.post(f"{server.url}/demo/session", json={"name": name})
        return str(response.json()["token"])

    alice, bob = token("alice"), token("bob")
    conversations = httpx.get(
        f"{server.url}/v1/conversations", headers={"Authorization": f"Bearer {alice}"}
    ).json()["conversations"]
    (room,) = [c["id"] for c in conversations if c["title"] == "Demo room"]
    return Chat(url=server.url, alice=alice, bob=bob, room=room)


@contextmanager
def client_page(browser: Browser, server: ServerProcess, blackhole_port: int) -> Iterator[Page]:
    """The client test page of `server`, with the WebSocket gate installed."""
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(15_000)
    context.add_init_script(GATE_SCRIPT)
    page = context.new_page()
    page.goto("/static/testing/client.html")
    page.wait_for_function("window.parleyReady === true")
    page.evaluate(
        "([refuse, blackhole]) => { __gate.ports = { refuse, blackhole }; }",
        [free_port(), blackhole_port],
    )
    page.evaluate(HARNESS)
    try:
        yield page
    finally:
        page.unroute_all(behavior="ignoreErrors")  # a long-poll may still be in a route handler
        context.close()


@pytest.fixture
def chat(demo_server: ServerProcess) -> Chat:
    return demo_chat(demo_server)


@pytest.fixture
def page(browser: Browser, demo_server: ServerProcess, blackhole_port: int) -> Iterator[Page]:
    with client_page(browser, demo_server, blackhole_port) as page:
        yield page


@pytest.fixture
def client(page: Page) -> BrowserClient:
    return BrowserClient(page)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_delivers_messages_and_acks_sends(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess, transport: str
) -> None:
    assert client.connect(chat.alice, transports=[transport]) == transport

    for n in range(3):
        chat.send_as_bob(f"bob {n}")
    ack = client.send(chat.room, "alice 0")
    client.wait_for_bodies(chat.room, ["bob 0", "bob 1", "bob 2", "alice 0"])

    assert ack["duplicate"] is False
    assert ack["seq"] == 4
    assert_timeline_is_the_servers(client, chat)
    client.page.wait_for_function("() => client.stats().pending_receipts === 0")
    stats = client.stats()
    assert p0_counters(stats) == dict.fromkeys(p0_counters(stats), 0)
    assert len(stats["by_transport"][transport]["write_receipt_ms"]) == 1

    client.close()  # sends the last report
    metrics = httpx.get(f"{demo_server.url}/metrics").text
    assert f'parley_client_write_receipt_seconds_count{{transport="{transport}"}} 1.0' in metrics


def test_blackholed_websocket_falls_back_to_sse(client: BrowserClient, chat: Chat) -> None:
    client.page.evaluate("() => { __gate.ws = 'blackhole'; }")

    assert client.connect(chat.alice) == "sse"

    (switch,) = client.events("transport")
    print(f"\nfallback ws (black hole) -> sse at connect: {switch['ms']} ms")
    assert [a["transport"] for a in client.stats()["attempts"]] == ["ws", "sse"]
    chat.send_as_bob("over sse")
    client.send(chat.room, "alice over sse")
    client.wait_for_bodies(chat.room, ["over sse", "alice over sse"])
    assert_timeline_is_the_servers(client, chat)


@pytest.mark.parametrize("blocking", ["refused", "black-holed"])
def test_blocked_websocket_and_sse_fall_back_to_long_poll(
    client: BrowserClient, chat: Chat, blocking: str
) -> None:
    held: list[Route] = []  # SSE requests left unanswered, like a proxy that swallows them
    if blocking == "refused":
        block(client.page, "ws")
        block(client.page, "sse")
    else:
        client.page.evaluate("() => { __gate.ws = 'blackhole'; }")
        client.page.route("**/v1/stream/sse**", lambda route: held.append(route))

    assert client.connect(chat.alice) == "poll"

    (switch,) = client.events("transport")
    attempts = client.stats()["attempts"]
    hops = ", ".join(f"{a['transport']} {a['kind']} after {a['ms']} ms" for a in attempts)
    print(f"\nfallback ws + sse {blocking} -> poll at connect: {switch['ms']} ms ({hops})")
    assert [a["transport"] for a in attempts] == ["ws", "sse", "poll"]
    assert len(held) == (1 if blocking == "black-holed" else 0)
    chat.send_as_bob("over poll")
    client.send(chat.room, "alice over poll")
    client.wait_for_bodies(chat.room, ["over poll", "alice over poll"])
    assert_timeline_is_the_servers(client, chat)


def test_websocket_lost_mid_session_moves_to_sse_then_poll_losing_nothing(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess
) -> None:
    assert client.connect(chat.alice) == "ws"
    chat.send_as_bob("before")
    client.wait_for_bodies(chat.room, ["before"])

    client.page.evaluate("() => { __gate.ws = 'blackhole'; __gate.drop(); }")
    sent_while_switching = [chat.send_as_bob(f"during ws->sse {n}")["body"] for n in range(3)]
    client.wait_for_transport("sse")
    client.wait_for_bodies(chat.room, sent_while_switching)

    block(client.page, "sse")
    client.page.evaluate("() => { __gate.ws = 'refuse'; }")
    # Nothing in the browser can cut a live EventSource; the server's restart does.
    demo_server.stop()
    demo_server.start()
    sent_while_switching = [chat.send_as_bob(f"during sse->poll {n}")["body"] for n in range(3)]
    client.wait_for_transport("poll")
    client.wait_for_bodies(chat.room, sent_while_switching)

    ws_to_sse, sse_to_poll = client.events("transport")[1:]
    print(f"\nmid-session ws -> sse (ws black-holed): {ws_to_sse['ms']} ms from the drop")
    print(f"mid-session sse -> poll (server restart included): {sse_to_poll['ms']} ms")
    assert (ws_to_sse["from"], ws_to_sse["to"]) == ("ws", "sse")
    assert (sse_to_poll["from"], sse_to_poll["to"]) == ("sse", "poll")
    assert_timeline_is_the_servers(client, chat)
    assert p0_counters(client.stats())["timeline_duplicate_detected"] == 0


def test_sse_only_mode_moves_websocket_clients_to_sse(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess
) -> None:
    admin = admin_token(demo_server)
    assert client.connect(chat.alice) == "ws"

    httpx.put(
        f"{demo_server.url}/v1/admin/transport",
        json={"mode": "sse_only"},
        headers={"Authorization": f"Bearer {admin}"},
    ).raise_for_status()
    client.wait_for_transport("sse")
    chat.send_as_bob("after the switch")

    client.wait_for_bodies(chat.room, ["after the switch"])
    assert [(e["from"], e["to"]) for e in client.events("transport")] == [
        (None, "ws"),
        ("ws", "sse"),
    ]


def admin_token(server: ServerProcess) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "parley", "user", "add", "ops", "--role", "admin"],
        cwd=server.workdir,
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        check=True,
    )
    (token,) = re.findall(r"\S{20,}", done.stdout)
    return token


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess, transport: str
) -> None:
    client.connect(chat.alice, transports=[transport])
    before = [chat.send_as_bob(f"before {n}")["body"] for n in range(3)]
    client.wait_for_bodies(chat.room, before)

    block(client.page, transport)
    demo_server.stop()  # drops the connection: WS 1012, SSE and poll end
    demo_server.start()
    missed = [chat.send_as_bob(f"missed {n}")["body"] for n in range(4)]
    client.send(chat.room, "alice while away")  # over REST: the stream is down
    assert client.page.evaluate("() => client.state") != "open"
    assert not set(missed) & {m["body"] for m in client.timeline(chat.room)}
    unblock(client.page, transport)

    client.wait_for_bodies(chat.room, [*missed, "alice while away"])
    assert_timeline_is_the_servers(client, chat)
    sources = {e["body"]: e["source"] for e in client.events("message")}
    assert {sources[body] for body in missed} == {"stream"}  # resumed, not patched up over REST
    client.page.wait_for_function("() => client.stats().pending_receipts === 0")
    stats = client.stats()
    assert p0_counters(stats) == dict.fromkeys(p0_counters(stats), 0)
    assert stats["forced_resyncs"] == 0
    assert client.transport == transport


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_edits_reactions_and_unsends_reach_the_timeline_live_and_after_resume(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess, transport: str
) -> None:
    client.connect(chat.alice, transports=[transport])
    typo, regret = chat.send_as_bob("helo"), chat.send_as_bob("card 4111")
    client.wait_for_bodies(chat.room, ["helo", "card 4111"])

    chat.change_as_bob("PATCH", typo["id"], body="hello")
    chat.change_as_bob("DELETE", regret["id"])
    mine = client.page.evaluate(
        "([c, m]) => client.react(c, m, 'ok').then((x) => x.reactions)", [chat.room, typo["id"]]
    )
    client.wait_for_bodies(chat.room, ["hello", ""])
    block(client.page, transport)
    demo_server.stop()
    demo_server.start()
    chat.change_as_bob("PATCH", typo["id"], body="hello, Alice")
    unblock(client.page, transport)
    client.wait_for_bodies(chat.room, ["hello, Alice"])

    assert mine == [{"emoji": "ok", "count": 1, "user_ids": [mine[0]["user_ids"][0]]}]
    held = client.page.evaluate(
        """(c) => client.timeline(c).map(
            (m) => [m.seq, m.body, Boolean(m.deleted_at), m.reactions.length])""",
        chat.room,
    )
    assert held == [[1, "hello, Alice", False, 1], [2, "", True, 0]]
    updates = [(e["seq"], e["change"]) for e in client.events("message.updated")]
    assert updates[:2] == [(1, "edited"), (2, "deleted")]
    assert updates[-1] == (1, "edited")  # missed while away: the resume brought it
    assert sorted(updates[2:-1]) == [(1, None)] or updates[2:-1] == [(1, "reactions")]
    assert_timeline_is_the_servers(client, chat)


def test_send_retried_after_a_lost_response_is_stored_once(
    client: BrowserClient, chat: Chat
) -> None:
    client.connect(chat.alice, transports=["sse"])  # sends go over REST
    lost: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if route.request.method == "POST" and not lost:
            route.fetch()  # the server stores the message...
            lost.append(route.request.url)
            route.abort()  # ...and its answer never reaches the page
        else:
            route.continue_()

    client.page.route("**/v1/conversations/*/messages", lose_first_answer)
    ack = client.send(chat.room, "sent once")

    assert lost
    assert ack["duplicate"] is True  # the retry got the original answer
    stored = [m for m in chat.stored() if m["body"] == "sent once"]
    assert [(m["id"], m["seq"]) for m in stored] == [(ack["id"], ack["seq"])]
    client.wait_for_bodies(chat.room, ["sent once"])
    assert_timeline_is_the_servers(client, chat)


def test_send_retried_after_the_websocket_drops_before_the_ack_is_stored_once(
    client: BrowserClient, chat: Chat
) -> None:
    client.connect(chat.alice, transports=["ws"])
    client.page.evaluate("() => { __gate.dropAfterSend = true; }")

    ack = client.send(chat.room, "sent once over ws")

    assert client.page.evaluate("() => __gate.dropAfterSend") is False  # it was dropped
    stored = [m for m in chat.stored() if m["body"] == "sent once over ws"]
    assert [(m["id"], m["seq"]) for m in stored] == [(ack["id"], ack["seq"])]
    client.wait_for_transport("ws")
    client.wait_for_bodies(chat.room, ["sent once over ws"])
    assert_timeline_is_the_servers(client, chat)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_outside_the_resume_window_forces_a_full_state_load(
    client: BrowserClient, chat: Chat, transport: str
) -> None:
    history = [chat.send_as_bob(f"history {n}")["body"] for n in range(2)]
    # A cursor from the future (say, saved before a backup was restored) cannot be resumed from.
    client.create(chat.alice, transports=[transport], cursor="999999999")
    client.page.evaluate("(room) => client.loadHistory(room)", chat.room)

    client.connect()
    client.page.wait_for_function("() => client.stats().full_state_loads === 1")

    stats = client.stats()
    assert stats["forced_resyncs"] == 1
    assert len(client.events("resync")) == 1
    assert client.transport == transport
    assert int(stats["cursor"]) < 999999999
    chat.send_as_bob("after the resync")
    client.wait_for_bodies(chat.room, [*history, "after the resync"])
    assert_timeline_is_the_servers(client, chat)


def test_mark_read_never_moves_backwards(client: BrowserClient, chat: Chat) -> None:
    client.connect(chat.alice)
    for n in range(3):
        chat.send_as_bob(f"to read {n}")
    client.wait_for_bodies(chat.room, ["to read 2"])

    assert client.page.evaluate("(room) => client.markRead(room, 3)", chat.room) is True
    assert client.page.evaluate("(room) => client.markRead(room, 2)", chat.room) is False

    assert settled(chat.read_seq_of_alice) == 3
    assert client.stats()["read_rollback_detected"] == 0  # a lower markRead is a no-op


def test_message_missing_from_the_stream_is_filled_over_rest(
    client: BrowserClient, chat: Chat
) -> None:
    def lose_one_event(route: Route) -> None:
        response = route.fetch()
        answer = response.json()
        answer["events"] = [
            e for e in answer["events"] if e.get("message", {}).get("body") != "lost on the way"
        ]
        route.fulfill(response=response, json=answer)

    client.page.route("**/v1/stream/poll**", lose_one_event)
    client.connect(chat.alice, transports=["poll"])
    for body in ("first", "lost on the way", "third"):
        chat.send_as_bob(body)

    client.wait_for_bodies(chat.room, ["first", "lost on the way", "third"])
    assert_timeline_is_the_servers(client, chat)
    sources = {e["body"]: e["source"] for e in client.events("message")}
    assert sources == {"first": "stream", "lost on the way": "fill", "third": "stream"}


def test_message_delivered_twice_by_the_stream_is_kept_once_and_counted(
    client: BrowserClient, chat: Chat
) -> None:
    def repeat_messages(route: Route) -> None:
        response = route.fetch()
        answer = response.json()
        answer["events"] = [e for e in answer["events"] for _ in range(2)]
        route.fulfill(response=response, json=answer)

    client.page.route("**/v1/stream/poll**", repeat_messages)
    client.connect(chat.alice, transports=["poll"])
    chat.send_as_bob("said once")
    ack = client.send(chat.room, "alice said once")

    client.wait_for_bodies(chat.room, ["said once", "alice said once"])
    client.page.wait_for_function("() => client.stats().timeline_duplicate_detected >= 2")
    assert_timeline_is_the_servers(client, chat)
    stats = client.stats()
    # Alice's own message came back once as its write receipt, then once more: one duplicate.
    assert stats["timeline_duplicate_detected"] == 2
    assert stats["ack_without_receipt_10s"] == 0
    assert ack["duplicate"] is False


def test_ack_never_echoed_by_the_stream_is_counted_and_reported(
    client: BrowserClient, chat: Chat, demo_server: ServerProcess
) -> None:
    def lose_own_messages(route: Route) -> None:
        response = route.fetch()
        answer = response.json()
        answer["events"] = [e for e in answer["events"] if e.get("type") != "message"]
        route.fulfill(response=response, json=answer)

    client.page.route("**/v1/stream/poll**", lose_own_messages)
    client.connect(chat.alice, transports=["poll"], receiptDeadlineMs=500)
    client.send(chat.room, "never echoed")

    client.page.wait_for_function("() => client.stats().ack_without_receipt_10s === 1")
    client.close()

    metrics = httpx.get(f"{demo_server.url}/metrics").text
    assert (
        'parley_client_reported_total{counter="ack_without_receipt_10s",transport="poll"} 1.0'
        in metrics
    )


@pytest.fixture
def strict_resume_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A demo server that lets a user resume once in five seconds (the default is 60 a minute):
    two resumes in a row fall in one window even when a busy machine makes each take seconds."""
    server = ServerProcess(
        port=free_port(),
        workdir=tmp_path,
        env={
            "PARLEY_LOG_JSON": "false",
            "PARLEY_DATA_DIR": str(tmp_path / "var"),
            "PARLEY_DATABASE_URL": "",
            "PARLEY_RESUME_RATE": "1/5 seconds",
        },
        args=["--demo"],
    )
    server.start()
    yield server
    server.stop()


def test_throttled_resume_waits_for_the_retry_hint_then_resumes(
    browser: Browser, strict_resume_server: ServerProcess, blackhole_port: int
) -> None:
    chat = demo_chat(strict_resume_server)
    with client_page(browser, strict_resume_server, blackhole_port) as page:
        client = BrowserClient(page)
        client.connect(chat.alice, transports=["ws"])
        chat.send_as_bob("before")
        client.wait_for_bodies(chat.room, ["before"])

        # Two drops in quick succession, each with something missed: two resumes in 5 seconds.
        for n in range(2):
            page.evaluate("() => { __gate.ws = 'refuse'; __gate.drop(); }")
            page.wait_for_function("() => client.state !== 'open'")
            chat.send_as_bob(f"missed {n}")
            page.evaluate("() => { __gate.ws = 'open'; }")
            client.wait_for_transport("ws")

        client.wait_for_bodies(chat.room, ["missed 0", "missed 1"])
        kinds = [a["kind"] for a in client.stats()["attempts"]]
        assert "throttled" in kinds
        assert_timeline_is_the_servers(client, chat)
        assert client.stats()["forced_resyncs"] == 0
