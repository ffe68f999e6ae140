"""The release admin page (/admin/release) in Chromium against a real server: sign in, walk the
release from off to full, kill it, and see gates turn red on a reported P0 breach."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.e2e.screens import DESKTOP, PHONE, horizontal_overflow
from tests.support.servers import ServerProcess, free_port

ENV = {
    "PARLEY_LOG_JSON": "false",
    "PARLEY_DATABASE_URL": "",  # the embedded SQLite, whatever the outer env says
    "PARLEY_RELEASE_DWELL_CANARY_1_SECONDS": "0",
    "PARLEY_RELEASE_DWELL_CANARY_10_SECONDS": "0",
    "PARLEY_RELEASE_DWELL_CANARY_50_SECONDS": "0",
    "PARLEY_RELEASE_MIN_MESSAGES": "0",
    "PARLEY_RELEASE_MIN_SESSIONS": "0",
    "PARLEY_RELEASE_WATCH_SECONDS": "0.5",
}


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {**ENV, "PARLEY_DATA_DIR": str(workdir / "var")}
        self.server = ServerProcess(port=free_port(), workdir=workdir, env=self.env)

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

    def report(self, token: str, **counters: int) -> None:
        response = httpx.post(
            f"{self.server.url}/v1/stream/report",
            headers={"Authorization": f"Bearer {token}"},
            json={"transport": "ws", "counters": counters, "write_receipt_ms": [30.0]},
        )
        assert response.status_code == 204, response.text


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path)
    deployment.add_user("ops", "--role", "admin", "--password", "ops-password")
    deployment.server.start()
    yield deployment
    deployment.server.stop()


@pytest.fixture
def admin_page(browser: Browser, deployment: Deployment) -> Iterator[Page]:
    context = browser.new_context(base_url=deployment.server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if _is_error(m) else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto("/admin/release")
    page.get_by_label("Name").fill("ops")
    page.get_by_label("Password").fill("ops-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_text("ops")
    yield page
    context.close()
    assert problems == [], problems  # no CSP violation, no script error


def _is_error(message: ConsoleMessage) -> bool:
    """CSP violations and script errors; an answered 4xx (a refused promotion) is expected."""
    return message.type == "error" and not message.text.startswith("Failed to load resource")


def test_the_page_is_served_with_a_strict_content_security_policy(
    deployment: Deployment,
) -> None:
    response = httpx.get(f"{deployment.server.url}/admin/release")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_an_admin_walks_the_release_to_full_and_kills_it_from_the_page(
    admin_page: Page,
) -> None:
    page = admin_page
    expect(page.get_by_test_id("stage")).to_have_text("off")
    expect(page.get_by_test_id("decision")).to_have_text("PROCEED")
    page.get_by_label("Approving owner").fill("ana")

    for stage in ("canary_1", "canary_10", "canary_50", "full"):
        page.get_by_role("button", name="Promote").click()
        expect(page.get_by_test_id("stage")).to_have_text(stage)
    expect(page.locator("#percentage")).to_have_text("100 % of users")
    expect(page.locator("[data-gate=gate_p0_ok]")).to_have_class("badge ok")

    page.get_by_label("Reason").fill("support tickets spiking")
    page.get_by_role("button", name="Kill switch").click()
    page.get_by_role("button", name="Confirm kill").click()

    expect(page.get_by_test_id("kill-state")).to_have_text("ON")
    expect(page.get_by_test_id("stage")).to_have_text("canary_1")
    expect(page.locator("#state-reason")).to_have_text("support tickets spiking")
    expect(page.locator("[data-gate=gate_rollout_ok]")).to_have_class("badge bad")
    expect(page.get_by_test_id("decision")).to_have_text("HOLD")
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("full → canary_1")
    expect(rows.first).to_contain_text("support tickets spiking")
    expect(rows.last).to_contain_text("off → canary_1")
    expect(rows.last).to_contain_text("ana")

    page.get_by_role("button", name="Promote").click()
    expect(page.locator("#message")).to_contain_text("promote refused (canary_1 → canary_10")
    expect(page.locator("#refusal")).to_contain_text("Rollout gate — kill switch: on since")
    expect(rows.first).to_contain_text("promote refused")
    expect(rows.first).to_contain_text("canary_1 → canary_10 refused")


def test_a_reported_duplicate_turns_p0_red_and_the_page_refuses_to_promote(
    admin_page: Page, deployment: Deployment
) -> None:
    page = admin_page
    member = deployment.add_user("mia")

    deployment.report(member, timeline_duplicate_detected=1)
    page.reload()

    expect(page.locator("[data-gate=gate_p0_ok]")).to_have_class("badge bad")
    expect(page.get_by_test_id("decision")).to_have_text("HOLD")
    expect(page.locator("#reasons")).to_contain_text("timeline_duplicate_detected: 1")
    expect(page.locator("[data-check=timeline_duplicate_detected]")).to_contain_text("no")
    page.get_by_role("button", name="Promote").click()
    expect(page.locator("#message")).to_contain_text("promote refused")
    expect(page.locator("#refusal")).to_contain_text("P0 gate — timeline duplicate detected")
    expect(page.get_by_test_id("stage")).to_have_text("off")


def test_the_watcher_kills_a_full_release_on_a_p0_breach_and_the_page_shows_it(
    admin_page: Page, deployment: Deployment
) -> None:
    page = admin_page
    # A kill needs PARLEY_RELEASE_P0_MIN_REPORTERS (3) distinct users: one alone only holds.
    members = [deployment.add_user(name) for name in ("mia", "noa", "ola")]
    for stage in ("canary_1", "canary_10", "canary_50", "full"):
        page.get_by_role("button", name="Promote").click()
        expect(page.get_by_test_id("stage")).to_have_text(stage)

    for member in members:
        deployment.report(member, ack_without_receipt_10s=1)

    expect(page.get_by_test_id("kill-state")).to_have_text("ON")  # the page refreshes itself
    expect(page.locator("#state-reason")).to_contain_text("hard stop: p0 invariant breach")
    expect(page.locator("#state-actor")).to_have_text("watcher")


@pytest.fixture
def dwelling(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose canary_1 must run 30 minutes before the next promotion."""
    deployment = Deployment(tmp_path)
    deployment.env["PARLEY_RELEASE_DWELL_CANARY_1_SECONDS"] = "1800"
    deployment.server = ServerProcess(port=free_port(), workdir=tmp_path, env=deployment.env)
    deployment.add_user("ops", "--role", "admin", "--password", "ops-password")
    deployment.server.start()
    yield deployment
    deployment.server.stop()


def sign_in_page(browser: Browser, deployment: Deployment) -> Page:
    page = browser.new_context(base_url=deployment.server.url).new_page()
    page.goto("/admin/release")
    page.get_by_label("Name").fill("ops")
    page.get_by_label("Password").fill("ops-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_text("ops")
    return page


def test_a_refused_promotion_says_which_gate_and_how_long_to_wait(
    browser: Browser, dwelling: Deployment
) -> None:
    page = sign_in_page(browser, dwelling)
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_test_id("stage")).to_have_text("canary_1")

    page.get_by_role("button", name="Promote").click()

    expect(page.locator("#message")).to_contain_text("promote refused (canary_1 → canary_10")
    expect(page.locator("#refusal")).to_contain_text(
        re.compile(r"Rollout gate — dwell: Canary 1 must run (29|30) min more before promotion")
    )
    newest = page.locator("#history tbody tr").first
    expect(newest).to_contain_text("promote refused")
    expect(newest).to_contain_text("canary_1 → canary_10 refused")
    expect(page.get_by_test_id("stage")).to_have_text("canary_1")
    page.context.close()


def test_an_admin_edits_a_flags_allow_list_and_sees_who_changed_it(admin_page: Page) -> None:
    page = admin_page
    page.get_by_role("button", name="Feature flags").click()
    flag = page.locator("li.flag[data-flag=chat_full_release]")
    expect(flag).to_contain_text("off for everyone")

    page.get_by_role("button", name="Edit chat_full_release").click()
    flag.get_by_label("Always on for user ids").fill("1, 2")
    flag.get_by_label("Always on for keys").fill("acme")
    flag.get_by_role("button", name="Save flag").click()

    expect(page.locator("#flag-message")).to_have_text("chat_full_release saved.")
    expect(flag).to_contain_text("users 1, 2 always on · keys acme always on")
    expect(flag).to_contain_text("by ops")
    change = page.locator("#flag-changes tbody tr").first
    expect(change).to_contain_text("ops")
    expect(change).to_contain_text("chat_full_release")
    expect(change).to_contain_text("allow_users: [] → [1, 2]")


def test_a_flag_change_the_rules_refuse_is_explained_and_not_saved(admin_page: Page) -> None:
    page = admin_page
    page.get_by_role("button", name="Feature flags").click()
    flag = page.locator("li.flag[data-flag=chat_full_release]")
    page.get_by_role("button", name="Edit chat_full_release").click()

    flag.get_by_label("Percentage").fill("50")
    flag.get_by_role("button", name="Save flag").click()

    expect(page.locator("#flag-message")).to_contain_text("not saved")
    expect(page.locator("#flag-message")).to_contain_text("rollout")


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_screen_fits_the_width_and_is_saved_as_a_screenshot(
    admin_page: Page, artefacts: Path, size: dict[str, int]
) -> None:
    page = admin_page
    page.set_viewport_size(size)
    label = "phone" if size is PHONE else "desktop"
    expect(page.get_by_test_id("decision")).to_have_text("PROCEED")
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=str(artefacts / f"release-rollout-{label}.png"), full_page=True)

    page.get_by_role("button", name="Feature flags").click()
    expect(page.locator("li.flag").first).to_be_visible()
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=str(artefacts / f"release-flags-{label}.png"), full_page=True)
    print(f"screenshots: {artefacts}/release-*-{label}.png")
