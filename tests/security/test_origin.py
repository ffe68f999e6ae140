"""Attack: cross-site WebSocket hijacking and widget use from a foreign page with a crafted
Origin or Referer — userinfo (`https://evil@shop.example.com`), a trailing dot, a same-host
`https://` origin on a plain-http server. Refused at the handshake (HTTP 403) or with 403
ERR_ORIGIN_NOT_ALLOWED; the genuine origins still work."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from parley.core.models import Role
from tests.security.conftest import Deployment, error_code, make_inbox


async def _handshake(d: Deployment, origin: str, token: str) -> int:
    """The HTTP status of a WebSocket handshake sent with this Origin (101 when accepted)."""
    try:
        async with connect(
            f"{d.ws_url}/v1/stream/ws",
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as socket:
            await socket.recv()
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example@{host}",
        "http://{host}.",
        "https://{host}",
        "http://{host}/",
        "http://evil.example",
        "null",
    ],
)
async def test_a_crafted_origin_cannot_open_a_websocket(shared: Deployment, origin: str) -> None:
    alice = shared.add()
    host = f"127.0.0.1:{shared.server.port}"

    assert await _handshake(shared, origin.format(host=host), alice.token) == 403


async def test_the_servers_own_origin_opens_a_websocket(shared: Deployment) -> None:
    alice = shared.add()

    assert await _handshake(shared, f"http://127.0.0.1:{shared.server.port}", alice.token) == 101


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://shop.example.com."},
        {"Origin": "https://evil.example@shop.example.com"},
        {"Origin": "https://shop.example.com.evil.example"},
        {"Origin": "HTTPS://SHOP.EXAMPLE.COM/"},
        {"Referer": "https://user:pw@shop.example.com/cart"},
        {"Referer": "https://shop.example.com./cart"},
        {"Referer": "javascript://shop.example.com/"},
        {},
    ],
)
async def test_a_crafted_page_address_cannot_use_an_inboxs_widget(
    shared: Deployment, headers: dict[str, str]
) -> None:
    inbox = await make_inbox(shared, shared.add(Role.ADMIN))
    async with httpx.AsyncClient(base_url=shared.url, headers=headers) as page:
        response = await page.post(
            "/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]}
        )

    assert response.status_code == 403
    assert error_code(response) == "ERR_ORIGIN_NOT_ALLOWED"
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://shop.example.com"}, {"Referer": "https://shop.example.com/cart?x=1"}],
)
async def test_the_inboxs_own_site_uses_its_widget(
    shared: Deployment, headers: dict[str, str]
) -> None:
    inbox = await make_inbox(shared, shared.add(Role.ADMIN))
    async with httpx.AsyncClient(base_url=shared.url, headers=headers) as page:
        response = await page.post(
            "/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]}
        )

    assert response.status_code == 200, response.text
