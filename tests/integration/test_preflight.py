"""Preflight in process: a production-ready configuration passes; breaking one setting turns
exactly that check red (the checks Go/No-Go's self-test cannot break on a running server: the
database engine, secrets, demo mode, disk space, the TLS certificate); `parley preflight`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from parley.assembly import Services
from parley.features.ops.backup import create_backup
from parley.features.ops.preflight import Context, Status, run_preflight
from parley.settings import Settings
from tests.conftest import PostgresDatabases
from tests.integration.test_gonogo_selftest import ALERTMANAGER

pytestmark = pytest.mark.postgres


@pytest.fixture
async def ready(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> dict[str, Any]:
    alertmanager = tmp_path / "alertmanager.yml"
    alertmanager.write_text(ALERTMANAGER)
    database_url = await postgres_databases.fresh()
    # A verified backup made an hour ago: production wants one fresher than 24 h.
    await create_backup(
        Settings(database_url=database_url, data_dir=tmp_path / "var", log_json=False),
        moment=datetime.now(UTC) - timedelta(hours=1),
    )
    return {
        "database_url": database_url,
        "redis_url": redis_url,
        "data_dir": tmp_path / "var",
        "secret_key": "9" * 64,
        "alertmanager_config": str(alertmanager),
        "release_webhook_url": "https://hooks.shop.example.net/release",
        "messenger_enabled": False,  # the inbox checks are the self-test's (a live server)
        "log_json": False,
    }


async def _failed(
    url: str = "", ca_file: str | None = None, profile: str = "production", **settings: Any
) -> set[str]:
    services = Services.build(Settings(**settings))
    try:
        found = await run_preflight(Context(services, profile, url=url, ca_file=ca_file))
    finally:
        await services.db.dispose()
    return {f.name for f in found if f.status is Status.FAIL}


async def test_a_production_ready_configuration_passes(ready: dict[str, Any]) -> None:
    assert await _failed(**ready) == set()


async def test_no_backup_or_a_stale_one_is_red(ready: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "no-backups"
    assert await _failed(**{**ready, "backup_dir": empty}) == {"backups"}
    stale = tmp_path / "stale-backups"
    await create_backup(
        Settings(**{**ready, "backup_dir": stale}),
        moment=datetime.now(UTC) - timedelta(hours=30),
    )
    assert await _failed(**{**ready, "backup_dir": stale}) == {"backups"}


async def test_staging_needs_an_anonymized_dump_no_older_than_7_days(
    ready: dict[str, Any],
) -> None:
    from parley.features.ops.anonymize import create_anonymized_backup

    assert "staging_dump" in await _failed(profile="staging", **ready)
    await create_anonymized_backup(Settings(**ready))
    assert "staging_dump" not in await _failed(profile="staging", **ready)


async def test_sqlite_in_production_is_red(ready: dict[str, Any], sqlite_template: Path) -> None:
    database = ready["data_dir"] / "parley.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template, database)

    assert await _failed(**{**ready, "database_url": ""}) == {"database"}


@pytest.mark.parametrize("secret", ["", "changeme", "short-but-not-empty"])
async def test_an_empty_or_default_secret_is_red(ready: dict[str, Any], secret: str) -> None:
    assert await _failed(**{**ready, "secret_key": secret}) == {"secrets"}


async def test_demo_sign_in_is_red(ready: dict[str, Any]) -> None:
    assert await _failed(**{**ready, "demo": True}) == {"demo"}


async def test_too_little_free_disk_is_red(ready: dict[str, Any]) -> None:
    assert await _failed(**{**ready, "preflight_min_free_disk_mb": 10**12}) == {"disk"}


def _certificate(tmp_path: Path, days: int) -> tuple[Path, Path]:
    cert, key = tmp_path / f"cert{days}.pem", tmp_path / f"key{days}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def _tls_server(cert: Path, key: Path) -> tuple[asyncio.Server, str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    return server, f"https://127.0.0.1:{port}"


async def test_a_certificate_expiring_within_14_days_is_red(
    ready: dict[str, Any], tmp_path: Path
) -> None:
    soon, later = _certificate(tmp_path, 5), _certificate(tmp_path, 90)
    server_soon, url_soon = await _tls_server(*soon)
    server_later, url_later = await _tls_server(*later)
    try:
        red = await _failed(url_soon, str(soon[0]), **ready)
        green = await _failed(url_later, str(later[0]), **ready)
    finally:
        for server in (server_soon, server_later):
            server.close()
            await server.wait_closed()

    assert red == {"tls"}
    assert green == set()


def test_parley_preflight_prints_json_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PARLEY_DATA_DIR": str(tmp_path / "var"),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_LOG_JSON": "false",
    }
    embedded = subprocess.run(
        [sys.executable, "-m", "parley", "preflight", "--json"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    production = subprocess.run(
        [sys.executable, "-m", "parley", "preflight", "--profile", "production"],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    assert embedded.returncode == 0, embedded.stdout + embedded.stderr
    found = json.loads(embedded.stdout)
    assert found["profile"] == "embedded"
    assert {c["name"]: c["status"] for c in found["checks"]}["secrets"] == "warn"
    assert production.returncode == 1
    assert "failed: database, redis, secrets, inboxes_enabled, alert_receivers" in production.stdout


async def test_only_admins_run_preflight_and_version_is_public(
    people: Any, services: Services
) -> None:
    from parley.core.models import Role

    admin, member = await people.add(role=Role.ADMIN), await people.add()

    refused = await member.http.get("/v1/admin/preflight")
    allowed = await admin.http.get("/v1/admin/preflight", params={"profile": "staging"})
    version = await member.http.get("/version")

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_FORBIDDEN"
    assert allowed.status_code == 200 and allowed.json()["profile"] == "staging"
    assert "tls" not in {c["name"] for c in allowed.json()["checks"]}  # the caller's to check
    body = version.json()
    from parley.storage.migrate import head_revision

    head = head_revision()
    assert body["schema"] == {"revision": head, "head": head, "pending": False}
    assert set(body) == {"version", "git_sha", "schema", "profile"}
