"""The widget as a visitor meets it (issue 20): the inbox's greeting and reply-time line, who
answered and when, a time on every message, and a message typed offline that never vanishes."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, expect

from tests.e2e.screens import PHONE, save_screenshot
from tests.e2e.widget_support import HostSite, Operator, WidgetPage, create_inbox
from tests.support.servers import ServerProcess

TIME = re.compile(r"\d{1,2}:\d{2}")


def _greeting_inbox(demo_server: ServerProcess, admin: str) -> dict[str, Any]:
    return create_inbox(
        demo_server,
        admin,
        name="Tea shop",
        greeting="Hi! Questions about your tea? Ask away.",
        reply_time="We usually reply in a few minutes.",
    )


def test_the_widget_greets_and_shows_who_answered_and_when(
    browser: Browser, host_site: HostSite, demo_server: ServerProcess, admin: str
) -> None:
    inbox = _greeting_inbox(demo_server, admin)
    widget = WidgetPage.visit(browser, host_site.page(inbox["widget_token"]))
    try:
        widget.open()
        expect(widget.panel.get_by_text("Hi! Questions about your tea? Ask away.")).to_be_visible()
        expect(widget.panel.get_by_text("We usually reply in a few minutes.")).to_be_visible()

        widget.send("Is the green tea in stock?")
        mine = widget.message("Is the green tea in stock?")
        expect(mine.locator(".time")).to_have_text(TIME)
        alice = Operator.sign_in(demo_server, "alice")
        conversation_id = alice.conversation_of(inbox["id"])
        alice.reply(conversation_id, "Yes, 40 tins left.")

        reply = widget.message("Yes, 40 tins left.")
        name = alice.user["display_name"] or alice.user["name"]
        expect(reply.locator(".sender")).to_have_text(name)
        expect(reply.locator(".avatar")).to_have_text(name[0].upper())
        expect(reply.locator(".time")).to_have_text(TIME)
        save_screenshot(widget.page, "widget-conversation-desktop")
    finally:
        widget.close()


def test_a_message_typed_offline_waits_in_a_sending_bubble_and_goes_out_on_reconnect(
    browser: Browser, host_site: HostSite, demo_server: ServerProcess, admin: str
) -> None:
    inbox = _greeting_inbox(demo_server, admin)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(host_site.page(inbox["widget_token"]))
    widget = WidgetPage(page)
    try:
        widget.open()
        widget.send("Hello from the train")
        expect(widget.message("Hello from the train")).to_have_count(1)
        save_screenshot(page, "widget-conversation-phone")

        context.set_offline(True)
        widget.send("Are you still there?")
        bubble = widget.panel.locator(".sending").filter(has_text="Are you still there?")
        expect(bubble).to_be_visible()
        expect(bubble).to_contain_text(re.compile("Waiting for connection…|Sending…|Not sent"))
        expect(widget.message("Are you still there?")).to_have_count(0)
        save_screenshot(page, "widget-sending-offline-phone")

        context.set_offline(False)
        retry = bubble.get_by_role("button", name="Retry")
        if retry.is_visible():  # the send gave up while offline: the visitor tries again
            retry.click()
        expect(widget.message("Are you still there?")).to_have_count(1)
        expect(bubble).to_have_count(0)
        alice = Operator.sign_in(demo_server, "alice")
        conversation_id = alice.conversation_of(inbox["id"])
        alice.wait_for_message(conversation_id, lambda m: m["body"] == "Are you still there?")
    finally:
        context.close()
