"""Live chat on two `parley serve` nodes (PostgreSQL + Redis): a change one node makes to an
inbox reaches the widget on the other node at once, though each node keeps its inboxes cached.

Every wait has a deadline and waits for a condition; nothing asserts on time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from parley.core.models import Role
from tests.conftest import PostgresDatabases
from tests.support.cluster import Cluster
from tests.support.streams import eventually

ORIGIN = {"Origin": "https://shop.example.com"}
# A cache far longer than the test: only the bus can make the other node see the change.
NODE_ENV = {
    "PARLEY_LIVECHAT_CACHE_SECONDS": "60",
    "PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP": "1000000/minute",
    "PARLEY_WIDGET_BOOTSTRAP_RATE_PER_TOKEN": "1000000/minute",
    "PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP": "",
}


@pytest.fixture
async def cluster(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    found = Cluster(
        database_url=await postgres_databases.fresh(),
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
    )
    try:
        yield found
    finally:
        await found.stop()


@pytest.mark.postgres
@pytest.mark.redis
async def test_switching_an_inbox_off_on_one_node_stops_its_widget_on_the_other_at_once(
    cluster: Cluster,
) -> None:
    node_a, node_b = await cluster.start(2, **NODE_ENV)
    admin = await cluster.add_user("admin", Role.ADMIN)
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            f"{node_a.url}/v1/admin/inboxes",
            json={"name": "Shop", "allowed_domains": ["shop.example.com"]},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        inbox = created.json()

        async def bootstrap_on_b() -> httpx.Response:
            return await http.post(
                f"{node_b.url}/api/widget/bootstrap",
                json={"widget_token": inbox["widget_token"]},
                headers=ORIGIN,
            )

        first = await bootstrap_on_b()  # node B now keeps the inbox (enabled) for 60 s
        assert first.status_code == 200, first.text

        switched = await http.patch(
            f"{node_a.url}/v1/admin/inboxes/{inbox['id']}",
            json={"enabled": False},
            headers=admin.headers,
        )
        assert switched.status_code == 200, switched.text

        async def refused() -> httpx.Response | None:
            answer = await bootstrap_on_b()
            return answer if answer.status_code == 503 else None

        answer = await eventually(refused, what="node B to hear that the inbox is off")
    assert answer.json()["error"]["code"] == "ERR_MESSENGER_DISABLED"
