"""The operator console's browser-test fixtures: a `parley serve` with an admin (root) and two
operators (ana, ben) of a "Shop" inbox, visitors talking to the Widget API, and the console page.

tests/e2e/conftest.py imports the `deployment`, `visitors` and `console` fixtures, so every
console test module can ask for them (one server per module).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from parley.core.visitor_names import friendly_name
from tests.support.servers import ServerProcess, free_port

SITE_ORIGIN = "http://localhost:8765"  # the visitor's page; the server is on 127.0.0.1
ENV = {
    "PARLEY_LOG_JSON": "false",
    "PARLEY_DATABASE_URL": "",  # the embedded SQLite, whatever the outer env says
    "PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS": "0",
}


class Deployment:
    """A `parley serve` with an admin, an operator `ana` and an inbox whose staff she is."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {**ENV, "PARLEY_DATA_DIR": str(workdir / "var")}
        self.server = ServerProcess(port=free_port(), workdir=workdir, env=self.env)
        self.inbox: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return self.server.url

    def add_user(self, name: str, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "parley", "user", "add", name, *args],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    def create_inbox(self, admin_token: str, **fields: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/v1/admin/inboxes",
            headers={"Authorization": f"Bearer {admin_token}"},
            json={"name": "Shop", "allowed_domains": ["localhost"], "operators": ["ana"], **fields},
        )
        assert response.status_code == 201, response.text
        return response.json()


class Visitor:
    """A visitor on the shop's page, talking to the Widget API like widget.js does."""

    def __init__(self, deployment: Deployment, **bootstrap: Any) -> None:
        self.http = httpx.Client(
            base_url=deployment.url, headers={"Origin": SITE_ORIGIN}, timeout=30
        )
        response = self.http.post(
            "/api/widget/bootstrap",
            json={"widget_token": deployment.inbox["widget_token"], **bootstrap},
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        self.session: str = answer["session"]
        self.conversation_id: int = answer["conversation_id"]
        self.handle: str = answer["visitor_name"]
        # What the console calls them (no real name given): "Amber Fox", not `visitor-…`.
        self.name = friendly_name(answer["visitor_id"])

    def upload(self, file_name: str, content: bytes) -> dict[str, Any]:
        response = self.http.post(
            "/api/widget/attachments",
            params={"session": self.session},
            files={"file": (file_name, content, "text/plain")},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def send(self, body: str, attachment_ids: list[str] | None = None) -> dict[str, Any]:
        response = self.http.post(
            "/api/widget/messages",
            json={
                "session": self.session,
                "client_msg_id": str(uuid.uuid4()),
                "body": body,
                "attachment_ids": attachment_ids or [],
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def messages(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/widget/messages", params={"session": self.session})
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def read(self, seq: int) -> None:
        response = self.http.post(
            "/api/widget/read",
            json={"session": self.session, "delivered_seq": seq, "read_seq": seq},
        )
        assert response.status_code == 200, response.text

    def typing(self) -> None:
        response = self.http.post("/api/widget/typing", json={"session": self.session})
        assert response.status_code == 204, response.text

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server for the module: each test makes its own visitors and finds them by id."""
    deployment = Deployment(tmp_path_factory.mktemp("console"))
    admin_token = deployment.add_user("root", "--role", "admin", "--password", "root-password")
    deployment.add_user("ana", "--role", "operator", "--password", "ana-password")
    deployment.add_user("ben", "--role", "operator", "--password", "ben-password")
    deployment.server.start()
    deployment.inbox = deployment.create_inbox(admin_token, operators=["ana", "ben"])
    yield deployment
    deployment.server.stop()


@pytest.fixture
def visitors(deployment: Deployment) -> Iterator[list[Visitor]]:
    made: list[Visitor] = []
    yield made
    for visitor in made:
        visitor.close()


class Console:
    """The console page, signed in; collects console errors (CSP violations, script errors)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(str(error)))

    def _on_console(self, message: ConsoleMessage) -> None:
        # An answered 4xx is logged by Chromium as "Failed to load resource"; that is expected.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(message.text)

    def sign_in(self, name: str, password: str, *, display_name: str | None = None) -> None:
        self.page.goto("/console")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.locator("#me-name")).to_have_text(display_name or name)
        expect(self.page.get_by_test_id("connection")).to_contain_text("Live")

    def item(self, conversation_id: int) -> Locator:
        return self.page.locator(f'.conversation-item[data-conversation-id="{conversation_id}"]')

    def open(self, conversation_id: int, visitor_name: str) -> None:
        self.item(conversation_id).get_by_role("button").click()
        expect(self.page.locator("#conversation-title")).to_have_text(visitor_name)

    def timeline_entry(self, text: str) -> Locator:
        return self.page.get_by_test_id("timeline").locator(".entry").filter(has_text=text)


@pytest.fixture
def console(browser: Browser, deployment: Deployment) -> Iterator[Console]:
    context = browser.new_context(base_url=deployment.url, accept_downloads=True)
    context.set_default_timeout(10_000)
    console = Console(context.new_page())
    yield console
    context.close()
    assert console.problems == [], console.problems  # no CSP violation, no script error
