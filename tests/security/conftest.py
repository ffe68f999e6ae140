"""The attack suite's deployments: real `parley serve` processes on loopback, embedded SQLite.

Every test here performs an attack the way a browser or curl would, against a running server,
and asserts the refusal a user would see (and, where it matters, that nothing was stored or
sent). Different loopback source addresses (127.0.0.2, 127.0.0.3, ...) stand for different
clients.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.core.models import Role
from tests.conftest import _blocking
from tests.support.servers import ServerProcess, free_port
from tests.support.widget_cluster import database_services

SITE = "https://shop.example.com"
# The defaults, whatever the environment says: SQLite in the test's directory, no Redis.
EMBEDDED = {"PARLEY_DATABASE_URL": "", "PARLEY_REDIS_URL": "", "PARLEY_TRUSTED_PROXIES": "[]"}
_names = itertools.count(1)


@dataclass
class Account:
    id: int
    name: str
    token: str
    password: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Deployment:
    """One server and a way to reach its database directly (as `parley` CLI commands do)."""

    server: ServerProcess
    database_url: str
    workdir: Path
    accounts: list[Account] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def add(self, role: Role = Role.MEMBER, name: str | None = None) -> Account:
        """A user with a password and an API token, created straight in the database."""
        name = name or f"user{next(_names)}"
        password = f"pw-{name}-long"
        created: list[Account] = []

        async def make() -> None:
            async with database_services(self.database_url, self.workdir) as services:
                user = await services.identity.do_create_user(name, role=role, password=password)
                token = await services.identity.do_issue_token(user)
                created.append(Account(user.id, name, token, password))

        _blocking(make())
        return created[0]

    def client(
        self, account: Account | None = None, *, source: str = "127.0.0.1", **headers: str
    ) -> httpx.AsyncClient:
        """An HTTP client calling from `source` (a loopback address: another client)."""
        if account is not None:
            headers = {**account.auth, **headers}
        return httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=30,
            transport=httpx.AsyncHTTPTransport(local_address=source),
        )

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


@contextlib.contextmanager
def deployment(workdir: Path, **env: str) -> Iterator[Deployment]:
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    environment = {
        **EMBEDDED,
        "PARLEY_DATA_DIR": str(data),
        "PARLEY_SECRET_KEY": "security-suite",
        **env,
    }
    server = ServerProcess(port=free_port(), workdir=workdir, env=environment)
    server.start()
    try:
        yield Deployment(server, f"sqlite+aiosqlite:///{data / 'parley.db'}", workdir)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment with the default settings, shared by a module's tests (each uses its own
    users, and its own loopback address where per-address limits count)."""
    with deployment(tmp_path_factory.mktemp("shared")) as found:
        yield found


async def make_inbox(d: Deployment, admin: Account, **fields: Any) -> dict[str, Any]:
    async with d.client(admin) as http:
        response = await http.post(
            "/v1/admin/inboxes",
            json={"name": "Shop", "allowed_domains": ["shop.example.com"], **fields},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def bootstrap(
    d: Deployment, widget_token: str, *, source: str = "127.0.0.1", **extra: Any
) -> dict[str, Any]:
    """What widget.js does on a page of the inbox's site."""
    async with d.client(source=source, Origin=SITE) as page:
        response = await page.post(
            "/api/widget/bootstrap", json={"widget_token": widget_token, **extra}
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


async def metric(d: Deployment, sample: str) -> float:
    """One sample of the server's /metrics (`name` or `name{labels}`), 0 when absent."""
    async with d.client() as http:
        for line in (await http.get("/metrics")).text.splitlines():
            if line.startswith(sample + " ") or line.startswith(sample + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
