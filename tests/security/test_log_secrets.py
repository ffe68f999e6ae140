"""Attack: read credentials out of the server log (log shipping, a support bundle). Streams
opened with `?ticket=` and the widget's `?session=` (WebSocket, SSE, long-poll), a failed
sign-in, a token sent where it is refused, and a webhook URL with a secret in its path: none of
them may reach a log line."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from parley.core.models import Role
from parley.logs import redact
from tests.security.conftest import (
    SITE,
    Deployment,
    bootstrap,
    deployment,
    json_lines,
    make_inbox,
)
from tests.support.waiting import eventually

WEBHOOK_SECRET = "T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A server logging everything (DEBUG), whose release webhook points nowhere."""
    with deployment(
        tmp_path_factory.mktemp("logs"),
        PARLEY_LOG_LEVEL="DEBUG",
        PARLEY_RELEASE_WEBHOOK_URL=f"http://127.0.0.1:9/services/{WEBHOOK_SECRET}",
        PARLEY_RELEASE_P0_MIN_REPORTERS="1",
        PARLEY_RELEASE_DWELL_CANARY_1_SECONDS="0",
    ) as found:
        yield found


async def _ticket(d: Deployment, token: str) -> str:
    async with httpx.AsyncClient(base_url=d.url) as http:
        response = await http.post(
            "/v1/stream/ticket", headers={"Authorization": f"Bearer {token}"}
        )
    return str(response.json()["ticket"])


async def test_no_ticket_session_token_or_webhook_secret_reaches_the_log(
    chatty: Deployment,
) -> None:
    admin, alice = chatty.add(Role.ADMIN), chatty.add()
    inbox = await make_inbox(chatty, admin)
    visit = await bootstrap(chatty, inbox["widget_token"])
    session = visit["session"]
    tickets = [await _ticket(chatty, alice.token) for _ in range(3)]
    ws = chatty.ws_url

    async with connect(f"{ws}/v1/stream/ws?ticket={tickets[0]}") as socket:
        await socket.recv()
    async with connect(f"{ws}/api/widget/ws?session={session}", origin=SITE) as socket:
        await socket.recv()
    async with httpx.AsyncClient(base_url=chatty.url, timeout=10) as http:
        async with http.stream("GET", f"/v1/stream/sse?ticket={tickets[1]}") as sse:
            assert sse.status_code == 200
        await http.get(f"/v1/stream/poll?ticket={tickets[2]}&timeout=0")
        await http.get(f"/api/widget/poll?session={session}&timeout=0", headers={"Origin": SITE})
        await http.get(f"/v1/stream/poll?ticket={tickets[2]}")  # used up: refused
        await http.post("/v1/auth/login", json={"name": alice.name, "password": "wrong-pw!"})
        await http.get("/v1/me", headers={"Authorization": "Bearer pk_" + "x" * 43})
    async with chatty.client(admin) as ops:
        await ops.post("/v1/admin/release/promote", json={})
    async with chatty.client(alice) as client:
        report = {"transport": "ws", "counters": {"read_rollback_detected": 1}}
        await client.post("/v1/stream/report", json=report)
    await eventually(lambda: "webhook" in chatty.log(), what="the failed webhook call's log line")

    log = chatty.log()
    for secret in (*tickets, session, alice.token, alice.password, WEBHOOK_SECRET):
        assert secret not in log, f"{secret[:8]}... is in the server log"
    assert "[redacted]" in log  # uvicorn did log the WebSocket paths, masked
    assert json_lines(log)  # still one JSON object per line


def test_the_masking_knows_every_credential_shape() -> None:
    line = (
        'GET /v1/stream/ws?cursor=5&ticket=tk_abcdefghijklmnopqrstuvwx "Bearer pk_'
        + "a" * 43
        + '" session=vs_'
        + "b" * 43
        + " postgresql://parley:hunter2@db/parley is_"
        + "c" * 43
    )

    masked = redact(line)

    assert "cursor=5" in masked
    for secret in ("tk_abc", "pk_aaa", "vs_bbb", "hunter2", "is_ccc"):
        assert secret not in masked
