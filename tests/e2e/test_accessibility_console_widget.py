"""axe-core on the operator console and on the demo shop with the widget open, at a phone's
and a desktop's size: no serious or critical violation. Screenshots of each screen are kept."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.axe_support import serious_violations
from tests.e2e.console_support import Console
from tests.e2e.screens import DESKTOP, PHONE, save_screenshot
from tests.e2e.widget_support import WidgetPage
from tests.support.servers import ServerProcess


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_console_and_the_open_widget_have_no_serious_accessibility_violations(
    browser: Browser, demo_server: ServerProcess, size: dict[str, int]
) -> None:
    label = "phone" if size == PHONE else "desktop"
    shop = browser.new_context(base_url=demo_server.url, viewport=size, bypass_csp=True)
    desk = browser.new_context(base_url=demo_server.url, viewport=size, bypass_csp=True)
    try:
        visitor = WidgetPage(shop.new_page())
        visitor.page.goto("/demo/shop")
        visitor.open()
        visitor.send("Do you have this teapot in blue?")
        expect(visitor.message("Do you have this teapot in blue?")).to_have_count(1)
        assert serious_violations(visitor.page) == []
        save_screenshot(visitor.page, f"demo-shop-widget-{label}")

        console = Console(desk.new_page())
        console.sign_in("alice", "alice", display_name="Alice")
        page = console.page
        assert serious_violations(page) == []
        item = page.locator(".conversation-item").filter(has_text="teapot in blue").first
        item.get_by_role("button").click()
        expect(page.locator("#conversation-title")).not_to_be_empty()
        page.get_by_role("button", name="Assign to me").click()
        expect(console.timeline_entry("teapot in blue")).to_be_visible()
        assert serious_violations(page) == []
        page.locator("body").press("?")
        expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
        assert serious_violations(page) == []
        save_screenshot(page, f"console-shortcuts-{label}")
    finally:
        shop.close()
        desk.close()
