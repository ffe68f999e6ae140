"""Fixtures that start real things: a migrated SQLite file or PostgreSQL database per test,
the app with its lifespan, and users with tokens.

PostgreSQL tests run whenever PARLEY_TEST_POSTGRES_URL (default: the local server's `test`
database) answers; Redis tests whenever PARLEY_TEST_REDIS_URL does. In CI (CI=true) an
unreachable server is a failure, not a skip. Fault tests that pause, fill or restart a server
use private ones (`tests/support/private_services.py`), never these shared ones.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
from fastapi import FastAPI

from parley.app import create_app
from parley.assembly import Services
from parley.core.models import Role, User
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head
from tests.support.private_services import PrivatePostgres, PrivateRedis

# The one variable (README, pyproject's markers): either URL form, asyncpg's or libpq's.
POSTGRES_ADMIN_DSN = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
).replace("postgresql+asyncpg://", "postgresql://", 1)
IN_CI = os.environ.get("CI", "").lower() == "true"
RUN_ID = uuid.uuid4().hex[:8]

# Property tests check properties, not speed: no per-example deadline (a busy CI box is slow).
hypothesis.settings.register_profile("parley", deadline=None)
hypothesis.settings.load_profile("parley")


def _asyncpg_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _blocking(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion from sync code, even when an event loop is already running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def _postgres_reachable() -> str | None:
    try:
        _blocking(_admin("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class PostgresDatabases:
    """A migrated template database; each test gets a fresh copy of it."""

    def __init__(self) -> None:
        self.template = f"parley_tpl_{RUN_ID}"
        self.created: list[str] = []
        _blocking(_admin(f'CREATE DATABASE "{self.template}"'))
        self.created.append(self.template)
        upgrade_to_head(_asyncpg_url(POSTGRES_ADMIN_DSN, self.template))

    async def fresh(self) -> str:
        name = f"parley_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return _asyncpg_url(POSTGRES_ADMIN_DSN, name)

    def fresh_blocking(self) -> str:
        """`fresh()` for sync fixtures (those that start server processes)."""
        urls: list[str] = []

        async def make() -> None:
            urls.append(await self.fresh())

        _blocking(make())
        return urls[0]

    def drop_all(self) -> None:
        async def drop() -> None:
            for name in reversed(self.created):
                await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        _blocking(drop())


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    problem = _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL must be reachable in CI ({POSTGRES_ADMIN_DSN}): {problem}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_DSN}: {problem}")
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "parley.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        return await databases.fresh()
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "parley.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: FastAPI) -> Services:
    return app.state.services  # type: ignore[no-any-return]


@dataclass
class Person:
    """A user and an HTTP client signed in as them."""

    user: User
    token: str
    http: httpx.AsyncClient


_names = itertools.count(1)


@pytest.fixture
async def people(app: FastAPI, services: Services) -> AsyncIterator[PeopleFactory]:
    factory = PeopleFactory(app, services)
    yield factory
    await factory.close()


class PeopleFactory:
    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app = app
        self.services = services
        self.clients: list[httpx.AsyncClient] = []

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://parley.test",
            headers=headers,
            timeout=30,
        )
        self.clients.append(client)
        return client

    async def add(self, name: str | None = None, role: Role = Role.MEMBER) -> Person:
        name = name or f"user{next(_names)}"
        user = await self.services.identity.do_create_user(name, role=role, password="pw-" + name)
        token = await self.services.identity.do_issue_token(user)
        return Person(user=user, token=token, http=self.client(token))

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def create_conversation(
    owner: Person, *others: Person, kind: str = "group", title: str = "t"
) -> int:
    response = await owner.http.post(
        "/v1/conversations",
        json={"kind": kind, "title": title, "members": [p.user.name for p in others]},
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


REDIS_TEST_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis server's URL; unreachable skips locally and fails in CI."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis must be reachable in CI ({REDIS_TEST_URL}): {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis server of this test's own, which it may pause, stop and restart."""
    server = PrivateRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this worker's own (tests that pause or restart it leave it up)."""
    server = PrivatePostgres().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def private_database(private_postgres: PrivatePostgres) -> str:
    """A fresh, migrated database on the private cluster; its asyncpg URL."""
    private_postgres.ensure_running()
    name = f"parley_p_{uuid.uuid4().hex[:10]}"
    private_postgres.psql(f'CREATE DATABASE "{name}"')
    url = private_postgres.url(name)
    await asyncio.to_thread(upgrade_to_head, url)
    return url
