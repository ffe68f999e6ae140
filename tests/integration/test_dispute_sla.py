"""SLA timers against real `parley serve` processes: a deadline that passes while the server is
dead (killed with SIGKILL) fires once it is back, exactly once across further restarts, and two
nodes sharing PostgreSQL fire a deadline once between them. The firing is seen where a user of
Parley sees it: the dispute's history, its webhook and the audit log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import eventually


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def webhook_url() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


class Deployment:
    """A data directory (or PostgreSQL database) with users, and servers started on it."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.servers: list[ServerProcess] = []

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "parley", *args],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def add_user(self, name: str, *args: str) -> str:
        return self.cli("user", "add", name, *args).strip().splitlines()[-1]

    def server(self) -> ServerProcess:
        server = ServerProcess(port=free_port(), workdir=self.workdir, env=self.env)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def _deployment(workdir: Path, webhook_url: str, **extra: str) -> Deployment:
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_DATA_DIR": str(workdir / "var"),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_DISPUTE_SLA_OPEN_SECONDS": "3",
        "PARLEY_DISPUTE_SCHEDULER_SECONDS": "0.5",
        "PARLEY_DISPUTE_WEBHOOK_URL": webhook_url,
        "PARLEY_DISPUTE_WEBHOOK_SECRET": "whsec-sla",
        # A delivery cut off by the crash is taken over after 2 x this.
        "PARLEY_DISPUTE_WEBHOOK_TIMEOUT_SECONDS": "2",
        **extra,
    }
    return Deployment(workdir, env)


async def _open_dispute(
    url: str, tokens: dict[str, str], names: dict[str, str], reference: str = "contract-9"
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        made = await http.post(
            "/v1/conversations",
            headers={"Authorization": f"Bearer {tokens['buyer']}"},
            json={"kind": "direct", "members": [names["seller"]]},
        )
        assert made.status_code in (200, 201), made.text
        opened = await http.post(
            "/v1/disputes",
            headers={"Authorization": f"Bearer {tokens['agent']}"},
            json={
                "conversation_id": made.json()["id"],
                "buyer": names["buyer"],
                "seller": names["seller"],
                "amount": 5_000,
                "currency": "RUB",
                "reference": reference,
            },
        )
        assert opened.status_code == 201, opened.text
        return dict(opened.json())


async def _detail(url: str, token: str, dispute_id: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get(
            f"/v1/disputes/{dispute_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


async def _scheduler_saw(url: str, overdue: int) -> bool:
    """Every scheduler tick exports the overdue gauge: this node has ticked since they were."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    return f"parley_disputes_overdue {overdue}.0" in text


def _breaches() -> list[dict[str, Any]]:
    return [d for d in Receiver.received if d["event"] == "dispute.sla_breached"]


def _users(deployment: Deployment) -> tuple[dict[str, str], dict[str, str]]:
    names = {"agent": "agent-a", "buyer": "buyer-b", "seller": "seller-s"}
    tokens = {
        "agent": deployment.add_user(names["agent"], "--role", "dispute_ops"),
        "buyer": deployment.add_user(names["buyer"]),
        "seller": deployment.add_user(names["seller"]),
    }
    deployment.cli("release", "flag", "dispute_tools_v2", "--on")
    return tokens, names


async def _until_passed(moment: str) -> None:
    deadline = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    await eventually(lambda: datetime.now(UTC) > deadline, timeout=30, what="the SLA deadline")


async def test_a_deadline_that_passed_while_the_server_was_dead_fires_once_after_restart(
    tmp_path: Path, webhook_url: str
) -> None:
    deployment = _deployment(tmp_path, webhook_url)
    tokens, names = _users(deployment)
    first = deployment.server()
    await asyncio.to_thread(first.start)
    try:
        dispute = await _open_dispute(first.url, tokens, names)
        first.stop(signal.SIGKILL)  # a crash: nothing is flushed, no shutdown hook runs
        await _until_passed(dispute["deadline_at"])
        assert _breaches() == []

        second = deployment.server()
        await asyncio.to_thread(second.start)
        await eventually(lambda: _breaches(), timeout=30, what="the sla_breached webhook")
        detail = await _detail(second.url, tokens["agent"], dispute["id"])
        assert detail["overdue"] is True and detail["sla_breached_at"]
        second.stop()

        # Restarted again, the scheduler runs over the same passed deadline and leaves it be.
        third = deployment.server()
        await asyncio.to_thread(third.start)
        await eventually(lambda: _scheduler_saw(third.url, 1), timeout=20, what="a tick")
        detail = await _detail(third.url, tokens["agent"], dispute["id"])
    finally:
        deployment.stop_all()

    assert [e["kind"] for e in detail["events"]] == ["opened", "sla_breached"]
    assert [w["event"] for w in detail["webhooks"]] == ["dispute.opened", "dispute.sla_breached"]
    assert all(w["delivered_at"] for w in detail["webhooks"])
    (breach,) = _breaches()
    assert breach["dispute"]["id"] == dispute["id"] and breach["transition"]["actor"] == "system"
    lines = deployment.cli("audit", "search", "--action", "dispute.sla_breached", "--json")
    entries = [json.loads(line) for line in lines.splitlines() if line.strip()]
    assert [(e["actor"], e["target_id"]) for e in entries] == [("system", str(dispute["id"]))]


@pytest.mark.postgres
async def test_two_nodes_on_one_database_fire_a_deadline_once(
    tmp_path: Path, webhook_url: str, postgres_databases: Any
) -> None:
    database_url = await postgres_databases.fresh()
    deployment = _deployment(tmp_path, webhook_url, PARLEY_DATABASE_URL=database_url)
    deployment.cli("migrate")
    tokens, names = _users(deployment)
    nodes = [deployment.server(), deployment.server()]
    await asyncio.gather(*(asyncio.to_thread(node.start) for node in nodes))
    try:
        disputes = [
            await _open_dispute(nodes[i % 2].url, tokens, names, reference=f"contract-{i}")
            for i in range(3)
        ]
        for dispute in disputes:
            await _until_passed(dispute["deadline_at"])
        await eventually(lambda: len(_breaches()) >= 3, timeout=20, what="3 sla_breached")
        for node in nodes:
            await eventually(lambda n=node: _scheduler_saw(n.url, 3), timeout=20, what="a tick")
        details = [await _detail(nodes[0].url, tokens["agent"], d["id"]) for d in disputes]
    finally:
        deployment.stop_all()

    assert sorted(b["dispute"]["id"] for b in _breaches()) == sorted(d["id"] for d in disputes)
    for detail in details:
        assert [e["kind"] for e in detail["events"]] == ["opened", "sla_breached"]
