"""The console on a phone and a desktop, and what tells an operator something happened: the
title counter, the sound switch, the desktop-notification button and the `?` shortcuts."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.console_support import Console, Deployment, Visitor
from tests.e2e.screens import DESKTOP, PHONE, horizontal_overflow, save_screenshot


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_console_fits_the_screen_and_the_message_box_stays_in_view(
    browser: Browser, deployment: Deployment, visitors: list[Visitor], size: dict[str, int]
) -> None:
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("Hello, is the blue teapot back in stock? " + "Really-long-word" * 8)
    context = browser.new_context(base_url=deployment.url, viewport=size)
    try:
        console = Console(context.new_page())
        console.sign_in("ana", "ana-password")
        page = console.page
        label = "phone" if size == PHONE else "desktop"
        expect(console.item(visitor.conversation_id)).to_be_visible()
        assert horizontal_overflow(page) == 0
        save_screenshot(page, f"console-list-{label}")

        console.open(visitor.conversation_id, visitor.name)
        page.get_by_role("button", name="Assign to me").click()
        expect(console.timeline_entry("blue teapot")).to_be_visible()
        expect(page.get_by_label("Message")).to_be_in_viewport()
        expect(page.get_by_role("button", name="Send reply")).to_be_in_viewport()
        assert horizontal_overflow(page) == 0
        page.get_by_label("Message").fill("Yes, it is!")
        page.get_by_role("button", name="Send reply").click()
        expect(console.timeline_entry("Yes, it is!")).to_be_in_viewport()
        save_screenshot(page, f"console-conversation-{label}")

        back = page.get_by_role("button", name="← Conversations")
        if size == PHONE:  # the list and the conversation take turns
            expect(page.get_by_test_id("conversation-list")).to_be_hidden()
            back.click()
            expect(console.item(visitor.conversation_id)).to_be_in_viewport()
            expect(page.locator("#conversation-title")).to_be_hidden()
        else:  # side by side
            expect(back).to_be_hidden()
            expect(console.item(visitor.conversation_id)).to_be_in_viewport()
            expect(page.get_by_test_id("visitor-details")).to_be_in_viewport()
        assert console.problems == [], console.problems
    finally:
        context.close()


def test_the_title_counts_conversations_with_news_and_the_shortcuts_are_listed(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    first, second = Visitor(deployment), Visitor(deployment)
    visitors.extend([first, second])
    console.sign_in("ana", "ana-password")
    page = console.page
    expect(page).to_have_title("Parley console")
    expect(page.get_by_role("button", name="Sound off")).to_have_attribute("aria-pressed", "false")

    first.send("Anyone there?")
    expect(page).to_have_title("(1) Parley console")
    second.send("Hello?")
    expect(page).to_have_title("(2) Parley console")
    console.open(first.conversation_id, first.name)
    expect(page).to_have_title("(1) Parley console")

    # The sound switch is remembered; desktop notifications wait for the button.
    page.get_by_role("button", name="Sound off").click()
    expect(page.get_by_role("button", name="Sound on")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.get_by_role("button", name="Sound on")).to_be_visible()
    expect(page.get_by_role("button", name="Enable desktop notifications")).to_be_visible()

    # `?` lists the shortcuts; j/k move through the list; r puts the cursor in the reply box.
    page.locator("body").press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("shortcuts")).to_contain_text("Next / previous conversation")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.locator("body").press("j")
    expect(page.locator("#conversation-title")).not_to_be_empty()
    page.locator("body").press("r")
    expect(page.get_by_label("Message")).to_be_focused()
