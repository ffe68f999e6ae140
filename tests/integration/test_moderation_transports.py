"""Moderation on every transport, against a real server process: held and refused sends answer
over WebSocket as over REST; mutes and bans stop sends over REST, WebSocket and the widget; a
deployment-wide ban closes the user's open streams and refuses new ones on WS, SSE and poll."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.servers import ServerProcess, free_port
from tests.support.streams import WsReader

SITE = "http://shop.localhost:8000"


@dataclass
class Node:
    server: ServerProcess
    tokens: dict[str, str]
    ids: dict[str, int]

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("moderation-transports")
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_DATA_DIR": str(workdir / "var"),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS": "0",
    }
    tokens = {}
    for name, role in (
        ("ann", "member"),
        ("bob", "member"),
        ("cy", "member"),
        ("dee", "member"),
        ("mod", "moderator"),
        ("root", "admin"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "parley", "user", "add", name, "--role", role],
            cwd=workdir,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        tokens[name] = result.stdout.strip().splitlines()[-1]
    server = ServerProcess(port=free_port(), workdir=workdir, env=env).start()
    ids = {
        name: httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {t}"}).json()[
            "id"
        ]
        for name, t in tokens.items()
    }
    yield Node(server, tokens, ids)
    server.stop()


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
        yield client


async def _conversation(http: httpx.AsyncClient, node: Node, owner: str, *others: str) -> int:
    made = await http.post(
        "/v1/conversations",
        headers=node.auth(owner),
        json={"kind": "group", "title": uuid.uuid4().hex[:8], "members": list(others)},
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def _sanction(http: httpx.AsyncClient, node: Node, **body: Any) -> dict[str, Any]:
    made = await http.post("/v1/moderation/sanctions", headers=node.auth("mod"), json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def _lift(http: httpx.AsyncClient, node: Node, sanction: dict[str, Any]) -> None:
    lifted = await http.post(
        f"/v1/moderation/sanctions/{sanction['id']}/lift", headers=node.auth("mod"), json={}
    )
    assert lifted.status_code == 200, lifted.text


def _send_frame(cid: int, body: str) -> dict[str, Any]:
    return {"type": "send", "conversation_id": cid, "client_msg_id": uuid.uuid4().hex, "body": body}


async def _reply(reader: WsReader, ref: str) -> dict[str, Any]:
    return await reader.wait_for_event(lambda e: e.get("ref") == ref)


async def test_held_and_refused_sends_answer_the_same_over_websocket_as_over_rest(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "ann", "bob")
    rule = await http.post(
        "/v1/moderation/rules",
        headers=node.auth("mod"),
        json={
            "name": f"ws-{cid}",
            "kind": "words",
            "verdict": "hold_for_review",
            "scope": "conversation_kind",
            "scope_value": "group",
            "config": {"words": [f"holdme{cid}"]},
        },
    )
    assert rule.status_code == 201, rule.text
    ann = await WsReader(node.url, node.tokens["ann"]).opened()
    bob = await WsReader(node.url, node.tokens["bob"]).opened()
    try:
        held, fine = _send_frame(cid, f"please holdme{cid}"), _send_frame(cid, "hello")
        await ann.send(held)
        await ann.send(fine)
        held_reply = await _reply(ann, held["client_msg_id"])
        fine_reply = await _reply(ann, fine["client_msg_id"])
        await bob.wait_for_messages(1)
    finally:
        await ann.close()
        await bob.close()
        await http.delete(f"/v1/moderation/rules/{rule.json()['id']}", headers=node.auth("mod"))

    assert held_reply["type"] == "error" and held_reply["code"] == "ERR_HELD_FOR_REVIEW"
    assert fine_reply["type"] == "ack"
    assert [m["message"]["body"] for m in bob.messages] == ["hello"]


async def test_a_mute_refuses_sends_over_rest_and_websocket_and_is_told_to_the_user(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "bob", "cy")
    cy = await WsReader(node.url, node.tokens["cy"]).opened()
    try:
        mute = await _sanction(
            http, node, user_id=node.ids["cy"], kind="mute", conversation_id=cid, reason="calm down"
        )
        notice = await cy.wait_for_event(lambda e: e["type"] == "moderation.notice")
        frame = _send_frame(cid, "still here")
        await cy.send(frame)
        ws_reply = await _reply(cy, frame["client_msg_id"])
        rest = await http.post(
            f"/v1/conversations/{cid}/messages",
            headers=node.auth("cy"),
            json={"client_msg_id": "rest-1", "body": "and here"},
        )
        await _lift(http, node, mute)
        back = await http.post(
            f"/v1/conversations/{cid}/messages",
            headers=node.auth("cy"),
            json={"client_msg_id": "rest-2", "body": "thanks"},
        )
    finally:
        await cy.close()

    assert notice["action"] == "mute" and notice["conversation_id"] == cid
    assert notice["reason"] == "calm down" and notice["expires_at"] is None
    assert ws_reply["type"] == "error" and ws_reply["code"] == "ERR_MUTED"
    assert rest.status_code == 403 and rest.json()["error"]["code"] == "ERR_MUTED"
    assert back.status_code == 201


async def test_a_global_ban_closes_open_streams_and_refuses_every_transport(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "bob", "dee")
    dee = await WsReader(node.url, node.tokens["dee"]).opened()
    try:
        ban = await _sanction(http, node, user_id=node.ids["dee"], kind="ban", reason="fraud")
        await dee.wait_ended()
        refused_ws = await WsReader(node.url, node.tokens["dee"]).opened()
        await refused_ws.wait_ended()
        sse = await http.get("/v1/stream/sse", headers=node.auth("dee"))
        poll = await http.get("/v1/stream/poll", headers=node.auth("dee"), params={"timeout": 0})
        rest = await http.post(
            f"/v1/conversations/{cid}/messages",
            headers=node.auth("dee"),
            json={"client_msg_id": "b1", "body": "hello?"},
        )
    finally:
        await dee.close()
        await _lift(http, node, ban)

    assert dee.of_type("moderation.notice")[0]["action"] == "ban"
    assert dee.close_code == 1012  # told to reconnect... and refused when it does
    assert refused_ws.events[0]["code"] == "ERR_BANNED" and refused_ws.close_code == 1008
    for answer in (sse, poll, rest):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "ERR_BANNED"
    # Lifted: the stream opens again.
    again = await WsReader(node.url, node.tokens["dee"]).opened()
    await again.close()
    assert again.events[0]["type"] == "hello"


async def test_widget_sends_pass_the_inbox_rules_and_sanctions_too(
    node: Node, http: httpx.AsyncClient
) -> None:
    inbox = await http.post(
        "/v1/admin/inboxes",
        headers=node.auth("root"),
        json={
            "name": f"Shop {uuid.uuid4().hex[:6]}",
            "allowed_domains": ["shop.localhost"],
            "operators": ["bob"],
        },
    )
    assert inbox.status_code == 201, inbox.text
    rule = await http.post(
        "/v1/moderation/rules",
        headers=node.auth("mod"),
        json={
            "name": f"inbox-{inbox.json()['id']}",
            "kind": "words",
            "scope": "inbox",
            "scope_value": str(inbox.json()["id"]),
            "config": {"words": ["chargeback"]},
        },
    )
    assert rule.status_code == 201, rule.text
    visitor = httpx.AsyncClient(base_url=node.url, headers={"Origin": SITE}, timeout=30)
    try:
        boot = await visitor.post(
            "/api/widget/bootstrap", json={"widget_token": inbox.json()["widget_token"]}
        )
        assert boot.status_code == 200, boot.text
        session, visitor_id = boot.json()["session"], boot.json()["visitor_id"]
        cid = boot.json()["conversation_id"]

        async def send(body: str) -> httpx.Response:
            return await visitor.post(
                "/api/widget/messages",
                json={"session": session, "client_msg_id": uuid.uuid4().hex, "body": body},
            )

        assert (await send("hello")).status_code == 201
        resolved = await http.patch(
            f"/v1/livechat/conversations/{cid}",
            headers=node.auth("bob"),
            json={"status": "resolved"},
        )
        assert resolved.status_code == 200, resolved.text
        held = await send("or I file a chargeback")
        queue = await http.get("/v1/moderation/queue", headers=node.auth("mod"))
        (item,) = [i for i in queue.json()["items"] if i["conversation_id"] == cid]
        approved = await http.post(
            f"/v1/moderation/queue/{item['id']}/actions",
            headers=node.auth("mod"),
            json={"action": "approve"},
        )
        state = await http.get(f"/v1/livechat/conversations/{cid}", headers=node.auth("bob"))

        mute = await _sanction(http, node, user_id=visitor_id, kind="mute", duration_seconds=600)
        refused = await send("spam spam")
        await _lift(http, node, mute)
        after = await send("sorry")
    finally:
        await visitor.aclose()
        await http.delete(f"/v1/moderation/rules/{rule.json()['id']}", headers=node.auth("mod"))

    assert held.status_code == 409 and held.json()["error"]["code"] == "ERR_HELD_FOR_REVIEW"
    assert held.headers["access-control-allow-origin"] == SITE  # the widget can show why
    assert approved.status_code == 200, approved.text
    # The approved message counts as the visitor writing: the resolved conversation reopens.
    assert state.json()["status"] == "open"
    assert state.json()["last_message"]["body"] == "or I file a chargeback"
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_MUTED"
    assert refused.headers["access-control-allow-origin"] == SITE
    assert after.status_code == 201


async def test_a_reported_message_removed_by_a_moderator_becomes_a_tombstone_live(
    node: Node, http: httpx.AsyncClient
) -> None:
    cid = await _conversation(http, node, "ann", "bob")
    said = []
    for body in ("hello", "buy my followers", "bye"):
        sent = await http.post(
            f"/v1/conversations/{cid}/messages",
            headers=node.auth("ann"),
            json={"client_msg_id": uuid.uuid4().hex, "body": body},
        )
        said.append(sent.json())
    reported = await http.post(
        f"/v1/conversations/{cid}/messages/{said[1]['id']}/report",
        headers=node.auth("bob"),
        json={"reason": "spam"},
    )
    bob = await WsReader(node.url, node.tokens["bob"]).opened()
    try:
        removed = await http.post(
            f"/v1/moderation/queue/{reported.json()['item_id']}/actions",
            headers=node.auth("mod"),
            json={"action": "remove", "reason": "spam"},
        )
        update = await bob.wait_for_event(lambda e: e["type"] == "message.updated")
    finally:
        await bob.close()
    page = await http.get(f"/v1/conversations/{cid}/messages", headers=node.auth("bob"))

    assert removed.status_code == 200, removed.text
    assert update["change"] == "deleted" and update["seq"] == said[1]["seq"]
    assert update["message"]["body"] == "" and update["message"]["deleted_by"] == "staff"
    messages = page.json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2, 3]  # gapless: the tombstone keeps its seq
    assert [m["body"] for m in messages] == ["hello", "", "bye"]
    assert messages[1]["deleted_at"] is not None
    item = await http.get(
        f"/v1/moderation/queue/{reported.json()['item_id']}", headers=node.auth("mod")
    )
    assert item.json()["body"] == "buy my followers"  # kept as evidence
