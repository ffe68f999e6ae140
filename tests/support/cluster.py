"""Several `parley serve` processes sharing one PostgreSQL database and one Redis key prefix,
and what fault tests do with them: users, conversations, sends, the stored timeline, readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings
from tests.support.servers import ServerProcess, free_port


@dataclass
class Member:
    id: int
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Cluster:
    """Nodes sharing this test's own PostgreSQL database and Redis key prefix."""

    database_url: str
    redis_url: str
    prefix: str
    workdir: Path
    nodes: list[ServerProcess] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "PARLEY_DATABASE_URL": self.database_url,
            "PARLEY_REDIS_URL": self.redis_url,
            "PARLEY_REDIS_PREFIX": self.prefix,
            # Hubs notice what the bus lost sooner, so fault tests finish sooner.
            "PARLEY_HEAD_POLL_SECONDS": "0.2",
        }

    async def start(self, count: int, **env: str) -> list[ServerProcess]:
        """Start `count` nodes; `env` adds settings (or LD_PRELOAD...) to these nodes only."""
        nodes = [
            ServerProcess(
                port=free_port(), workdir=self.workdir, env={**self.env(), **self.extra_env, **env}
            )
            for _ in range(count)
        ]
        self.nodes += nodes

        def start_all() -> None:
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(ServerProcess.start, nodes))

        await asyncio.to_thread(start_all)
        return nodes

    async def add_user(self, name: str, role: Role = Role.MEMBER) -> Member:
        settings = Settings(
            database_url=self.database_url, redis_url="", data_dir=self.workdir / "cli"
        )
        services = Services.build(settings)
        try:
            user = await services.identity.do_create_user(name, role=role)
            token = await services.identity.do_issue_token(user)
        finally:
            await services.db.dispose()
        return Member(user.id, name, token)

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(node.stop) for node in self.nodes))
        client = aioredis.Redis.from_url(self.redis_url)
        with contextlib.suppress(aioredis.RedisError):
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await client.delete(*keys)
        await client.aclose()


async def create_conversation(node: ServerProcess, owner: Member, *others: Member) -> int:
    async with httpx.AsyncClient(base_url=node.url, headers=owner.headers) as http:
        response = await http.post(
            "/v1/conversations",
            json={"kind": "group", "title": "t", "members": [m.name for m in others]},
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def send_frame(conversation_id: int, client_msg_id: str) -> dict[str, Any]:
    return {
        "type": "send",
        "conversation_id": conversation_id,
        "client_msg_id": client_msg_id,
        "body": f"body of {client_msg_id}",
    }


async def post_message(
    node: ServerProcess, member: Member, conversation_id: int, client_msg_id: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.url, headers=member.headers, timeout=30) as http:
        return await http.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": client_msg_id, "body": f"body of {client_msg_id}"},
        )


async def stored_messages(
    node: ServerProcess, member: Member, conversation_id: int
) -> list[dict[str, Any]]:
    """The whole timeline over REST, in seq order."""
    async with httpx.AsyncClient(base_url=node.url, headers=member.headers) as http:
        response = await http.get(
            f"/v1/conversations/{conversation_id}/messages", params={"limit": 500}
        )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def assert_stored_once(messages: list[dict[str, Any]], client_msg_ids: set[str]) -> None:
    """Exactly these client_msg_ids, each once, with seqs 1..n."""
    ids = [m["client_msg_id"] for m in messages]
    assert len(ids) == len(set(ids)), "a client_msg_id was stored twice"
    assert set(ids) == client_msg_ids
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))


async def readiness(node: ServerProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as http:
        response = await http.get("/readyz")
    body: dict[str, Any] = response.json()
    body["http_status"] = response.status_code
    return body
