"""Operations basics: health, readiness, metrics, JSON logs, and the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from parley.app import create_app
from parley.assembly import Services
from parley.settings import Settings
from parley.storage.migrate import head_revision
from tests.conftest import PeopleFactory, create_conversation
from tests.support.servers import ServerProcess, free_port


async def test_healthz_and_readyz_answer_ok(people: PeopleFactory) -> None:
    client = people.client()

    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["schema"] == "ok"


async def test_readyz_says_when_the_schema_is_not_the_one_the_code_expects(
    settings: Settings, services: Services, people: PeopleFactory
) -> None:
    client = people.client()
    head = head_revision()
    async with services.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    behind = await client.get("/readyz")
    async with services.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    ahead = await client.get("/readyz")
    async with services.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})

    assert behind.status_code == 503 and behind.json()["status"] == "unavailable"
    assert behind.json()["checks"]["schema"].startswith("migrations pending (")
    assert ahead.status_code == 200 and ahead.json()["status"] == "degraded"
    assert "newer than this code" in ahead.json()["checks"]["schema"]
    assert (await client.get("/readyz")).json()["status"] == "ok"


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none",
        data_dir=tmp_path,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert health.status_code == 200


async def test_metrics_export_latency_histogram_and_messages_stored(
    people: PeopleFactory,
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)
    before = _sample(await people.client().get("/metrics"), "parley_messages_stored_total")
    await alice.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "1", "body": "x"}
    )

    text = (await people.client().get("/metrics")).text

    assert _sample_text(text, "parley_messages_stored_total") == before + 1
    assert "parley_http_request_duration_seconds_bucket{" in text
    assert 'route="/v1/conversations/{conversation_id}/messages"' in text


def _sample(response: httpx.Response, name: str) -> float:
    return _sample_text(response.text, name)


def _sample_text(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(port=free_port(), workdir=tmp_path, env={"PARLEY_DEMO": "true"})
    server.start()
    yield server
    server.stop()


def test_serve_on_the_embedded_default_migrates_by_itself_and_logs_json(
    embedded_server: ServerProcess,
) -> None:
    token = httpx.post(f"{embedded_server.url}/demo/session", json={"name": "alice"}).json()
    conversations = httpx.get(
        f"{embedded_server.url}/v1/conversations",
        headers={"Authorization": f"Bearer {token['token']}"},
    )
    embedded_server.stop()

    assert conversations.status_code == 200
    assert (embedded_server.workdir / "var" / "parley.db").exists()
    records = [
        json.loads(line)
        for line in embedded_server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    requests = [r for r in records if r.get("message") == "request"]
    assert any(
        r["route"] == "/v1/conversations" and r["status"] == 200 and "duration_ms" in r
        for r in requests
    )
    assert all({"time", "level", "logger"} <= r.keys() for r in records)


def _parley(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "parley", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_cli_user_add_prints_a_token_that_authenticates(tmp_path: Path) -> None:
    output = _parley("user", "add", "carol", "--role", "operator", "--internal", cwd=tmp_path)
    token = output.strip().splitlines()[-1]
    listing = _parley("user", "list", cwd=tmp_path)

    assert token.startswith("pk_")
    assert "carol" in listing and "operator" in listing and "yes" in listing
    server = ServerProcess(port=free_port(), workdir=tmp_path, env={}).start()
    try:
        me = httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    finally:
        server.stop()
    assert me.json()["name"] == "carol" and me.json()["role"] == "operator"


def test_cli_refuses_a_taken_name_with_a_clear_error(tmp_path: Path) -> None:
    _parley("user", "add", "dave", cwd=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "parley", "user", "add", "dave"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "ERR_NAME_TAKEN" in result.stdout


def test_a_client_trickling_request_headers_is_disconnected(tmp_path: Path) -> None:
    env = {"PARLEY_HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    server = ServerProcess(port=free_port(), workdir=tmp_path, env=env).start()
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            closed_after = None
            for sent, byte in enumerate(request):
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed_after = sent
                    break
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        closed_after = sent
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        healthy = httpx.get(f"{server.url}/healthz")
    finally:
        server.stop()
    assert closed_after is not None and closed_after < len(request) - 1
    assert healthy.status_code == 200


async def test_client_reports_are_exported_per_transport(people: PeopleFactory) -> None:
    alice = await people.add()
    name = 'parley_client_reported_total{counter="timeline_duplicate_detected",transport="sse"}'
    before = _sample(await people.client().get("/metrics"), name)

    accepted = await alice.http.post(
        "/v1/stream/report",
        json={
            "transport": "sse",
            "counters": {"timeline_duplicate_detected": 2},
            "write_receipt_ms": [4.0, 5.0, 250.0],
        },
    )
    refused = await alice.http.post(
        "/v1/stream/report", json={"transport": "sse", "counters": {"made_up": 1}}
    )
    text = (await people.client().get("/metrics")).text

    assert accepted.status_code == 204
    assert refused.status_code == 422
    assert _sample_text(text, name) == before + 2
    assert _sample_text(text, 'parley_write_receipt_p95_ms{transport="sse"}') > 0
