"""Attack: reach a website visitor, or read their chat, from the member side. A member opens a
direct or group conversation with a visitor account and posts into it; an operator adds a
non-staff user to the visitor's conversation. Visitor accounts belong to their inbox's
conversations only: every attempt is refused, nothing reaches the visitor's stream, and the
outsider reads nothing."""

from __future__ import annotations

from typing import Any

import httpx

from parley.core.models import Role
from tests.security.conftest import SITE, Deployment, bootstrap, error_code, make_inbox


async def _visitor_events(d: Deployment, session: str) -> list[dict[str, Any]]:
    """Everything the visitor's widget would receive now (a long-poll from the start)."""
    async with httpx.AsyncClient(base_url=d.url, headers={"Origin": SITE}) as page:
        response = await page.get("/api/widget/poll", params={"session": session, "cursor": "0"})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


async def test_a_member_cannot_start_a_conversation_with_a_visitor(shared: Deployment) -> None:
    admin, mallory = shared.add(Role.ADMIN), shared.add()
    inbox = await make_inbox(shared, admin)
    visit = await bootstrap(shared, inbox["widget_token"], source="127.0.0.21")
    visitor = visit["visitor_name"]

    async with shared.client(mallory) as curl:
        attempts = [
            await curl.post("/v1/conversations", json={"kind": kind, "members": [visitor]})
            for kind in ("direct", "group", "room")
        ]
        mine = (await curl.get("/v1/conversations")).json()["conversations"]

    assert [r.status_code for r in attempts] == [422, 422, 422]
    assert all(f"unknown users: {visitor}" in r.json()["error"]["message"] for r in attempts)
    assert mine == []
    assert not [
        e for e in await _visitor_events(shared, visit["session"]) if e["type"] == "message"
    ]


async def test_staff_cannot_add_an_outsider_to_a_visitors_conversation(shared: Deployment) -> None:
    admin, operator, outsider = shared.add(Role.ADMIN), shared.add(), shared.add()
    inbox = await make_inbox(shared, admin, operators=[operator.name])
    visit = await bootstrap(shared, inbox["widget_token"], source="127.0.0.22")
    conversation_id = visit["conversation_id"]
    async with httpx.AsyncClient(base_url=shared.url, headers={"Origin": SITE}) as page:
        sent = await page.post(
            "/api/widget/messages",
            json={"session": visit["session"], "client_msg_id": "v1", "body": "my card is ..."},
        )
    assert sent.status_code == 201, sent.text

    async with shared.client(operator) as console:
        added = await console.post(
            f"/v1/conversations/{conversation_id}/members", json={"members": [outsider.name]}
        )
    assert added.status_code == 403
    assert error_code(added) == "ERR_VISITOR_NOT_REACHABLE"
    async with shared.client(outsider) as curl:
        read = await curl.get(f"/v1/conversations/{conversation_id}/messages")
        listed = (await curl.get("/v1/conversations")).json()["conversations"]

    assert read.status_code == 404
    assert listed == []
    async with shared.client(operator) as console:
        members = (await console.get(f"/v1/conversations/{conversation_id}/members")).json()
    assert outsider.name not in {m["name"] for m in members["members"]}


async def test_a_visitor_cannot_be_made_an_operator(shared: Deployment) -> None:
    admin = shared.add(Role.ADMIN)
    inbox = await make_inbox(shared, admin)
    visit = await bootstrap(shared, inbox["widget_token"], source="127.0.0.23")

    async with shared.client(admin) as http:
        as_operator = await http.patch(
            f"/v1/admin/inboxes/{inbox['id']}", json={"operators": [visit["visitor_name"]]}
        )
        as_branch = await http.post(
            "/v1/admin/branches", json={"name": "sales", "operators": [visit["visitor_name"]]}
        )

    assert as_operator.status_code == 422
    assert as_branch.status_code == 400
