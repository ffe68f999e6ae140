"""Maintenance mode as people see it in Chromium: the demo app and the website widget show the
operators' message while it is on, and come back by themselves when it is off."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import SignIn
from tests.e2e.widget_support import HostSite, WidgetPage
from tests.support.servers import ServerProcess

MESSAGE = "Upgrading to Parley 2.0 — back at 04:00 UTC"


def switch(server: ServerProcess, admin: str, active: bool) -> None:
    # A short Retry-After so the pages come back within the test's patience.
    response = httpx.put(
        f"{server.url}/v1/admin/maintenance",
        json={"active": active, "message": MESSAGE, "retry_after": 2},
        headers={"Authorization": f"Bearer {admin}"},
    )
    response.raise_for_status()


def test_the_demo_app_shows_the_maintenance_message_and_recovers_when_it_ends(
    sign_in: SignIn, demo_server: ServerProcess, admin: str
) -> None:
    alice = sign_in("alice")
    expect(alice.locator("#status")).to_contain_text("Connected")
    banner = alice.locator("#maintenance")
    expect(banner).to_be_hidden()

    switch(demo_server, admin, True)
    expect(banner).to_have_text(MESSAGE)
    expect(alice.locator("#status")).to_contain_text("Down for maintenance")
    visitor = alice.context.new_page()  # not signed in yet: the page asks /v1/maintenance
    visitor.goto("/")
    expect(visitor.locator("#maintenance")).to_have_text(MESSAGE)

    switch(demo_server, admin, False)
    expect(banner).to_be_hidden()
    expect(alice.locator("#status")).to_contain_text("Connected")


def test_the_widget_shows_the_message_to_a_visitor_mid_chat_and_to_a_new_one(
    browser: Browser,
    demo_server: ServerProcess,
    admin: str,
    host_site: HostSite,
    widget_inbox: dict[str, Any],
) -> None:
    url = host_site.page(widget_inbox["widget_token"])
    chatting = WidgetPage.visit(browser, url)
    chatting.open()
    notice = chatting.panel.locator(".notice.maintenance")

    switch(demo_server, admin, True)
    expect(notice).to_have_text(MESSAGE)
    arriving = WidgetPage.visit(browser, url)
    arriving.launcher.click()
    expect(arriving.error).to_contain_text(MESSAGE)

    switch(demo_server, admin, False)
    expect(notice).to_be_hidden(timeout=20_000)
    expect(arriving.composer).to_be_visible(timeout=20_000)  # it tried again by itself
    chatting.send("are you back?")
    expect(chatting.message("are you back?")).to_have_count(1)
    chatting.close()
    arriving.close()
