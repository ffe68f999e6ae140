"""Two `parley serve` nodes sharing a fresh PostgreSQL database and a Redis prefix, with an
admin and an inbox, for the Widget API's cross-node tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PostgresDatabases
from tests.support.servers import ServerProcess, free_port

SITE = "https://shop.example.com"


@dataclass
class WidgetCluster:
    nodes: list[ServerProcess]
    database_url: str
    workdir: Path
    admin_token: str
    inbox: dict[str, Any]

    def admin(self, node: int = 0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.nodes[node].url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def site(self, node: int) -> httpx.AsyncClient:
        """A page of the inbox's allowed site, calling this node."""
        return httpx.AsyncClient(base_url=self.nodes[node].url, headers={"Origin": SITE})


@contextlib.asynccontextmanager
async def database_services(database_url: str, workdir: Path) -> AsyncIterator[Services]:
    """This process's own view of the nodes' database (as the CLI would open it)."""
    built = Services.build(
        Settings(database_url=database_url, redis_url="", data_dir=workdir / "cli")
    )
    try:
        yield built
    finally:
        await built.db.dispose()


@contextlib.asynccontextmanager
async def widget_cluster(
    postgres_databases: PostgresDatabases, redis_url: str, workdir: Path, **env: str
) -> AsyncIterator[WidgetCluster]:
    database_url = await postgres_databases.fresh()
    environment = {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
        "PARLEY_SECRET_KEY": "shared-by-every-node",
        "PARLEY_LOG_JSON": "false",
        **env,
    }
    nodes = [ServerProcess(port=free_port(), workdir=workdir, env=environment) for _ in range(2)]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(ServerProcess.start, nodes))
        async with database_services(database_url, workdir) as services:
            user = await services.identity.do_create_user("admin", role=Role.ADMIN)
            token = await services.identity.do_issue_token(user)
        async with httpx.AsyncClient(
            base_url=nodes[0].url, headers={"Authorization": f"Bearer {token}"}
        ) as admin:
            created = await admin.post(
                "/v1/admin/inboxes", json={"name": "Shop", "allowed_domains": ["shop.example.com"]}
            )
        assert created.status_code == 201, created.text
        yield WidgetCluster(nodes, database_url, workdir, token, created.json())
    finally:
        for node in nodes:
            node.stop()
