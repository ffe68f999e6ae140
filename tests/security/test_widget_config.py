"""Attack: misuse an inbox's configuration. `allowed_domains: ["*.com"]` (any site may embed the
chat), a `javascript:` privacy URL (stored XSS in the widget), and a verified visitor session
that keeps reading its verified history after the inbox's identity secret is removed."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.core.models import Role
from parley.features.widget.identity import hmac_token
from tests.security.conftest import SITE, Deployment, bootstrap, error_code, make_inbox


@pytest.mark.parametrize("domain", ["*.com", "*.co.uk", "*.github.io", "*.appspot.com"])
async def test_a_wildcard_over_a_public_suffix_is_refused(shared: Deployment, domain: str) -> None:
    admin = shared.add(Role.ADMIN)
    inbox = await make_inbox(shared, admin)
    async with shared.client(admin) as http:
        created = await http.post(
            "/v1/admin/inboxes", json={"name": "Any", "allowed_domains": [domain]}
        )
        changed = await http.patch(
            f"/v1/admin/inboxes/{inbox['id']}", json={"allowed_domains": [domain]}
        )
        stored = (await http.get(f"/v1/admin/inboxes/{inbox['id']}")).json()

    assert created.status_code == changed.status_code == 422
    assert "public suffix" in changed.json()["error"]["message"]
    assert stored["allowed_domains"] == ["shop.example.com"]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://user:pw@evil.example/",
        "//evil.example/privacy",
        "https://example.com/\nSet-Cookie: x",
    ],
)
async def test_a_privacy_url_that_is_not_an_http_address_is_refused(
    shared: Deployment, url: str
) -> None:
    admin = shared.add(Role.ADMIN)
    inbox = await make_inbox(shared, admin, privacy_url="https://shop.example.com/privacy")
    async with shared.client(admin) as http:
        changed = await http.patch(f"/v1/admin/inboxes/{inbox['id']}", json={"privacy_url": url})
        created = await http.post("/v1/admin/inboxes", json={"name": "X", "privacy_url": url})
    visit = await bootstrap(shared, inbox["widget_token"], source="127.0.0.31")

    assert changed.status_code == created.status_code == 422
    assert visit["privacy"]["url"] == "https://shop.example.com/privacy"


async def test_a_verified_session_ends_when_the_identity_secret_is_removed(
    shared: Deployment,
) -> None:
    admin = shared.add(Role.ADMIN)
    inbox = await make_inbox(shared, admin)
    async with shared.client(admin) as http:
        secret = (await http.post(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")).json()[
            "identity_secret"
        ]
    identity = hmac_token(secret, "customer-42", int(time.time()) + 300, secrets.token_hex(8))
    visit = await bootstrap(shared, inbox["widget_token"], source="127.0.0.32", identity=identity)
    assert visit["verified"] is True
    session = visit["session"]
    page = httpx.AsyncClient(base_url=shared.url, headers={"Origin": SITE})
    history = {"session": session}
    assert (await page.get("/api/widget/messages", params=history)).status_code == 200
    socket = await connect(f"{shared.ws_url}/api/widget/ws?session={session}", origin=SITE)
    await socket.recv()  # hello

    async with shared.client(admin) as http:
        removed = await http.delete(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")
    assert removed.status_code == 204
    after = await page.get("/api/widget/messages", params=history)
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:  # the stream says why, then closes
                await socket.recv()

    assert after.status_code == 404
    assert error_code(after) == "ERR_NOT_FOUND"
    assert socket.close_code == 4001
    await page.aclose()
