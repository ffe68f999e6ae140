"""Helpers for browser tests of the website widget: a host site on another origin, inboxes,
operators, and the widget as a visitor sees it.

Parley runs on `http://127.0.0.1:<port>` (the `demo_server` fixture); `HostSite` serves the
customer's pages from `http://localhost:<other port>`, a different origin, so the widget is
loaded and talks to Parley cross-origin exactly as on a real website.

    from tests.e2e.widget_support import HostSite, Operator, WidgetPage, admin_token, create_inbox

    admin = admin_token(demo_server)
    inbox = create_inbox(demo_server, admin, name="Shop", operators=["alice"])
    with HostSite(demo_server.url) as site:
        url = site.page(inbox["widget_token"])          # a page embedding the widget
        widget = WidgetPage.visit(browser, url)         # a fresh browser context
        widget.open()
        widget.send("Hello")
        alice = Operator.sign_in(demo_server, "alice")
        conversation_id = alice.conversation_of(inbox["id"])
        alice.reply(conversation_id, "Hi, how can I help?")
        expect(widget.message("Hi, how can I help?")).to_be_visible()

The `host_site`, `admin` and `widget_inbox` fixtures below do the same setup; tests/e2e/conftest.py
imports them, so every e2e test can ask for them.
"""

from __future__ import annotations

import html
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page

from tests.support.servers import ServerProcess

HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/host.css">
  {settings_script}
  <script src="{parley}/static/messenger/widget.js"{token_attr}{identity_attr} async></script>
</head>
<body>
  <main id="host-content" class="host-content">
    <h1 id="host-title">{title}</h1>
    <p id="host-text">A customer's page. The widget must not change how this looks.</p>
    <button id="host-button" type="button">A host button</button>
  </main>
</body>
</html>
"""

# Deliberately rude global CSS: a widget that leaks or inherits would show it.
HOST_CSS = """
* { box-sizing: content-box; }
body { margin: 8px; font: 20px/2 serif; color: rgb(120, 0, 0); }
div, section, button, ol, li, p, form { border: 3px dashed rgb(0, 128, 0); margin: 4px; }
button { background: rgb(255, 255, 0); }
.host-content { display: block; width: 600px; }
"""


class HostSite:
    """A customer's website on `http://localhost:<port>` (another origin than Parley's)."""

    def __init__(self, parley_url: str) -> None:
        self.parley_url = parley_url
        self._pages: dict[str, tuple[str, dict[str, str]]] = {}
        self._scripts: dict[str, str] = {}
        self._ids = itertools.count(1)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/host.css":
                    return self._answer(HOST_CSS, "text/css", {})
                if path in site._scripts:
                    return self._answer(site._scripts[path], "text/javascript", {})
                if path in site._pages:
                    body, headers = site._pages[path]
                    return self._answer(body, "text/html; charset=utf-8", headers)
                self.send_error(HTTPStatus.NOT_FOUND)

            def _answer(self, text: str, content_type: str, headers: dict[str, str]) -> None:
                data = text.encode()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.origin = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def page(
        self,
        widget_token: str | None,
        *,
        identity: str | None = None,
        settings: str | None = None,
        csp: str | None = None,
        title: str = "Host page",
    ) -> str:
        """A page embedding the widget; answers its URL. `widget_token=None` embeds nothing.

        `settings` is JavaScript run before the widget (e.g. setting
        `window.ParleyMessengerSettings`), served as a file so a strict `csp` still allows it.
        """
        number = next(self._ids)
        settings_script = ""
        if settings is not None:
            self._scripts[f"/settings-{number}.js"] = settings
            settings_script = f'<script src="/settings-{number}.js"></script>'
        widget = widget_token is not None
        page = HOST_PAGE.format(
            title=html.escape(title),
            parley=self.parley_url,
            settings_script=settings_script,
            token_attr=f' data-widget-token="{html.escape(widget_token)}"' if widget else "",
            identity_attr=f' data-identity="{html.escape(identity)}"' if identity else "",
        )
        if not widget:
            page = re.sub(r"\s*<script src=\"[^\"]*widget\.js\"[^>]*></script>", "", page)
        headers = {"Content-Security-Policy": csp} if csp else {}
        self._pages[f"/page-{number}"] = (page, headers)
        return f"{self.origin}/page-{number}"


def admin_token(server: ServerProcess, name: str = "widget-admin") -> str:
    """A bearer token of a new admin user, made with the CLI (the way an operator would)."""
    done = subprocess.run(
        [sys.executable, "-m", "parley", "user", "add", name, "--role", "admin"],
        cwd=server.workdir,
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        check=True,
    )
    (token,) = re.findall(r"\S{20,}", done.stdout)
    return token


def create_inbox(server: ServerProcess, admin: str, **fields: Any) -> dict[str, Any]:
    """`POST /v1/admin/inboxes`; defaults: allowed on localhost, alice and bob operate it."""
    body = {"name": "Host shop", "allowed_domains": ["localhost"], "operators": ["alice", "bob"]}
    response = httpx.post(
        f"{server.url}/v1/admin/inboxes",
        json={**body, **fields},
        headers={"Authorization": f"Bearer {admin}"},
    )
    response.raise_for_status()
    return dict(response.json())


class Operator:
    """A demo user (alice or bob) answering visitors over the REST API."""

    def __init__(self, server: ServerProcess, token: str, user: dict[str, Any]) -> None:
        self.server = server
        self.token = token
        self.user = user

    @classmethod
    def sign_in(cls, server: ServerProcess, name: str = "alice") -> Operator:
        answer = httpx.post(f"{server.url}/demo/session", json={"name": name})
        answer.raise_for_status()
        return cls(server, answer.json()["token"], answer.json()["user"])

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, f"{self.server.url}{path}", headers=headers, **kwargs)
        response.raise_for_status()
        return response

    def conversation_of(self, inbox_id: int, timeout: float = 10) -> int:
        """The id of the (newest) visitor conversation of an inbox, once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.call(
                "GET", "/v1/livechat/conversations", params={"inbox_id": inbox_id}
            ).json()["conversations"]
            if found:
                return int(found[0]["conversation_id"])
            if time.monotonic() > deadline:
                raise AssertionError(f"no visitor conversation in inbox {inbox_id}")
            time.sleep(0.1)

    def messages(self, conversation_id: int) -> list[dict[str, Any]]:
        path = f"/v1/conversations/{conversation_id}/messages"
        return list(self.call("GET", path, params={"limit": 500}).json()["messages"])

    def wait_for_message(self, conversation_id: int, predicate: Any, timeout: float = 10) -> dict:
        """The first stored message `predicate(message)` accepts, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(conversation_id):
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError("the message did not reach the operator")
            time.sleep(0.1)

    def reply(self, conversation_id: int, body: str) -> dict[str, Any]:
        path = f"/v1/conversations/{conversation_id}/messages"
        json = {"client_msg_id": f"op-{time.monotonic_ns()}", "body": body}
        return dict(self.call("POST", path, json=json).json())

    def mark_read(self, conversation_id: int, seq: int) -> None:
        path = f"/v1/conversations/{conversation_id}/receipts"
        self.call("POST", path, json={"delivered_seq": seq, "read_seq": seq})

    def wait_for_visitor_read(self, conversation_id: int, seq: int, timeout: float = 10) -> None:
        """Wait until a member other than the operators has read up to `seq` (the visitor)."""
        deadline = time.monotonic() + timeout
        path = f"/v1/conversations/{conversation_id}/members"
        while True:
            members = self.call("GET", path).json()["members"]
            if any(m["name"].startswith("visitor-") and m["read_seq"] >= seq for m in members):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the visitor did not read up to {seq}")
            time.sleep(0.1)

    def typing(self, conversation_id: int) -> None:
        self.call("POST", f"/v1/conversations/{conversation_id}/typing")


class WidgetPage:
    """The host page with the widget, as the visitor sees and uses it (Playwright pierces the
    widget's open shadow root, so plain CSS selectors reach inside)."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @classmethod
    def visit(cls, browser: Browser, url: str) -> WidgetPage:
        """Open `url` in a fresh browser context (its own localStorage: a new visitor)."""
        context: BrowserContext = browser.new_context()
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.goto(url)
        return cls(page)

    def close(self) -> None:
        self.page.context.close()

    @property
    def host(self) -> Locator:
        return self.page.locator("parley-messenger")

    @property
    def launcher(self) -> Locator:
        return self.page.locator("parley-messenger .launcher")

    @property
    def panel(self) -> Locator:
        return self.page.locator("parley-messenger .panel")

    @property
    def title(self) -> Locator:
        return self.panel.locator(".title")

    @property
    def privacy(self) -> Locator:
        return self.panel.locator(".privacy")

    @property
    def offline_notice(self) -> Locator:
        return self.panel.locator(".notice.offline")

    @property
    def error(self) -> Locator:
        return self.panel.locator(".notice.error")

    @property
    def composer(self) -> Locator:
        return self.panel.locator("form.composer")

    @property
    def file_input(self) -> Locator:
        return self.panel.locator("input[type=file]")

    @property
    def typing(self) -> Locator:
        return self.panel.locator(".typing")

    def api(self, call: str) -> Any:
        """Call `window.ParleyMessenger.<call>()` on the page, e.g. `api("open")`."""
        return self.page.evaluate(f"() => window.ParleyMessenger.{call}()")

    def open(self) -> None:
        self.launcher.click()
        self.composer.wait_for(state="visible")

    def send(self, text: str) -> None:
        self.panel.get_by_role("textbox", name="Message").fill(text)
        self.panel.get_by_role("button", name="Send").click()

    def messages(self) -> Locator:
        return self.panel.locator(".messages li.message")

    def message(self, text: str) -> Locator:
        return self.panel.locator(".messages li.message").filter(has_text=text)


@pytest.fixture
def admin(demo_server: ServerProcess) -> str:
    return admin_token(demo_server)


@pytest.fixture
def host_site(demo_server: ServerProcess) -> Iterator[HostSite]:
    with HostSite(demo_server.url) as site:
        yield site


@pytest.fixture
def widget_inbox(demo_server: ServerProcess, admin: str) -> dict[str, Any]:
    """An always-online inbox allowed on `localhost`, run by alice and bob."""
    return create_inbox(
        demo_server,
        admin,
        name="Host shop",
        privacy_url="https://host.example/privacy",
        privacy_text="We keep chats for 30 days.",
    )
