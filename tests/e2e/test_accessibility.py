"""axe-core (pinned in package.json, from node_modules) finds no serious or critical violation on
the chat app and the release page, at a desktop and a phone size; each screen is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.axe_support import AXE, serious_violations
from tests.e2e.conftest import IN_CI
from tests.e2e.screens import SIZES, save_screenshot
from tests.e2e.test_demo import open_conversation, send
from tests.support.servers import ServerProcess


@pytest.fixture
def axe_page(browser: Browser, demo_server: ServerProcess) -> Any:
    """A page that may take axe's script (bypass_csp: the pages allow no injected script)."""
    if not AXE.exists():
        message = f"{AXE} missing (npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    contexts = []

    def open_page(size: str) -> Page:
        context = browser.new_context(
            base_url=demo_server.url, bypass_csp=True, viewport=SIZES[size]
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def check(page: Page, artefacts: Path, name: str) -> None:
    save_screenshot(page, name, full_page=True)
    assert serious_violations(page) == [], name


@pytest.mark.parametrize("size", SIZES)
def test_the_chat_app_has_no_serious_accessibility_violations(
    axe_page: Any, artefacts: Path, size: str
) -> None:
    page = axe_page(size)
    page.goto("/")
    expect(page.get_by_role("button", name="alice", exact=True)).to_be_visible()
    check(page, artefacts, f"chat-pick-{size}")

    page.get_by_role("button", name="alice", exact=True).click()
    if size == "phone":
        expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
        check(page, artefacts, f"chat-list-{size}")
    open_conversation(page, "Demo room")
    send(page, "Checking what a screen reader gets")
    expect(page.locator("#messages .message.mine")).to_have_count(1)
    check(page, artefacts, f"chat-room-{size}")


@pytest.mark.parametrize("size", SIZES)
def test_the_release_page_has_no_serious_accessibility_violations(
    axe_page: Any, artefacts: Path, size: str
) -> None:
    page = axe_page(size)
    page.goto("/admin/release")
    expect(page.get_by_label("Name")).to_be_visible()
    check(page, artefacts, f"release-sign-in-{size}")

    page.get_by_label("Name").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("decision")).not_to_be_empty()
    check(page, artefacts, f"release-rollout-{size}")

    page.get_by_role("button", name="Feature flags").click()
    expect(page.locator("li.flag").first).to_be_visible()
    page.locator("li.flag").first.get_by_role("button", name="Edit").click()
    check(page, artefacts, f"release-flags-{size}")


def test_serve_demo_prints_a_demo_admin_who_can_sign_in(
    axe_page: Any, demo_server: ServerProcess
) -> None:
    printed = demo_server.log_path.read_text()
    assert f"Demo admin: sign in at {demo_server.url}/admin/release as admin / admin" in printed

    page = axe_page("desktop")
    page.goto("/admin/release")
    page.get_by_label("Name").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_text("admin")
