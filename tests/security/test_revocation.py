"""Attack: keep listening after the credential is gone. A WebSocket, a ticket-opened
WebSocket and an SSE stream opened with a token keep receiving after sign-out; a disabled,
demoted or re-passworded user's streams keep running. Every one must end, on every node (two
real nodes on PostgreSQL + Redis), and the token must stop working.

Revocations reach the other node through the bus (the database re-check is set to an hour
here, so it cannot be what closes them); the CLI's and expired tokens' are found by that
re-check (embedded, set to half a second)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from parley.core.models import Role
from tests.conftest import PostgresDatabases, _blocking
from tests.security.conftest import Account, Deployment, deployment, error_code
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import SseReader, WsReader
from tests.support.waiting import eventually
from tests.support.widget_cluster import database_services

CLOSE_UNAUTHENTICATED = 4001


@dataclass
class Cluster:
    nodes: list[ServerProcess]
    database_url: str
    workdir: Path

    def add(self, role: Role = Role.MEMBER) -> Account:
        return Deployment(self.nodes[0], self.database_url, self.workdir).add(role)

    def client(self, node: int, account: Account | None = None) -> httpx.AsyncClient:
        return Deployment(self.nodes[node], self.database_url, self.workdir).client(account)


@pytest.fixture(scope="module")
def cluster(
    postgres_databases: PostgresDatabases,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("revocation")
    environment = {
        "PARLEY_DATABASE_URL": postgres_databases.fresh_blocking(),
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
        "PARLEY_SECRET_KEY": "security-suite",
        # Only the bus can close a stream on the other node within a test's wait.
        "PARLEY_STREAM_AUTH_RECHECK_SECONDS": "3600",
        "PARLEY_TRUSTED_PROXIES": "[]",
    }
    nodes = [ServerProcess(port=free_port(), workdir=workdir, env=environment) for _ in range(2)]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(ServerProcess.start, nodes))
        yield Cluster(nodes, environment["PARLEY_DATABASE_URL"], workdir)
    finally:
        for node in nodes:
            node.stop()


async def _login(cluster: Cluster, node: int, account: Account) -> str:
    async with cluster.client(node) as http:
        response = await http.post(
            "/v1/auth/login", json={"name": account.name, "password": account.password}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def _ticket_ws(base_url: str, token: str) -> WsReader:
    async with httpx.AsyncClient(base_url=base_url) as http:
        ticket = (
            await http.post("/v1/stream/ticket", headers={"Authorization": f"Bearer {token}"})
        ).json()["ticket"]
    reader = WsReader(base_url, token="")  # a browser: no header, the ticket in the URL
    reader.url += f"?ticket={ticket}"
    return await reader.opened()


def _revoked(reader: WsReader | SseReader) -> bool:
    return any(e["type"] == "control" and e.get("op") == "revoked" for e in reader.events)


async def _conversation(cluster: Cluster, owner: Account, *others: Account) -> int:
    async with cluster.client(0, owner) as http:
        response = await http.post(
            "/v1/conversations",
            json={"kind": "group", "title": "t", "members": [o.name for o in others]},
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _say(cluster: Cluster, node: int, who: Account, conversation_id: int, text: str) -> None:
    async with cluster.client(node, who) as http:
        response = await http.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": text, "body": text},
        )
    assert response.status_code == 201, response.text


async def test_signing_out_on_one_node_ends_that_tokens_streams_on_the_other(
    cluster: Cluster,
) -> None:
    alice, bob = cluster.add(), cluster.add()
    conversation_id = await _conversation(cluster, bob, alice)
    signed_in = await _login(cluster, 0, alice)
    b_url, a_url = cluster.nodes[1].url, cluster.nodes[0].url
    ws = await WsReader(b_url, signed_in).opened()
    by_ticket = await _ticket_ws(a_url, signed_in)
    sse = await SseReader(b_url, signed_in).open()
    other_device = await WsReader(b_url, alice.token).opened()

    async with httpx.AsyncClient(base_url=a_url) as http:
        out = await http.post("/v1/auth/logout", headers={"Authorization": f"Bearer {signed_in}"})
    assert out.status_code == 204
    for reader in (ws, by_ticket, sse):
        await reader.wait_ended(timeout=10)
    await _say(cluster, 0, bob, conversation_id, "after sign-out")

    assert ws.close_code == by_ticket.close_code == CLOSE_UNAUTHENTICATED
    assert _revoked(ws) and _revoked(by_ticket) and _revoked(sse)
    await other_device.wait_for_messages(1)  # another token of the same user is not touched
    assert not other_device.ended.is_set()
    for reader in (ws, by_ticket, sse):
        assert reader.messages == []
    async with httpx.AsyncClient(base_url=b_url) as http:
        again = await http.get("/v1/me", headers={"Authorization": f"Bearer {signed_in}"})
        reopened = await http.get(
            "/v1/stream/sse", headers={"Authorization": f"Bearer {signed_in}"}
        )
    assert again.status_code == 401 and reopened.status_code == 401
    for reader in (ws, by_ticket, sse, other_device):
        await reader.close()


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("disable", "POST", None),
        ("role", "PUT", {"role": "moderator"}),
        ("password", "PUT", {"password": "a-new-long-password"}),
    ],
)
async def test_an_admin_change_on_one_node_ends_every_stream_of_the_user_on_the_other(
    cluster: Cluster, path: str, method: str, body: dict[str, str] | None
) -> None:
    admin, alice = cluster.add(Role.ADMIN), cluster.add()
    second = await _login(cluster, 1, alice)
    streams = [
        await WsReader(cluster.nodes[1].url, alice.token).opened(),
        await SseReader(cluster.nodes[1].url, second).open(),
        await WsReader(cluster.nodes[0].url, second).opened(),
    ]

    async with cluster.client(0, admin) as http:
        response = await http.request(method, f"/v1/admin/users/{alice.name}/{path}", json=body)
    assert response.status_code in (200, 204), response.text
    for reader in streams:
        await reader.wait_ended(timeout=10)

    assert all(_revoked(reader) for reader in streams)
    async with cluster.client(1) as http:
        for token in (alice.token, second):
            me = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 401
        login = await http.post(
            "/v1/auth/login", json={"name": alice.name, "password": alice.password}
        )
    expected = {"disable": 403, "role": 200, "password": 401}[path]
    assert login.status_code == expected
    if path == "disable":
        assert error_code(login) == "ERR_ACCOUNT_DISABLED"
    for reader in streams:
        await reader.close()


async def test_only_admins_may_change_accounts(cluster: Cluster) -> None:
    operator, alice = cluster.add(Role.OPERATOR), cluster.add()
    stream = await WsReader(cluster.nodes[1].url, alice.token).opened()

    async with cluster.client(0, operator) as http:
        refused = [
            await http.post(f"/v1/admin/users/{alice.name}/disable"),
            await http.put(f"/v1/admin/users/{alice.name}/role", json={"role": "admin"}),
            await http.put(
                f"/v1/admin/users/{alice.name}/password", json={"password": "hijacked-pw"}
            ),
        ]
    async with cluster.client(0, alice) as http:
        still = await http.get("/v1/me")

    assert [r.status_code for r in refused] == [403, 403, 403]
    assert still.status_code == 200 and still.json()["role"] == "member"
    assert not stream.ended.is_set()
    await stream.close()


# -- the CLI and token expiry (embedded: the periodic re-check) --------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(
        tmp_path_factory.mktemp("recheck"), PARLEY_STREAM_AUTH_RECHECK_SECONDS="0.5"
    ) as found:
        yield found


async def test_disabling_with_the_cli_ends_the_users_streams(embedded: Deployment) -> None:
    alice = embedded.add()
    stream = await WsReader(embedded.url, alice.token).opened()

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "parley", "user", "disable", alice.name],
        env={**os.environ, **embedded.server.env},
        cwd=embedded.workdir,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    await stream.wait_ended(timeout=10)

    assert stream.close_code == CLOSE_UNAUTHENTICATED and _revoked(stream)
    await stream.close()


async def test_a_stream_ends_when_its_token_expires(embedded: Deployment) -> None:
    alice = embedded.add()
    token: list[str] = []

    async def issue() -> None:
        async with database_services(embedded.database_url, embedded.workdir) as services:
            user = await services.identity.access_user(alice.name)
            soon = datetime.now(UTC) + timedelta(seconds=2)
            token.append(await services.identity.do_issue_token(user, expires_at=soon))

    _blocking(issue())
    stream = await WsReader(embedded.url, token[0]).opened()
    assert stream.hello["type"] == "hello"

    await stream.wait_ended(timeout=10)
    assert stream.close_code == CLOSE_UNAUTHENTICATED
    assert await eventually(lambda: _revoked(stream))
    await stream.close()
